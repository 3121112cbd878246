package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/datadir"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/lockfile"
	"github.com/sigsumd/sigsumd/internal/promote"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func promoteNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("promote", stderr)
	confPath := flags.String("config", "", "the stopped secondary's configuration `file` (required)")
	keyFile := flags.String("key-file", "", "the LOG's key `file` the new primary will sign with (required); copied into the data directory")
	logPub := flags.String("log-public-key", "", "the log's public key `file` (default: the secondary's log-public-key-file)")
	var published, secondaries, witnesses listFlag
	flags.Var(&published, "published", "a head the log published: a saved get-tree-head body `file`, or the log's URL (repeatable)")
	flags.Var(&secondaries, "secondary", "another secondary, `url,pubkey-file` (its internal URL and public key; repeatable): its tree "+
		"bounds how far the log can have gone, and it becomes a secondary of the new primary")
	flags.Var(&witnesses, "witness", "a witness's monitoring `url` (C2SP tlog-witness): the newest checkpoint of the log it cosigned is a "+
		"published head (repeatable; the witnesses with a URL in the secondary's policy-file are asked too)")
	fenced := flags.Bool("old-primary-fenced", false, "the old primary still answers but cannot sign again (powered off signer, firewalled from its secondaries)")
	acceptForkRisk := flags.Bool("accept-fork-risk", false, "promote even if the sources do not prove it safe: the new primary may sign a FORK of the log")
	sthFile := flags.String("sth-file", "", "sth `file` of the new primary (default <data-dir>/sth)")
	dryRun := flags.Bool("dry-run", false, "show the plan and what each source shows, and change nothing")
	timeout := flags.Duration("timeout", promote.DefaultIntegrateTimeout, "how long to wait for stored leaves to be integrated")
	storage := flags.String("storage", "", "with an external Trillian (trillian-rpc-server): its database (`uri`, e.g. mysql:<dsn>), to check that every stored leaf is integrated")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *confPath == "" || *keyFile == "" {
		return errors.New("-config and -key-file are required")
	}
	cfg, err := config.Load([]string{"-role", string(config.RoleSecondary), "-config", *confPath}, stderr)
	if err != nil {
		return err
	}
	lock, err := lockfile.Acquire(datadir.Dir(cfg.DataDir).Lock())
	if err != nil {
		return fmt.Errorf("%w (is the node still running? stop it first)", err)
	}
	defer lock.Release()

	logKey, err := publicKeyOf(*keyFile)
	if err != nil {
		return err
	}
	if *logPub == "" {
		*logPub = cfg.Secondary.LogPublicKeyFile
	}
	if *logPub == "" {
		return errors.New("refusing to promote: the log's public key is unknown (no log-public-key-file in the configuration, no -log-public-key): nothing can show that -key-file is the log's key")
	}
	want, err := key.ReadPublicKeyFile(*logPub)
	if err != nil {
		return err
	}
	if want != logKey {
		return fmt.Errorf("refusing to promote: %s holds key %s, not the log's key %s (%s)", *keyFile, logKey, want, *logPub)
	}
	var others []config.Secondary
	for _, s := range secondaries {
		u, f, ok := strings.Cut(s, ",")
		if !ok || u == "" || f == "" {
			return fmt.Errorf("-secondary %q: want <internal url>,<public key file>", s)
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return err
		}
		others = append(others, config.Secondary{URL: u, PubkeyFile: abs})
	}

	// Fencing: the old primary must not be able to sign again once this node does. Its internal listener is the
	// node itself: any answer there counts. Its public URL may be the log's, behind a proxy that answers for a dead
	// backend too: there only a head signed with the log key counts.
	var oldHead *promote.Evidence
	if u := cfg.Secondary.PrimaryPublicURL; u != "" {
		e := promote.OldPrimaryHead(ctx, u, logKey)
		oldHead = &e
	}
	if !*fenced {
		const fix = "stop it and make sure it cannot start again (power it off or firewall it), then pass -old-primary-fenced"
		if err := promote.Answers(ctx, cfg.Secondary.PrimaryURL); err != nil {
			return fmt.Errorf("refusing to promote: the old primary still %v: %s", err, fix)
		}
		if oldHead != nil && oldHead.Err == nil {
			return fmt.Errorf("refusing to promote: the old primary still serves signed tree heads at %s (size %d): %s",
				cfg.Secondary.PrimaryPublicURL, oldHead.Head.Size, fix)
		}
	}

	// Every source of how far the log has gone, consulted before anything changes.
	evidence := []promote.Evidence{promote.RecordedHead(datadir.Dir(cfg.DataDir).Published(), logKey)}
	for _, src := range published {
		evidence = append(evidence, promote.PublishedHead(ctx, src, logKey))
	}
	if oldHead != nil {
		evidence = append(evidence, *oldHead)
	}
	monitors := append([]string(nil), witnesses...)
	if cfg.Secondary.PolicyFile != "" {
		pol, err := policy.ParseFile(cfg.Secondary.PolicyFile)
		if err != nil {
			return fmt.Errorf("policy-file: %w", err)
		}
		for _, w := range pol.Witnesses() {
			if w.URL != "" && !slices.Contains(monitors, w.URL) {
				monitors = append(monitors, w.URL)
			}
		}
	}
	for _, u := range monitors {
		evidence = append(evidence, promote.WitnessCheckpoint(ctx, u, logKey))
	}
	for _, s := range others {
		pub, err := key.ReadPublicKeyFile(s.PubkeyFile)
		if err != nil {
			return fmt.Errorf("-secondary %s: %w", s.URL, err)
		}
		evidence = append(evidence, promote.SecondaryHead(ctx, s.URL, pub))
	}
	if *sthFile == "" {
		*sthFile = datadir.Dir(cfg.DataDir).STH()
	}

	var eng *engine.Engine
	if cfg.TrillianRPCServer != "" {
		eng, err = engine.DialExternal(cfg.TrillianRPCServer)
		if err == nil && *storage != "" {
			var st engine.Storage
			if st, err = engine.ParseStorage(*storage); err == nil {
				err = eng.AttachStorage(ctx, st)
			}
		}
	} else {
		// The engine's messages (a sequencer pass cut short when a refused promotion closes it, say) go with the
		// progress on stdout: stderr carries the one-line reason of a refusal.
		logger := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
		engine.RouteKlog(logger)
		eng, err = engine.StartEmbedded(ctx, engine.EmbeddedConfig{Storage: cfg.Storage,
			SequencerInterval: config.DefaultSequencerInterval, Logger: logger})
	}
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := promote.Run(ctx, promote.Config{
		Engine:           eng,
		TreeIDFile:       cfg.TreeIDFile,
		STHFile:          *sthFile,
		JournalFile:      datadir.Dir(cfg.DataDir).PromoteJournal(),
		LogKey:           logKey,
		Evidence:         evidence,
		AcceptForkRisk:   *acceptForkRisk,
		IntegrateTimeout: *timeout,
		DryRun:           *dryRun,
		Out:              stdout,
	}); err != nil || *dryRun {
		return err
	}
	keyCopy, err := copyKey(*keyFile, cfg.DataDir)
	if err != nil {
		return err
	}
	primaryConf := datadir.Dir(cfg.DataDir).PrimaryConfig()
	if err := writePrimaryConfig(primaryConf, cfg, keyCopy, *sthFile, others); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (this node's endpoints, storage, tree, key %s, %d secondaries)\n", primaryConf, keyCopy, len(others))
	fmt.Fprintf(stdout, "next: start the new primary; it signs its local tree at once:\n  sigsumd -role primary -config %s\n", primaryConf)
	fmt.Fprintf(stdout, "with the shipped systemd units:\n  install -m 0644 %s /etc/sigsumd/primary.toml && systemctl disable --now sigsumd-secondary && systemctl enable --now sigsumd-primary\n", primaryConf)
	scheme := "https"
	if cfg.InsecureInternalHTTP {
		scheme = "http"
	}
	fmt.Fprintf(stdout, "then point the other secondaries at it (primary-url = %s://%s) and the log's URL (DNS or proxy) at %s\n",
		scheme, cfg.InternalEndpoint, cfg.ExternalEndpoint)
	return nil
}

// copyKey copies the log's key file into the data directory (private keys 0600), owned like the directory, so that
// the node's service user can read it where its systemd unit allows (not under /root, /home or /tmp). A key file
// already in the data directory is used where it is.
func copyKey(keyFile, dataDir string) (string, error) {
	abs, err := filepath.Abs(keyFile)
	if err != nil {
		return "", err
	}
	if filepath.Dir(abs) == filepath.Clean(dataDir) {
		return abs, nil
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return "", err
	}
	dst, mode := datadir.Dir(dataDir).LogKey(), os.FileMode(0o600)
	if _, err := key.ReadPrivateKeyFile(abs); err != nil {
		dst, mode = dst+".pub", 0o644 // a public key file: the new primary signs through ssh-agent
	}
	if err := atomicfile.WriteNew(dst, b, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if st, err := os.Stat(dataDir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			if err := os.Lchown(dst, int(sys.Uid), int(sys.Gid)); err != nil {
				return "", err
			}
		}
	}
	return dst, nil
}

// publicKeyOf reads the public key of a key file: a private key file, or a public key file (ssh-agent).
func publicKeyOf(path string) (sigsum.PublicKey, error) {
	priv, err := key.ReadPrivateKeyFile(path)
	if err == nil {
		var pub sigsum.PublicKey
		copy(pub[:], priv.Public().(ed25519.PublicKey))
		return pub, nil
	}
	if errors.Is(err, key.ErrUnprotectedKey) {
		return sigsum.PublicKey{}, err
	}
	pub, err := key.ReadPublicKeyFile(path)
	if err != nil {
		return pub, fmt.Errorf("key-file %s is neither an OpenSSH ed25519 private key nor a public key: %w", path, err)
	}
	return pub, nil
}

// writePrimaryConfig writes the promoted node's primary configuration, unless one exists: this node's endpoints,
// storage and tree, the copied key, the rotation interval, the trust policy the secondary checked cosignatures
// with, and the secondaries named on the command line.
func writePrimaryConfig(path string, sec *config.Config, keyFile, sthFile string, secondaries []config.Secondary) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by sigsumctl promote: this node now runs as the log's primary.\n")
	fmt.Fprintf(&b, "data-dir = %q\nkey-file = %q\ntrillian-tree-id-file = %q\n", sec.DataDir, keyFile, sec.TreeIDFile)
	if sec.TrillianRPCServer != "" {
		fmt.Fprintf(&b, "trillian-rpc-server = %q\n", sec.TrillianRPCServer)
	} else {
		fmt.Fprintf(&b, "storage = %q\n", sec.Storage.String())
	}
	fmt.Fprintf(&b, "external-endpoint = %q\ninternal-endpoint = %q\n", sec.ExternalEndpoint, sec.InternalEndpoint)
	if sec.URLPrefix != "" {
		fmt.Fprintf(&b, "url-prefix = %q\n", sec.URLPrefix)
	}
	fmt.Fprintf(&b, "interval = %q\ntimeout = %q\n", config.DefaultInterval.String(), sec.Timeout.String())
	if sec.InsecureInternalHTTP {
		fmt.Fprintf(&b, "insecure-internal-http = true\n")
	}
	fmt.Fprintf(&b, "\n[primary]\nsth-file = %q\n", sthFile)
	if sec.Secondary.PolicyFile != "" {
		fmt.Fprintf(&b, "policy-file = %q\n", sec.Secondary.PolicyFile)
	}
	for _, s := range secondaries {
		fmt.Fprintf(&b, "\n[[primary.secondaries]]\nurl = %q\npubkey-file = %q\n", s.URL, s.PubkeyFile)
	}
	if len(secondaries) == 0 {
		fmt.Fprintf(&b, "\n# No secondaries: tree heads are signed unreplicated. Add the re-pointed old secondaries and a new one:\n"+
			"#[[primary.secondaries]]\n#url = \"http://192.0.2.12:6967\"\n#pubkey-file = \"/etc/sigsumd/secondary-c.pub\"\n")
	}
	err := atomicfile.WriteNew(path, []byte(b.String()), 0o644)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/lockfile"
	"github.com/sigsumd/sigsumd/internal/node"
	"github.com/sigsumd/sigsumd/internal/promote"
	"github.com/sigsumd/sigsumd/internal/trillian"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func promoteNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("promote", stderr)
	confPath := flags.String("config", "", "the stopped secondary's configuration `file` (required)")
	keyFile := flags.String("key-file", "", "the LOG's key `file` the new primary will sign with (required)")
	logPub := flags.String("log-public-key", "", "the log's public key `file`, to check -key-file against")
	published := flags.String("published", "", "last published head: a saved get-tree-head body `file`, or the old primary's URL")
	sthFile := flags.String("sth-file", "", "sth `file` of the new primary (default <data-dir>/sth)")
	dryRun := flags.Bool("dry-run", false, "show the plan and change nothing")
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
	lock, err := lockfile.Acquire(node.LockFile(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("%w (is the node still running? stop it first)", err)
	}
	defer lock.Release()

	logKey, err := publicKeyOf(*keyFile)
	if err != nil {
		return err
	}
	if *logPub != "" {
		want, err := key.ReadPublicKeyFile(*logPub)
		if err != nil {
			return err
		}
		if want != logKey {
			return fmt.Errorf("%s holds key %s, not the log's key %s", *keyFile, logKey, want)
		}
	}
	var head *sigsum.SignedTreeHead
	if *published != "" {
		cth, err := readPublished(ctx, *published)
		if err != nil {
			return err
		}
		head = &cth.SignedTreeHead
	}
	if *sthFile == "" {
		*sthFile = filepath.Join(cfg.DataDir, "sth")
	}

	var engine *trillian.Engine
	if cfg.TrillianRPCServer != "" {
		engine, err = trillian.DialExternal(cfg.TrillianRPCServer)
		if err == nil && *storage != "" {
			err = engine.AttachStorage(ctx, *storage)
		}
	} else {
		engine, err = trillian.StartEmbedded(ctx, trillian.EmbeddedConfig{Storage: cfg.Storage.String(),
			SequencerInterval: 50 * time.Millisecond})
	}
	if err != nil {
		return err
	}
	defer engine.Close()
	if err := promote.Run(ctx, promote.Config{
		Engine:           engine,
		TreeIDFile:       cfg.TreeIDFile,
		STHFile:          *sthFile,
		JournalFile:      filepath.Join(cfg.DataDir, "promote-journal"),
		LogKey:           logKey,
		Published:        head,
		IntegrateTimeout: *timeout,
		DryRun:           *dryRun,
		Out:              stdout,
	}); err != nil || *dryRun {
		return err
	}
	primaryConf := filepath.Join(cfg.DataDir, "sigsumd-primary.toml")
	if err := writePrimaryConfig(primaryConf, cfg, *keyFile, *sthFile); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "next: list the new secondaries under [[primary.secondaries]] in %s, then start\n"+
		"  sigsumd -role primary -config %s\n", primaryConf, primaryConf)
	return nil
}

// publicKeyOf reads the public key of a key file: a private key file, or a public key file (ssh-agent).
func publicKeyOf(path string) (sigsum.PublicKey, error) {
	if priv, err := key.ReadPrivateKeyFile(path); err == nil {
		var pub sigsum.PublicKey
		copy(pub[:], priv.Public().(ed25519.PublicKey))
		return pub, nil
	}
	pub, err := key.ReadPublicKeyFile(path)
	if err != nil {
		return pub, fmt.Errorf("key-file %s is neither an OpenSSH ed25519 private key nor a public key: %w", path, err)
	}
	return pub, nil
}

// readPublished reads the last published head from a saved get-tree-head body or from the old primary.
func readPublished(ctx context.Context, src string) (sigsum.CosignedTreeHead, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		c, err := client.New(client.Config{URL: src})
		if err != nil {
			return sigsum.CosignedTreeHead{}, err
		}
		return c.GetTreeHead(ctx)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return sigsum.CosignedTreeHead{}, fmt.Errorf("published head: %w", err)
	}
	cth, err := sigsum.ParseCosignedTreeHead(b)
	if err != nil {
		return cth, fmt.Errorf("published head %s: %w", src, err)
	}
	return cth, nil
}

// writePrimaryConfig writes the promoted node's primary configuration, unless one exists.
func writePrimaryConfig(path string, sec *config.Config, keyFile, sthFile string) error {
	abs, err := filepath.Abs(keyFile)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by sigsumctl promote: this node now runs as the log's primary.\n")
	fmt.Fprintf(&b, "data-dir = %q\nkey-file = %q\ntrillian-tree-id-file = %q\n", sec.DataDir, abs, sec.TreeIDFile)
	if sec.TrillianRPCServer != "" {
		fmt.Fprintf(&b, "trillian-rpc-server = %q\n", sec.TrillianRPCServer)
	} else {
		fmt.Fprintf(&b, "storage = %q\n", sec.Storage.String())
	}
	if sec.URLPrefix != "" {
		fmt.Fprintf(&b, "url-prefix = %q\n", sec.URLPrefix)
	}
	fmt.Fprintf(&b, "\n[primary]\nsth-file = %q\n", sthFile)
	fmt.Fprintf(&b, "# New secondaries (they replicate from index 0):\n#[[primary.secondaries]]\n#url = \"http://192.0.2.12:6967\"\n#pubkey-file = \"/etc/sigsumd/secondary-c.pub\"\n")
	err = atomicfile.WriteNew(path, []byte(b.String()), 0o644)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

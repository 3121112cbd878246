package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/datadir"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func keygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("keygen", stderr)
	out := flags.String("o", "", "private key `file` to write; the public key goes to <file>.pub (required)")
	comment := flags.String("comment", "sigsumd", "key comment")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-o is required")
	}
	pub, err := writeKeyPair(*out, *comment)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s.pub\npublic key: %s\nkey hash: %s\n", *out, *out, pub, pub.KeyHash())
	return nil
}

// writeKeyPair makes a key pair at path and path.pub, refusing to replace either.
func writeKeyPair(path, comment string) (sigsum.PublicKey, error) {
	if _, err := os.Stat(path + ".pub"); err == nil {
		return sigsum.PublicKey{}, fmt.Errorf("%s.pub exists", path)
	}
	priv, pub, err := key.Generate(rand.Reader)
	if err != nil {
		return pub, err
	}
	if err := key.WritePrivateKeyFile(path, priv, comment); err != nil {
		return pub, err
	}
	return pub, key.WritePublicKeyFile(path+".pub", pub, comment)
}

func initNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("init", stderr)
	roleName := flags.String("role", "", "node role: primary or secondary (required)")
	dataDir := flags.String("data-dir", "", "data `directory` to create (required)")
	primaryURL := flags.String("primary-url", "", "secondary: the primary's internal API `URL` to write into the configuration")
	logURL := flags.String("log-url", "", "secondary: the log's public `URL` (the primary's public API), followed for its published head")
	logPub := flags.String("log-public-key", "", "secondary: the log's public key `file` (copied to <data-dir>/log.pub), to verify the published head")
	insecureFlag := flags.Bool("insecure-internal-http", false, "internal API over plain, unauthenticated HTTP (to pair with reference nodes); default: mutual TLS")
	if err := parse(flags, args); err != nil {
		return err
	}
	if (*logURL != "" || *logPub != "") && *roleName != string(config.RoleSecondary) {
		return errors.New("-log-url and -log-public-key are for -role secondary")
	}
	insecure := *insecureFlag
	if *logURL != "" && *logPub == "" {
		return errors.New("-log-url needs -log-public-key: the published head is verified with the log's key")
	}

	role, err := config.ParseRole(*roleName)
	if err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("-data-dir is required")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	// The configuration first: every later step reads its paths from it, as sigsumd will.
	confPath := datadir.Dir(dir).Config()
	skeleton := config.Skeleton(string(role), dir)
	if insecure {
		skeleton = []byte(setKey(string(skeleton), "insecure-internal-http", "true"))
		if role == config.RoleSecondary && *primaryURL == "" {
			*primaryURL = "http://" + config.DefaultInternalEndpoint
		}
	}
	if role == config.RoleSecondary && *primaryURL != "" {
		skeleton = []byte(setKey(string(skeleton), "primary-url", *primaryURL))
	}
	if *logPub != "" {
		if _, err := key.ReadPublicKeyFile(*logPub); err != nil {
			return fmt.Errorf("-log-public-key: %w", err)
		}
		b, err := os.ReadFile(*logPub)
		if err != nil {
			return err
		}
		dst := datadir.Dir(dir).LogPublicKey()
		if err := atomicfile.WriteNew(dst, b, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if *logURL != "" {
			skeleton = []byte(setKey(setKey(string(skeleton), "primary-public-url", *logURL), "log-public-key-file", dst))
		}
	}
	if err := atomicfile.WriteNew(confPath, skeleton, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	} else if err == nil {
		fmt.Fprintf(stdout, "wrote %s\n", confPath)
	}
	cfg, err := config.Load([]string{"-role", string(role), "-config", confPath}, stderr)
	if err != nil {
		return err
	}

	if _, err := os.Stat(cfg.KeyFile); errors.Is(err, fs.ErrNotExist) {
		pub, err := writeKeyPair(cfg.KeyFile, "sigsumd "+string(role))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote key %s (public key %s, key hash %s)\n", cfg.KeyFile, pub, pub.KeyHash())
	}

	treeType := trillian.TreeType_LOG
	if role == config.RoleSecondary {
		treeType = trillian.TreeType_PREORDERED_LOG
	}
	if cfg.TrillianRPCServer == "" {
		// It only makes the tree: nothing to sequence.
		eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{Storage: cfg.Storage, NoSequencer: true})
		if err != nil {
			return err
		}
		log, err := eng.OpenTree(ctx, engine.TreeConfig{IDFile: cfg.TreeIDFile, Type: treeType, Create: true,
			DisplayName: "sigsumd " + string(role)})
		if cerr := eng.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		where := cfg.Storage.Scheme + " storage" // a DSN may hold a password: not for the terminal
		if cfg.Storage.Scheme == config.StorageSQLite {
			where = cfg.Storage.String()
		}
		fmt.Fprintf(stdout, "tree %d (%s) in %s\n", log.TreeID(), treeType, where)
	}

	if role == config.RolePrimary {
		err := primary.WriteStartupFile(cfg.Primary.STHFile, primary.StartupEmpty)
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "wrote %s: the first start signs the empty tree\n", primary.StartupFile(cfg.Primary.STHFile))
		case errors.Is(err, fs.ErrExist):
		default:
			return err
		}
	}
	if role == config.RoleSecondary && !cfg.InsecureInternalHTTP && *logPub == "" {
		fmt.Fprintf(stdout, "before the first start: copy the log's public key to %s (-log-public-key does): the secondary "+
			"takes leaves only from a primary that proves it (mutual TLS)\n", cfg.Secondary.PrimaryPubkeyFile)
	}
	if role == config.RoleSecondary && cfg.Secondary.PrimaryPublicURL == "" {
		fmt.Fprintf(stdout, "warning: %s does not name the log's public URL and key (-log-url, -log-public-key): this "+
			"secondary will not follow the log's published head, and sigsumctl promote cannot prove it safe to promote\n", confPath)
	}
	fmt.Fprintf(stdout, "start the node with: sigsumd -role %s -config %s\n", role, confPath)
	return nil
}

// setKey sets the skeleton's line for key, commented out or not, to key = value (a string, or true).
func setKey(skeleton, key, value string) string {
	v := strconv.Quote(value)
	if value == "true" {
		v = value
	}
	lines := strings.Split(skeleton, "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimPrefix(line, "#"), key+" =") {
			lines[i] = key + " = " + v
		}
	}
	return strings.Join(lines, "\n")
}

func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("status", stderr)
	role := flags.String("role", "", "the stopped node's role: primary or secondary (with -config)")
	conf := flags.String("config", "", "the stopped node's configuration `file` (with -role)")
	url := flags.String("url", "", "a running node's public `URL` (with its prefix, e.g. http://127.0.0.1:6965/): read its status page's JSON instead")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *url != "" {
		if *role != "" || *conf != "" {
			return errors.New("-url reads a running node; -role and -config a stopped one: not both")
		}
		return remoteStatus(ctx, *url, stdout)
	}
	if *role == "" || *conf == "" {
		return errors.New("-role and -config (a stopped node), or -url (a running node), are required")
	}
	cfg, err := config.Load([]string{"-role", *role, "-config", *conf}, stderr)
	if err != nil {
		return err
	}
	if cfg.TrillianRPCServer != "" {
		return errors.New("status reads the embedded store; for an external Trillian use its admin tools")
	}
	// A read-only command runs no sequencer: it must not integrate a stopped secondary's pending leaves.
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{Storage: cfg.Storage, NoSequencer: true})
	if err != nil {
		return fmt.Errorf("%w (status needs the node stopped: it opens the store)", err)
	}
	defer eng.Close()
	id, err := engine.ReadTreeIDFile(cfg.TreeIDFile)
	if err != nil {
		return err
	}
	tree, err := eng.Tree(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tree-id=%d\ntype=%s\nstate=%s\n", id, tree.TreeType, tree.TreeState)
	log, err := eng.OpenTree(ctx, engine.TreeConfig{IDFile: cfg.TreeIDFile, Type: tree.TreeType})
	if err == nil {
		th, err := log.TreeHead(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "size=%d\nroot_hash=%s\n", th.Size, th.RootHash)
	}
	if n, err := eng.PendingSequencedLeaves(ctx, id); err == nil && tree.TreeType == trillian.TreeType_PREORDERED_LOG {
		fmt.Fprintf(stdout, "pending_leaves=%d\n", n)
	}
	if cfg.Role == config.RolePrimary {
		b, err := os.ReadFile(cfg.Primary.STHFile)
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "sth-file=%s\n%s", cfg.Primary.STHFile, b)
		case errors.Is(err, fs.ErrNotExist):
			if mode, err := primary.ReadStartupFile(cfg.Primary.STHFile); err == nil {
				fmt.Fprintf(stdout, "sth-file=none (startup=%s)\n", mode)
			} else {
				fmt.Fprintf(stdout, "sth-file=none\n")
			}
		default:
			return err
		}
	}
	return nil
}

// leafRequest prints an add-leaf body for the data on stdin (message = SHA-256 of the data), for curl to post.
func leafRequest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("leaf", stderr)
	keyFile := flags.String("key-file", "", "submitter's key `file` (OpenSSH ed25519 private key, or public key for ssh-agent) (required)")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return errors.New("-key-file is required")
	}
	signer, err := key.LoadSigner(ctx, *keyFile, "")
	if err != nil {
		return err
	}
	defer signer.Close()
	data, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<30))
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	msg := sigsum.HashBytes(data)
	leaf, err := sigsum.SignLeaf(signer, msg)
	if err != nil {
		return err
	}
	req := sigsum.AddLeafRequest{Message: msg, Signature: leaf.Signature, PublicKey: signer.Public()}
	_, err = stdout.Write(req.MarshalASCII())
	return err
}

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
	"strings"

	tpb "github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/trillian"
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
	if err := parse(flags, args); err != nil {
		return err
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
	confPath := filepath.Join(dir, "sigsumd.toml")
	skeleton := config.Skeleton(string(role), dir)
	if role == config.RoleSecondary && *primaryURL != "" {
		skeleton = []byte(replacePrimaryURL(string(skeleton), *primaryURL))
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

	treeType := tpb.TreeType_LOG
	if role == config.RoleSecondary {
		treeType = tpb.TreeType_PREORDERED_LOG
	}
	if cfg.TrillianRPCServer == "" {
		engine, err := trillian.StartEmbedded(ctx, trillian.EmbeddedConfig{Storage: cfg.Storage.String()})
		if err != nil {
			return err
		}
		log, err := engine.OpenTree(ctx, trillian.TreeConfig{IDFile: cfg.TreeIDFile, Type: treeType, Create: true,
			DisplayName: "sigsumd " + string(role)})
		if cerr := engine.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tree %d (%s) in %s\n", log.TreeID(), treeType, cfg.Storage)
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
	fmt.Fprintf(stdout, "start the node with: sigsumd -role %s -config %s\n", role, confPath)
	return nil
}

// replacePrimaryURL sets the skeleton's primary-url line.
func replacePrimaryURL(skeleton, url string) string {
	lines := strings.Split(skeleton, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "primary-url") {
			lines[i] = fmt.Sprintf("primary-url = %q", url)
		}
	}
	return strings.Join(lines, "\n")
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, stderr)
	if err != nil {
		return err
	}
	if cfg.TrillianRPCServer != "" {
		return errors.New("status reads the embedded store; for an external Trillian use its admin tools")
	}
	engine, err := trillian.StartEmbedded(ctx, trillian.EmbeddedConfig{Storage: cfg.Storage.String()})
	if err != nil {
		return fmt.Errorf("%w (status needs the node stopped: it opens the store)", err)
	}
	defer engine.Close()
	id, err := trillian.ReadTreeIDFile(cfg.TreeIDFile)
	if err != nil {
		return err
	}
	tree, err := engine.Tree(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tree-id=%d\ntype=%s\nstate=%s\n", id, tree.TreeType, tree.TreeState)
	log, err := engine.OpenTree(ctx, trillian.TreeConfig{IDFile: cfg.TreeIDFile, Type: tree.TreeType})
	if err == nil {
		th, err := log.TreeHead(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "size=%d\nroot_hash=%s\n", th.Size, th.RootHash)
	}
	if n, err := engine.PendingSequencedLeaves(ctx, id); err == nil && tree.TreeType == tpb.TreeType_PREORDERED_LOG {
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

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sigsumd/sigsumd/internal/engine/dbtest"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestStorageReferenceTakeover takes over a reference-style deployment: Trillian's own log server and signer on
// MariaDB, a LOG tree made as the reference's setup makes it (createtree defaults), leaves queued as the reference
// log-go queues them (LeafValue only), a tree-id file and an sth file in the reference's formats.
//
//  1. sigsumd replaces the reference binary and keeps the external Trillian (trillian-rpc-server), with a secondary
//     on its own external Trillian (whose PREORDERED_LOG tree the signer integrates). A leaf the reference queued
//     is recognised (same Trillian identity hash): resubmitting it adds nothing.
//  2. The Trillian processes are stopped and sigsumd embeds Trillian on the same database (storage = mysql:...).
//
// Opt-in: SIGSUMD_TEST_MYSQL (and it builds trillian_log_server and trillian_log_signer).
func TestStorageReferenceTakeover(t *testing.T) {
	t.Parallel()
	refStorage, _ := dbtest.MySQL(t)
	secStorage, _ := dbtest.MySQL(t)
	refDSN := strings.TrimPrefix(refStorage, "mysql:")
	ctx := context.Background()

	// The reference deployment: schema applied by the operator (Trillian's storage.sql, as log-go's resetdb.sh
	// does; here by a sigsumctl that opens the database once), server and signer running.
	refDir := t.TempDir()
	applySchema(t, refStorage)
	applySchema(t, secStorage)
	ref := startExternalTrillian(t, refDSN)
	conn, err := grpc.NewClient(ref.rpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin, logc := trillian.NewTrillianAdminClient(conn), trillian.NewTrillianLogClient(conn)
	var tree *trillian.Tree
	waitFor(t, "trillian_log_server to answer", 60*time.Second, func() bool {
		tree, err = admin.CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
			TreeType: trillian.TreeType_LOG, TreeState: trillian.TreeState_ACTIVE, MaxRootDuration: durationpb.New(time.Hour)}})
		return err == nil
	})
	if _, err := logc.InitLog(ctx, &trillian.InitLogRequest{LogId: tree.TreeId}); err != nil {
		t.Fatal(err)
	}
	treeIDFile := filepath.Join(refDir, "tree-id")
	if err := os.WriteFile(treeIDFile, []byte(fmt.Sprintf("tree-id=%d\n", tree.TreeId)), 0o644); err != nil {
		t.Fatal(err)
	}
	logKeyFile := filepath.Join(refDir, "log-key")
	ctl(t, "keygen", "-o", logKeyFile)
	priv, err := key.ReadPrivateKeyFile(logKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := sigsum.NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	logKey := logSigner.Public()
	sub := newSubmitter(t, 51)
	var refLeaves []submitted
	for i := 0; i < 5; i++ {
		req, leaf := sub.next(t)
		refLeaves = append(refLeaves, submitted{req, leaf})
		if _, err := logc.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: tree.TreeId,
			Leaf: &trillian.LogLeaf{LeafValue: leaf.MarshalBinary()}}); err != nil {
			t.Fatal(err)
		}
	}
	var root types.LogRootV1
	waitFor(t, "the reference's leaves integrated", 60*time.Second, func() bool {
		rsp, err := logc.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: tree.TreeId})
		return err == nil && root.UnmarshalBinary(rsp.SignedLogRoot.LogRoot) == nil && root.TreeSize == 5
	})
	th := sigsum.TreeHead{Size: root.TreeSize, RootHash: sigsum.Hash(root.RootHash)}
	sth, err := th.Sign(logSigner)
	if err != nil {
		t.Fatal(err)
	}
	sthFile := filepath.Join(refDir, "sth")
	if err := os.WriteFile(sthFile, sth.MarshalASCII(), 0o644); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	// 1. sigsumd in place of the reference binary, on the same external Trillian; a secondary on another.
	secTrillian := startExternalTrillian(t, strings.TrimPrefix(secStorage, "mysql:"))
	sec := newNodeOn(t, "secondary", filepath.Join(t.TempDir(), "secondary"), rpcBackend(secTrillian.rpc))
	pdir := filepath.Join(t.TempDir(), "primary")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(pdir, "config.toml")
	writeReferenceConfig(t, conf, rpcBackend(ref.rpc), treeIDFile, logKeyFile, sthFile, sec)
	p := &node{t: t, role: "primary", dir: pdir, public: freePort(t), internal: freePort(t), conf: conf,
		extra: []string{"-data-dir", pdir}}
	t.Cleanup(p.kill)
	sec.extra = []string{"-interval", "100ms", "-primary-url", p.internalURL()}
	trust(t, sec, logKey)
	sec.start()
	p.start()
	c := p.client()
	if got := treeHead(t, c, logKey); got.Size != 5 || got.RootHash != th.RootHash {
		t.Fatalf("sigsumd serves head %d, the reference signed %d", got.Size, th.Size)
	}
	allCommitted(t, c, refLeaves[1:2], 60*time.Second) // queued by the reference: a duplicate, not a new entry
	more := submit(t, c, sub, 5)
	all := append(append([]submitted{}, refLeaves...), more...)
	allCommitted(t, c, all, 120*time.Second)
	head := checkLog(t, c, logKey, all, []sigsum.TreeHead{th})

	// 2. The reference's Trillian processes go; sigsumd embeds Trillian on the same database.
	p.stop()
	ref.stop()
	writeReferenceConfig(t, conf, storageBackend(refStorage), treeIDFile, logKeyFile, sthFile, sec)
	p.start()
	c = p.client()
	evenMore := submit(t, c, sub, 5)
	all = append(all, evenMore...)
	allCommitted(t, c, all, 120*time.Second)
	checkLog(t, c, logKey, all, []sigsum.TreeHead{th, head})
	if b, _ := os.ReadFile(sthFile); !strings.HasPrefix(string(b), fmt.Sprintf("size=%d\n", len(all))) {
		t.Errorf("the reference's sth file was not carried on: %q", b)
	}
}

// applySchema gives a scratch database Trillian's schema, as an operator does before starting Trillian: here
// through sigsumctl status on a throwaway configuration, which opens (and so prepares) the store.
func applySchema(t *testing.T, storage string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("data-dir = %q\nstorage = %q\nkey-file = \"k\"\ninsecure-internal-http = true\n[secondary]\nprimary-url = \"http://127.0.0.1:1\"\n", dir, storage)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tree-id"), []byte("tree-id=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The tree does not exist, so status fails after opening the store; the schema is in place by then.
	out, _ := execCtl("status", "-role", "secondary", "-config", conf)
	if !strings.Contains(out, "tree 1") {
		t.Fatalf("sigsumctl status on the empty database: %s", out)
	}
}

// writeReferenceConfig writes a primary configuration with the reference server's keys only (plus backend).
func writeReferenceConfig(t *testing.T, path, backend, treeIDFile, keyFile, sthFile string, sec *node) {
	t.Helper()
	conf := fmt.Sprintf(`# configuration in the reference server's keys
%s
trillian-tree-id-file = %q
key-file = %q
interval = "300ms"
timeout = "10s"
log-level = "debug"

[primary]
sth-file = %q
secondary-url = %q
secondary-pubkey-file = %q
max-range = 512
`, backend, treeIDFile, keyFile, sthFile, sec.internalURL(), filepath.Join(sec.dir, "key.pub"))
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

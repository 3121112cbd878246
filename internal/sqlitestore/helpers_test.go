package sqlitestore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/log"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/types"
	"github.com/google/trillian/util/clock"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/proto"
)

// quietLogger keeps test output readable.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openTestStore opens a fresh store in a temporary directory and closes it at
// the end of the test.
func openTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "trillian.db"), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// createTree creates a tree from template (stestonly.LogTree or
// PreorderedLogTree) and, if init, stores the empty root as InitLog would.
func createTree(ctx context.Context, t testing.TB, s *Store, template *trillian.Tree, init bool) *trillian.Tree {
	t.Helper()
	tree, err := storage.CreateTree(ctx, s.AdminStorage(), proto.Clone(template).(*trillian.Tree))
	if err != nil {
		t.Fatalf("CreateTree: %v", err)
	}
	if init {
		storeRoot(ctx, t, s, tree, &types.LogRootV1{RootHash: rfc6962.DefaultHasher.EmptyRoot(), TimestampNanos: uint64(time.Now().UnixNano())})
	}
	return tree
}

func storeRoot(ctx context.Context, t testing.TB, s *Store, tree *trillian.Tree, r *types.LogRootV1) {
	t.Helper()
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	if err := s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
		return tx.StoreSignedLogRoot(ctx, &trillian.SignedLogRoot{LogRoot: b})
	}); err != nil {
		t.Fatalf("storing root: %v", err)
	}
}

// latestRoot reads the latest root through a snapshot.
func latestRoot(ctx context.Context, t testing.TB, s *Store, tree *trillian.Tree) types.LogRootV1 {
	t.Helper()
	tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
	if err != nil {
		t.Fatalf("SnapshotForTree: %v", err)
	}
	defer tx.Close()
	slr, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		t.Fatalf("LatestSignedLogRoot: %v", err)
	}
	var r types.LogRootV1
	if err := r.UnmarshalBinary(slr.LogRoot); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return r
}

// testLeaves makes n leaves with values "<prefix> <i>" for i in [start,
// start+n), hashed as the log server would (identity hash = Merkle leaf hash),
// with LeafIndex = i.
func testLeaves(prefix string, start, n int64) []*trillian.LogLeaf {
	leaves := make([]*trillian.LogLeaf, 0, n)
	for i := start; i < start+n; i++ {
		v := []byte(fmt.Sprintf("%s %d", prefix, i))
		h := rfc6962.DefaultHasher.HashLeaf(v)
		leaves = append(leaves, &trillian.LogLeaf{
			LeafValue:        v,
			MerkleLeafHash:   h,
			LeafIdentityHash: h,
			ExtraData:        []byte(fmt.Sprintf("extra %d", i)),
			LeafIndex:        i,
		})
	}
	return leaves
}

// identityLeaf makes a leaf whose identity hash differs from its Merkle hash.
func identityLeaf(value, identity string) *trillian.LogLeaf {
	id := sha256.Sum256([]byte(identity))
	return &trillian.LogLeaf{
		LeafValue:        []byte(value),
		MerkleLeafHash:   rfc6962.DefaultHasher.HashLeaf([]byte(value)),
		LeafIdentityHash: id[:],
	}
}

// cloneLeaves deep-copies leaves, so that a test can pass the same leaves to
// two calls without the first call's mutations (QueueTimestamp) leaking.
func cloneLeaves(leaves []*trillian.LogLeaf) []*trillian.LogLeaf {
	out := make([]*trillian.LogLeaf, len(leaves))
	for i, l := range leaves {
		out[i] = proto.Clone(l).(*trillian.LogLeaf)
	}
	return out
}

// integrate runs one sequencer pass over the tree, as Trillian's sequencer
// does, and returns the number of leaves integrated.
func integrate(ctx context.Context, t testing.TB, s *Store, tree *trillian.Tree, limit int) int {
	t.Helper()
	log.InitMetrics(nil)
	// The storage the embedded engine gives its sequencer.
	n, err := log.IntegrateBatch(ctx, tree, limit, 0, 0, clock.System, s.SequencerLogStorage(), quota.Noop())
	if err != nil {
		t.Fatalf("IntegrateBatch: %v", err)
	}
	return n
}

// merkleRoot computes the RFC 6962 root of the leaf hashes independently of
// Trillian's storage.
func merkleRoot(t testing.TB, leafHashes [][]byte) []byte {
	t.Helper()
	if len(leafHashes) == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range leafHashes {
		if err := r.Append(h, nil); err != nil {
			t.Fatalf("compact range: %v", err)
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatalf("compact range root: %v", err)
	}
	return root
}

// count runs a COUNT(*) query on the store's read pool.
func count(t testing.TB, s *Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.reader.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

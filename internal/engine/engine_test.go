package engine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine/dbtest"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func testLeaves(t *testing.T, n int) []sigsum.Leaf {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	leaves := make([]sigsum.Leaf, n)
	for i := range leaves {
		if leaves[i], err = sigsum.SignLeaf(s, sigsum.HashBytes([]byte(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	return leaves
}

// testStores returns the stores to test on: extra, a SQLite file, and a scratch MySQL and PostgreSQL database when
// the environment names servers (dbtest).
func testStores(t *testing.T, extra ...string) []string {
	stores := append(extra, "sqlite:"+filepath.Join(t.TempDir(), "t.db"))
	scratch := dbtest.Stores(t)
	for _, name := range []string{"mysql", "postgresql"} {
		if s, ok := scratch[name]; ok {
			stores = append(stores, s)
		}
	}
	return stores
}

func startEngine(t *testing.T, storage string) *Engine {
	t.Helper()
	e, err := StartEmbedded(context.Background(), EmbeddedConfig{Storage: mustStorage(t, storage), SequencerInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("closing engine: %v", err)
		}
	})
	return e
}

// waitSize polls until the tree has integrated at least size leaves, for up to a minute: a shared MariaDB on a
// loaded CI machine once took 20 s to queue 812 leaves and had integrated 128 of them 20 s later.
func waitSize(t *testing.T, l Log, size uint64) sigsum.TreeHead {
	t.Helper()
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		th, err := l.TreeHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if th.Size >= size {
			return th
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree stuck at size %d after %v, want %d (the sequencer's errors are in Trillian's klog output)", th.Size, time.Since(start).Round(time.Second), size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leafHashes(leaves []sigsum.Leaf) []sigsum.Hash {
	hs := make([]sigsum.Hash, len(leaves))
	for i := range leaves {
		hs[i] = leaves[i].Hash()
	}
	return hs
}

func TestPrimaryTree(t *testing.T) {
	t.Parallel()
	for _, storage := range testStores(t, "memory:") {
		t.Run(strings.Split(storage, ":")[0], func(t *testing.T) {
			ctx := context.Background()
			e := startEngine(t, storage)
			idFile := filepath.Join(t.TempDir(), "tree-id")
			l, err := e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_LOG, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			if th, err := l.TreeHead(ctx); err != nil || th.Size != 0 || th.RootHash != sigsum.RootHash(nil) {
				t.Fatalf("new tree head = %+v, %v", th, err)
			}
			leaves := testLeaves(t, 7)
			for i := range leaves {
				if dup, err := l.QueueLeaf(ctx, &leaves[i]); err != nil || dup {
					t.Fatalf("QueueLeaf %d = %v, %v", i, dup, err)
				}
			}
			th := waitSize(t, l, 7)
			if th.RootHash != sigsum.RootHash(leafHashes(leaves)) {
				t.Fatal("root differs from the leaves' root")
			}
			if !strings.HasPrefix(storage, "memory") { // the memory provider does not deduplicate
				if dup, err := l.QueueLeaf(ctx, &leaves[3]); err != nil || !dup {
					t.Errorf("re-queueing a leaf = %v, %v; want duplicate", dup, err)
				}
			}
			got, err := l.GetLeaves(ctx, 2, 100)
			if err != nil || len(got) != 5 || got[0] != leaves[2] {
				t.Fatalf("GetLeaves(2, 100) = %d leaves, %v", len(got), err)
			}
			if _, err := l.GetLeaves(ctx, 7, 1); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("GetLeaves past the end: %v, want ErrOutOfRange", err)
			}
			if _, err := l.GetLeaves(ctx, 0, 0); err == nil {
				t.Error("GetLeaves of no leaves succeeded")
			}
			if hs, err := l.LeafHashes(ctx, 2, 100); err != nil || !slices.Equal(hs, leafHashes(leaves[2:])) {
				t.Errorf("LeafHashes(2, 100) = %d hashes, %v; want those of leaves 2 to 6", len(hs), err)
			}
			if _, err := l.LeafHashes(ctx, 7, 1); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("LeafHashes past the end: %v, want ErrOutOfRange", err)
			}
			if _, err := l.LeafHashes(ctx, 0, 0); err == nil {
				t.Error("LeafHashes of no leaves succeeded")
			}
			for i := range leaves {
				p, err := l.InclusionProof(ctx, 7, leaves[i].Hash())
				if err != nil {
					t.Fatal(err)
				}
				if p.LeafIndex != uint64(i) || p.Verify(leaves[i].Hash(), &th) != nil {
					t.Errorf("inclusion proof of leaf %d does not verify", i)
				}
			}
			if _, err := l.InclusionProof(ctx, 3, leaves[5].Hash()); !errors.Is(err, ErrNotFound) {
				t.Errorf("leaf 5 in tree of size 3: %v, want ErrNotFound", err)
			}
			if _, err := l.InclusionProof(ctx, 7, sigsum.Hash{1}); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown leaf: %v, want ErrNotFound", err)
			}
			for old := uint64(1); old < 7; old++ {
				p, err := l.ConsistencyProof(ctx, old, 7)
				if err != nil {
					t.Fatal(err)
				}
				oth := sigsum.TreeHead{Size: old, RootHash: sigsum.RootHash(leafHashes(leaves[:old]))}
				if err := p.Verify(&oth, &th); err != nil {
					t.Errorf("consistency %d→7: %v", old, err)
				}
			}

			// Reopening by the id file finds the same tree; the other role's type is refused.
			again, err := e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_LOG})
			if err != nil || again.TreeID() != l.TreeID() {
				t.Fatalf("reopening: %v", err)
			}
			if _, err := e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_PREORDERED_LOG}); err == nil ||
				!strings.Contains(err.Error(), "PREORDERED_LOG") {
				t.Errorf("opening a LOG tree as PREORDERED_LOG: %v", err)
			}
		})
	}
}

func TestSecondaryTree(t *testing.T) {
	t.Parallel()
	for _, storage := range testStores(t) {
		t.Run(strings.Split(storage, ":")[0], func(t *testing.T) {
			testSecondaryTree(t, storage)
		})
	}
}

func testSecondaryTree(t *testing.T, storage string) {
	ctx := context.Background()
	e := startEngine(t, storage)
	l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(t.TempDir(), "tree-id"), Type: trillian.TreeType_PREORDERED_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	leaves := testLeaves(t, 10)
	want := maxStoreDefault // a few seconds of work for a MySQL or PostgreSQL store
	if strings.HasPrefix(storage, "sqlite:") {
		want = maxStoreSQLite
	}
	if got := l.MaxStoreBatch(); got != want {
		t.Errorf("MaxStoreBatch() = %d, want %d", got, want)
	}
	if err := l.AddSequencedLeaves(ctx, 0, leaves[:4]); err != nil {
		t.Fatal(err)
	}
	// A gap: leaves 6..9 stored before 4..5 stay out of the tree until the gap is filled.
	if err := l.AddSequencedLeaves(ctx, 6, leaves[6:]); err != nil {
		t.Fatal(err)
	}
	waitSize(t, l, 4)
	time.Sleep(100 * time.Millisecond)
	if th, _ := l.TreeHead(ctx); th.Size != 4 {
		t.Fatalf("integrated past a gap: size %d", th.Size)
	}
	if n, err := e.PendingSequencedLeaves(ctx, l.TreeID()); err != nil || n != 4 {
		t.Errorf("pending = %d, %v; want 4", n, err)
	}
	// Stored past the gap is not integrated: GetLeaves and LeafIndex find integrated leaves only.
	if got, err := l.GetLeaves(ctx, 2, 100); err != nil || len(got) != 2 || got[0] != leaves[2] || got[1] != leaves[3] {
		t.Errorf("GetLeaves(2, 100) = %d leaves, %v; want leaves 2 and 3", len(got), err)
	}
	if got, err := l.GetLeaves(ctx, 4, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("GetLeaves(4, 1) at the end of the tree = %d leaves, %v; want ErrOutOfRange", len(got), err)
	}
	if hs, err := l.LeafHashes(ctx, 2, 100); err != nil || !slices.Equal(hs, leafHashes(leaves[2:4])) {
		t.Errorf("LeafHashes(2, 100) = %d hashes, %v; want those of leaves 2 and 3", len(hs), err)
	}
	if hs, err := l.LeafHashes(ctx, 4, 1); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("LeafHashes(4, 1) at the end of the tree = %d hashes, %v; want ErrOutOfRange", len(hs), err)
	}
	if i, err := l.LeafIndex(ctx, leaves[2].Hash()); err != nil || i != 2 {
		t.Errorf("LeafIndex(leaf 2) = %d, %v; want 2", i, err)
	}
	if i, err := l.LeafIndex(ctx, leaves[7].Hash()); !errors.Is(err, ErrNotFound) {
		t.Errorf("LeafIndex(leaf 7, stored but not integrated) = %d, %v; want ErrNotFound", i, err)
	}
	if err := l.AddSequencedLeaves(ctx, 4, leaves[4:6]); err != nil {
		t.Fatal(err)
	}
	th := waitSize(t, l, 10)
	if th.RootHash != sigsum.RootHash(leafHashes(leaves)) {
		t.Fatal("secondary root differs from the leaves' root")
	}
	if i, err := l.LeafIndex(ctx, leaves[7].Hash()); err != nil || i != 7 {
		t.Errorf("LeafIndex(leaf 7) = %d, %v; want 7", i, err)
	}
	if i, err := l.LeafIndex(ctx, testLeaves(t, 11)[10].Hash()); !errors.Is(err, ErrNotFound) {
		t.Errorf("LeafIndex(a leaf never stored) = %d, %v; want ErrNotFound", i, err)
	}
	// A retry of stored leaves at their own indices is fine; another leaf at a taken index is not.
	if err := l.AddSequencedLeaves(ctx, 8, leaves[8:]); err != nil {
		t.Errorf("re-adding leaves at their indices: %v", err)
	}
	other := testLeaves(t, 11)[10:]
	if err := l.AddSequencedLeaves(ctx, 2, other); !errors.Is(err, ErrConflict) {
		t.Errorf("adding a new leaf at a taken index: %v, want ErrConflict", err)
	}
	if n, err := e.PendingSequencedLeaves(ctx, l.TreeID()); err != nil || n != 0 {
		t.Errorf("pending = %d, %v; want 0", n, err)
	}
}

// TestLeafHashesAcrossTiles reads leaf hashes of full and partial storage tiles (256 leaves each), across their
// edges, and a read longer than one call returns, and checks them against the hashes of the leaves GetLeaves reads.
func TestLeafHashesAcrossTiles(t *testing.T) {
	t.Parallel()
	leaves := testLeaves(t, 2*256+300)
	n := uint64(len(leaves))
	for _, storage := range testStores(t, "memory:") {
		t.Run(strings.Split(storage, ":")[0], func(t *testing.T) {
			ctx := context.Background()
			e := startEngine(t, storage)
			l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(t.TempDir(), "tree-id"), Type: trillian.TreeType_LOG, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			queueAll(t, l, leaves)
			waitSize(t, l, n)
			var stored []sigsum.Leaf // in the order the sequencer chose
			for uint64(len(stored)) < n {
				got, err := l.GetLeaves(ctx, uint64(len(stored)), n)
				if err != nil {
					t.Fatal(err)
				}
				stored = append(stored, got...)
			}
			want := leafHashes(stored)
			for _, r := range [][2]uint64{{0, 256}, {256, 256}, {250, 20}, {511, 2}, {700, 500}, {0, n}, {n - 1, 1}} {
				start, count := r[0], r[1]
				got, err := l.LeafHashes(ctx, start, count)
				end := min(start+count, n, start+maxLeafHashes)
				if err != nil || !slices.Equal(got, want[start:end]) {
					t.Errorf("LeafHashes(%d, %d) = %d hashes, %v; want those of leaves %d to %d", start, count, len(got), err, start, end-1)
				}
			}
		})
	}
}

func TestTreeIDFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "tree-id")
	if err := WriteTreeIDFile(p, 42); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "tree-id=42\n" {
		t.Errorf("file = %q", b)
	}
	if id, err := ReadTreeIDFile(p); err != nil || id != 42 {
		t.Errorf("ReadTreeIDFile = %d, %v", id, err)
	}
	if err := WriteTreeIDFile(p, 43); err == nil {
		t.Error("overwrote an existing tree id file")
	}
	for name, content := range map[string]string{
		"empty":     "",
		"no prefix": "42\n",
		"negative":  "tree-id=-1\n",
		"zero":      "tree-id=0\n",
		"garbage":   "tree-id=x\n",
	} {
		q := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(q, []byte(content), 0o644)
		if _, err := ReadTreeIDFile(q); err == nil {
			t.Errorf("%s: accepted %q", name, content)
		}
	}
	// Reference-style files may carry more lines after the first.
	q := filepath.Join(dir, "more")
	os.WriteFile(q, []byte("tree-id=7\nother=1\n"), 0o644)
	if id, err := ReadTreeIDFile(q); err != nil || id != 7 {
		t.Errorf("multi-line file: %d, %v", id, err)
	}
}

// TestSequencerRunsBackToBackOnABacklog: with an interval of an hour, leaves stored before the engine starts are
// all integrated at once, a full batch a pass, because a pass that integrates a full batch is followed by the next
// without waiting. Trillian's own loop would integrate one batch and wait the hour.
func TestSequencerRunsBackToBackOnABacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	storage := "sqlite:" + filepath.Join(t.TempDir(), "t.db")
	idFile := filepath.Join(t.TempDir(), "tree-id")
	leaves := testLeaves(t, 35)

	e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage), NoSequencer: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_PREORDERED_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddSequencedLeaves(ctx, 0, leaves); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e, err = StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage), SequencerInterval: time.Hour, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if l, err = e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_PREORDERED_LOG}); err != nil {
		t.Fatal(err)
	}
	th := waitSize(t, l, 35)
	if th.Size != 35 || th.RootHash != sigsum.RootHash(leafHashes(leaves)) {
		t.Fatalf("tree head size %d, root %x; want 35 and the leaves' root", th.Size, th.RootHash)
	}
}

// errorRecords counts the error records a handler is given.
type errorRecords struct {
	slog.Handler
	n *atomic.Int64
}

func (h errorRecords) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}
func (h errorRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errorRecords) WithGroup(string) slog.Handler      { return h }

// A node's clean shutdown logs no ERROR: closing the engine lets a sequencer pass under way finish rather than
// cancelling it under Trillian, which would log its cancelled storage calls as errors. Not parallel: klog is
// process-wide.
func TestCloseMidPassLogsNoError(t *testing.T) {
	var errs atomic.Int64
	RouteKlog(slog.New(errorRecords{slog.DiscardHandler, &errs}))
	t.Cleanup(func() { RouteKlog(slog.New(slog.DiscardHandler)) })
	ctx := t.Context()
	storage, idFile := "sqlite:"+filepath.Join(t.TempDir(), "t.db"), filepath.Join(t.TempDir(), "tree-id")
	e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage), NoSequencer: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.OpenTree(ctx, TreeConfig{IDFile: idFile, Type: trillian.TreeType_LOG, Create: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage), SequencerInterval: time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := errs.Load(); n != 0 {
		t.Errorf("%d ERROR records from Trillian over 30 clean closes", n)
	}
}

// mustStorage parses a storage value.
func mustStorage(t testing.TB, s string) Storage {
	t.Helper()
	st, err := ParseStorage(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

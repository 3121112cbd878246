package committed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func seedSigner(t testing.TB, b byte) sigsum.Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sqliteLog is a LOG tree on an embedded Trillian over SQLite holding n signed leaves, and the same tree seen
// through the engine's gRPC API only, as an external Trillian is.
func sqliteLog(t testing.TB, n int) (embedded, external engine.Log, leaves []sigsum.Leaf) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	engine.RouteKlog(quietLogger())
	e, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	sub := seedSigner(t, 2)
	for i := range n {
		leaf, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint("leaf ", i))))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.QueueLeaf(ctx, &leaf); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leaf)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		th, err := l.TreeHead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if th.Size == uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree stuck at %d, want %d", th.Size, n)
		}
	}
	// The tree's leaves in index order (the sequencer's, not the queue's).
	got, err := l.GetLeaves(ctx, 0, uint64(n))
	if err != nil || len(got) != n {
		t.Fatalf("reading the tree back: %d leaves, %v", len(got), err)
	}
	return l, e.OpenTreeByID(l.TreeID()), got
}

func open(t testing.TB, cfg Config, size uint64) *Tree {
	t.Helper()
	tr, err := Open(context.Background(), cfg, size)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestAnswersEqual: the proofs and leaves served from the tree in memory are byte for byte Trillian's, with every
// tile held, with the leaf hashes of tiles not held read back from storage, for leaves found in storage only, for a
// tree too large to hold, from a storage that finds leaves only with their proofs, and after an Advance.
func TestAnswersEqual(t *testing.T) {
	t.Parallel()
	const n = 600 // two full tiles and a partial one
	l, external, leaves := sqliteLog(t, n)
	ctx := context.Background()
	olds := []uint64{1, 2, 255, 256, 257, 300, 512, 599}
	answers := func(tr *Tree) map[string]string {
		t.Helper()
		got := map[string]string{}
		for i := 0; i < n; i += 7 {
			ip, err := tr.Inclusion(ctx, leaves[i].Hash(), n)
			if err != nil {
				t.Fatalf("inclusion proof of leaf %d: %v", i, err)
			}
			got[fmt.Sprint("i", i)] = string(ip.MarshalASCII())
			if i%49 == 0 {
				ip, err := tr.InclusionByIndex(ctx, uint64(i), n)
				if err != nil {
					t.Fatalf("inclusion proof of leaf %d by index: %v", i, err)
				}
				if s := string(ip.MarshalASCII()); s != got[fmt.Sprint("i", i)] {
					t.Fatalf("inclusion proof of leaf %d by index differs from the one by hash", i)
				}
			}
		}
		for _, old := range olds {
			cp, err := tr.Consistency(ctx, old, n)
			if err != nil {
				t.Fatalf("consistency proof %d→%d: %v", old, n, err)
			}
			got[fmt.Sprint("c", old)] = string(cp.MarshalASCII())
		}
		for _, r := range [][2]uint64{{3, 30}, {200, 600}, {512, 600}} {
			body, err := tr.Leaves(ctx, r[0], r[1])
			if err != nil {
				t.Fatalf("leaves %v: %v", r, err)
			}
			if want := sigsum.MarshalLeavesASCII(leaves[r[0]:r[1]]); !bytes.Equal(body, want) {
				t.Fatalf("leaves %v differ from the tree's", r)
			}
			got[fmt.Sprint("l", r)] = string(body)
		}
		if _, err := tr.Inclusion(ctx, sigsum.HashBytes([]byte("never logged")), n); !errors.Is(err, ErrNotFound) {
			t.Fatalf("inclusion proof of a leaf storage does not hold: %v, want ErrNotFound", err)
		}
		return got
	}
	mem := open(t, Config{Source: l}, n)
	if mem.mem == nil || mem.mem.sizeHeld() != n {
		t.Fatal("the tree is not held in memory")
	}
	want := answers(mem)
	// Every answer verifies against the tree's head.
	hs := make([]sigsum.Hash, n)
	for i := range leaves {
		hs[i] = leaves[i].Hash()
	}
	head := sigsum.TreeHead{Size: n, RootHash: sigsum.RootHash(hs)}
	for i := 0; i < n; i += 7 {
		p, err := sigsum.ParseInclusionProof([]byte(want[fmt.Sprint("i", i)]))
		if err != nil || p.Verify(hs[i], &head) != nil {
			t.Fatalf("inclusion proof of leaf %d does not verify: %v", i, err)
		}
	}

	advanced := open(t, Config{Source: l}, 300)
	if err := advanced.Advance(ctx, n); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tr   *Tree
	}{
		{"tiles from storage", open(t, Config{Source: l, Limits: Limits{MaxTiles: 1}}, n)},
		{"leaves found in storage", open(t, Config{Source: l, Limits: Limits{MaxIndex: -1}}, n)},
		{"too large to hold", open(t, Config{Source: l, Limits: Limits{MaxHold: n - 1}}, n)},
		{"none held, none indexed", open(t, Config{Source: l, Limits: Limits{MaxHold: -1, MaxIndex: -1}}, n)},
		{"external Trillian, tiles from storage", open(t, Config{Source: external, Limits: Limits{MaxTiles: 1, MaxIndex: -1}}, n)},
		{"external Trillian, too large to hold", open(t, Config{Source: external, Limits: Limits{MaxHold: -1, MaxIndex: -1}}, n)},
		{"advanced from 300", advanced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := answers(tc.tr)
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("answer %s differs from the one served from memory", k)
				}
			}
		})
	}
}

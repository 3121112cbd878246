package committed

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// leafSource serves the hashes of leaves from a slice, at most batch a call (0: all asked), and counts the calls.
type leafSource struct {
	mu     sync.Mutex
	leaves []sigsum.Leaf
	batch  uint64
	calls  atomic.Int64
	asked  atomic.Uint64 // count of the last call
	fail   error
}

func (s *leafSource) LeafHashes(_ context.Context, start, count uint64) ([]sigsum.Hash, error) {
	s.calls.Add(1)
	s.asked.Store(count)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	if s.batch > 0 {
		count = min(count, s.batch)
	}
	end := min(start+count, uint64(len(s.leaves)))
	if start >= end {
		return nil, nil
	}
	hs := make([]sigsum.Hash, 0, end-start)
	for i := start; i < end; i++ {
		hs = append(hs, s.leaves[i].Hash())
	}
	return hs, nil
}

func testLeaves(n int) ([]sigsum.Leaf, []sigsum.Hash) {
	leaves := make([]sigsum.Leaf, n)
	hs := make([]sigsum.Hash, n)
	for i := range leaves {
		leaves[i].Checksum = sigsum.HashBytes(fmt.Appendf(nil, "leaf %d", i))
		leaves[i].KeyHash[0] = byte(i)
		hs[i] = leaves[i].Hash()
	}
	return leaves, hs
}

func newTree(t *testing.T, src hashSource, maxTiles int) *memTree {
	t.Helper()
	return newMemTree(src, maxTiles)
}

// TestProofs checks every inclusion and consistency proof the tree serves against the root of the leaves, at sizes
// inside the first tile, at and around tile boundaries and past several tiles, with every tile but one evicted so
// that proofs need tiles read back from storage (in short batches).
func TestProofs(t *testing.T) {
	t.Parallel()
	leaves, hs := testLeaves(3*tileLeaves + 77)
	for _, tc := range []struct {
		name     string
		maxTiles int
		batch    uint64
	}{
		{"all tiles held", 1000, 0},
		{"one tile held, storage in batches of 100", 1, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &leafSource{leaves: leaves, batch: tc.batch}
			tr := newTree(t, src, tc.maxTiles)
			ctx := context.Background()
			sizes := []uint64{1, 2, 3, 7, 8, 100, 255, 256, 257, 511, 512, 513, 700, 768, 3*tileLeaves + 77}
			held := uint64(0)
			for _, size := range sizes {
				tr.add(leaves[held:size])
				held = size
				if got := tr.sizeHeld(); got != size {
					t.Fatalf("sizeHeld %d, want %d", got, size)
				}
				th := sigsum.TreeHead{Size: size, RootHash: sigsum.RootHash(hs[:size])}
				for i := uint64(0); i < size && size > 1; i += 1 + size/37 {
					p, err := tr.inclusion(ctx, i, size)
					if err != nil {
						t.Fatalf("inclusion of %d in %d: %v", i, size, err)
					}
					if err := p.Verify(hs[i], &th); err != nil {
						t.Fatalf("inclusion of %d in %d does not verify: %v", i, size, err)
					}
				}
				for _, old := range sizes {
					if old >= size {
						break
					}
					oth := sigsum.TreeHead{Size: old, RootHash: sigsum.RootHash(hs[:old])}
					p, err := tr.consistency(ctx, old, size)
					if err != nil {
						t.Fatalf("consistency %d→%d: %v", old, size, err)
					}
					if err := p.Verify(&oth, &th); err != nil {
						t.Fatalf("consistency %d→%d does not verify: %v", old, size, err)
					}
				}
				for _, r := range [][2]uint64{{0, size}, {size / 3, size/3 + 1}, {size / 2, size}} {
					got, ok := tr.heldLeaves(r[0], r[1])
					if !ok {
						if tc.maxTiles == 1 {
							continue // evicted tiles are left to storage
						}
						t.Fatalf("leaves %v of %d not held", r, size)
					}
					if len(got) != int(r[1]-r[0]) {
						t.Fatalf("leaves %v of %d: got %d", r, size, len(got))
					}
					for i := range got {
						if got[i] != leaves[r[0]+uint64(i)] {
							t.Fatalf("leaves %v of %d: leaf %d differs", r, size, r[0]+uint64(i))
						}
					}
				}
			}
			if _, err := tr.inclusion(ctx, 0, held+1); !errors.Is(err, errNotHeld) {
				t.Errorf("inclusion in a larger tree than held: %v, want errNotHeld", err)
			}
			if _, ok := tr.heldLeaves(0, held+1); ok {
				t.Error("leaves past the tree were returned")
			}
			if tc.maxTiles == 1 && src.calls.Load() == 0 {
				t.Error("no tile was read back from storage")
			}
			if tr.lru.Len() > tc.maxTiles {
				t.Errorf("%d tiles held, bound %d", tr.lru.Len(), tc.maxTiles)
			}
		})
	}
}

// TestStorageDisagrees: leaf hashes in storage that differ from the leaves the tree was given are refused, and so
// are storage errors and short reads.
func TestStorageDisagrees(t *testing.T) {
	t.Parallel()
	leaves, _ := testLeaves(2*tileLeaves + 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*leafSource)
		want   string
	}{
		{"changed leaf", func(s *leafSource) { s.leaves[5].Signature[0] ^= 1 }, "in storage hash to"},
		{"storage error", func(s *leafSource) { s.fail = errors.New("disk on fire") }, "disk on fire"},
		{"missing leaves", func(s *leafSource) { s.leaves = s.leaves[:2] }, "storage returned 0 of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := &leafSource{leaves: append([]sigsum.Leaf(nil), leaves...)}
			tr := newTree(t, src, 1)
			tr.add(leaves) // tile 1 evicts tile 0
			tc.mutate(src)
			if _, err := tr.inclusion(ctx, 3, tr.sizeHeld()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("inclusion through bad leaf hashes: %v, want %q", err, tc.want)
			}
			if _, ok := tr.heldLeaves(0, 10); ok {
				t.Error("leaves of a tile not held were served")
			}
			if _, ok := tr.cache[0]; ok {
				t.Error("a tile was cached from storage")
			}
			// The tail and held tiles still serve.
			if _, ok := tr.heldLeaves(2*tileLeaves, 2*tileLeaves+1); !ok {
				t.Error("leaves of the tail not served")
			}
		})
	}
}

// TestConcurrent runs appends, proofs (many of them in tiles no longer held) and leaf reads at once, for the race
// detector, with a cache of two tiles.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	leaves, hs := testLeaves(10 * tileLeaves)
	src := &leafSource{leaves: leaves}
	tr := newTree(t, src, 2)
	tr.add(leaves[:4*tileLeaves])
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 4 * tileLeaves; i < len(leaves); i += 13 {
			tr.add(leaves[i:min(i+13, len(leaves))])
		}
	}()
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				size := tr.sizeHeld()
				i := uint64(g*131+j*17) % size
				p, err := tr.inclusion(ctx, i, size)
				if err == nil {
					th := sigsum.TreeHead{Size: size, RootHash: sigsum.RootHash(hs[:size])}
					err = p.Verify(hs[i], &th)
				}
				if got, ok := tr.heldLeaves(i, min(i+300, size)); err == nil && ok && got[0] != leaves[i] {
					err = fmt.Errorf("heldLeaves from %d: wrong first leaf", i)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, step %d: %w", g, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if tr.lru.Len() > 2 {
		t.Errorf("%d tiles held, bound 2", tr.lru.Len())
	}
}

// TestColdGroups: a proof in a tile not held reads the leaf hashes of one group of 32 from storage for each group
// it needs a node of, keeps nothing of them, and leaves the tiles held as they were.
func TestColdGroups(t *testing.T) {
	t.Parallel()
	leaves, hs := testLeaves(5*tileLeaves + 3)
	src := &leafSource{leaves: leaves}
	tr := newTree(t, src, 1)
	tr.add(leaves) // holds tile 4 and the tail
	ctx := context.Background()
	size := uint64(len(leaves))
	th := sigsum.TreeHead{Size: size, RootHash: sigsum.RootHash(hs)}
	for _, i := range []uint64{0, 31, 32, 100, tileLeaves + 77, 3*tileLeaves + 255} {
		before := src.calls.Load()
		p, err := tr.inclusion(ctx, i, size)
		if err != nil {
			t.Fatalf("inclusion of %d: %v", i, err)
		}
		if err := p.Verify(hs[i], &th); err != nil {
			t.Fatalf("inclusion of %d does not verify: %v", i, err)
		}
		if got := src.calls.Load() - before; got != 1 {
			t.Errorf("inclusion of %d read storage %d times, want once", i, got)
		}
		if got := src.asked.Load(); got != groupLeaves {
			t.Errorf("inclusion of %d asked for %d leaf hashes, want %d", i, got, groupLeaves)
		}
	}
	// Nodes in the tile held and in the tail need no storage.
	before := src.calls.Load()
	for i := 4 * tileLeaves; i < len(leaves); i++ {
		if _, err := tr.inclusion(ctx, uint64(i), size); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.calls.Load() - before; got != 0 {
		t.Errorf("proofs of leaves held read storage %d times", got)
	}
	// A consistency proof from a size inside a tile not held reads the group of its last leaf.
	old := uint64(2*tileLeaves + 45)
	before = src.calls.Load()
	p, err := tr.consistency(ctx, old, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(&sigsum.TreeHead{Size: old, RootHash: sigsum.RootHash(hs[:old])}, &th); err != nil {
		t.Errorf("consistency %d→%d: %v", old, size, err)
	}
	if got := src.calls.Load() - before; got != 1 {
		t.Errorf("consistency from %d read storage %d times, want once", old, got)
	}
	if _, ok := tr.cache[4]; !ok || tr.lru.Len() != 1 {
		t.Errorf("tile 4 held %v, %d tiles held: want tile 4 alone", ok, tr.lru.Len())
	}
}

// BenchmarkInclusion measures an inclusion proof in a tree of 2^20 leaves, every tile held.
func BenchmarkInclusion(b *testing.B) {
	leaves, _ := testLeaves(1 << 20)
	tr := newMemTree(&leafSource{leaves: leaves}, 1<<12)
	tr.add(leaves)
	ctx := context.Background()
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i = (i + 7919) % (1 << 20)
		if _, err := tr.inclusion(ctx, i, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHeldLeaves: leaves are returned only when every tile of the range is held, and asking reads no storage.
func TestHeldLeaves(t *testing.T) {
	t.Parallel()
	leaves, _ := testLeaves(2*tileLeaves + 10)
	src := &leafSource{leaves: leaves}
	tr := newTree(t, src, 1)
	tr.add(leaves) // holds tile 1 and the tail
	for _, tc := range []struct {
		start, end uint64
		ok         bool
	}{
		{0, 1, false},
		{tileLeaves - 1, tileLeaves + 1, false},
		{tileLeaves, tileLeaves + 1, true},
		{tileLeaves + 5, 2*tileLeaves + 10, true},
		{2 * tileLeaves, 2*tileLeaves + 10, true},
		{2 * tileLeaves, 2*tileLeaves + 11, false}, // past the tree
		{7, 7, false},
	} {
		got, ok := tr.heldLeaves(tc.start, tc.end)
		if ok != tc.ok {
			t.Errorf("heldLeaves(%d, %d): held %v, want %v", tc.start, tc.end, ok, tc.ok)
			continue
		}
		if ok && fmt.Sprint(got) != fmt.Sprint(leaves[tc.start:tc.end]) {
			t.Errorf("heldLeaves(%d, %d): wrong leaves", tc.start, tc.end)
		}
	}
	if n := src.calls.Load(); n != 0 {
		t.Errorf("heldLeaves read storage %d times", n)
	}
}

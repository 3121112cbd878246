package committed

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// fakeStorage is a Storage over a slice of leaves, all integrated, that counts its calls by method.
type fakeStorage struct {
	leaves  []sigsum.Leaf
	noIndex bool  // LeafIndex is unsupported, as from an external Trillian
	fail    error // every call fails with it
	full    *memTree

	mu    sync.Mutex
	calls map[string]int
}

func newFakeStorage(leaves []sigsum.Leaf) *fakeStorage {
	s := &fakeStorage{leaves: leaves, calls: map[string]int{}}
	s.full = newMemTree(s, len(leaves)/tileLeaves+1)
	s.full.add(leaves)
	return s
}

func (s *fakeStorage) call(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[name]++
	return s.fail
}

// count returns the calls of each method since the last count, and forgets them.
func (s *fakeStorage) count() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = map[string]int{}
	return c
}

func (s *fakeStorage) GetLeaves(_ context.Context, start, count uint64) ([]sigsum.Leaf, error) {
	if err := s.call("GetLeaves"); err != nil {
		return nil, err
	}
	end := min(start+count, uint64(len(s.leaves)))
	if start >= end {
		return nil, engine.ErrOutOfRange
	}
	return slices.Clone(s.leaves[start:end]), nil
}

func (s *fakeStorage) LeafHashes(_ context.Context, start, count uint64) ([]sigsum.Hash, error) {
	if err := s.call("LeafHashes"); err != nil {
		return nil, err
	}
	var hs []sigsum.Hash
	for i := start; i < min(start+count, uint64(len(s.leaves))); i++ {
		hs = append(hs, s.leaves[i].Hash())
	}
	return hs, nil
}

func (s *fakeStorage) find(h sigsum.Hash) (uint64, bool) {
	for i := range s.leaves {
		if s.leaves[i].Hash() == h {
			return uint64(i), true
		}
	}
	return 0, false
}

func (s *fakeStorage) LeafIndex(_ context.Context, h sigsum.Hash) (uint64, error) {
	if s.noIndex {
		return 0, engine.ErrUnsupported
	}
	if err := s.call("LeafIndex"); err != nil {
		return 0, err
	}
	if i, ok := s.find(h); ok {
		return i, nil
	}
	return 0, fmt.Errorf("finding leaf: %w", engine.ErrNotFound)
}

func (s *fakeStorage) InclusionProof(ctx context.Context, size uint64, h sigsum.Hash) (sigsum.InclusionProof, error) {
	if err := s.call("InclusionProof"); err != nil {
		return sigsum.InclusionProof{}, err
	}
	i, ok := s.find(h)
	if !ok || i >= size {
		return sigsum.InclusionProof{}, fmt.Errorf("getting inclusion proof: %w", engine.ErrNotFound)
	}
	return s.full.inclusion(ctx, i, size)
}

func (s *fakeStorage) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	if err := s.call("ConsistencyProof"); err != nil {
		return sigsum.ConsistencyProof{}, err
	}
	return s.full.consistency(ctx, oldSize, newSize)
}

func TestOpenRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no source", Config{}},
		{"negative tile bound", Config{Source: newFakeStorage(nil), Limits: Limits{MaxTiles: -1}}},
	} {
		if _, err := Open(context.Background(), tc.cfg, 0); err == nil {
			t.Errorf("%s: a tree was opened", tc.name)
		}
	}
}

// TestMaxHold: a tree of at most MaxHold leaves is held in memory and read whole at Open; a larger one is served from
// storage, and Open reads only its newest MaxIndex leaves, into the index.
func TestMaxHold(t *testing.T) {
	t.Parallel()
	const n = 300
	leaves, _ := testLeaves(n)
	for _, tc := range []struct {
		name     string
		limits   Limits
		held     bool
		read     int // leaves Open reads
		indexed  int // the newest leaves indexed
		consults int // storage reads of a consistency proof to size n
	}{
		{"default", Limits{}, true, n, n, 0},
		{"exactly MaxHold", Limits{MaxHold: n}, true, n, n, 0},
		{"one leaf too many", Limits{MaxHold: n - 1}, false, DefaultMaxIndex, n, 1},
		{"too large, small index", Limits{MaxHold: n - 1, MaxIndex: 10}, false, 10, 10, 1},
		{"hold none", Limits{MaxHold: -1, MaxIndex: 10}, false, 10, 10, 1},
		{"hold all, index none", Limits{MaxIndex: -1}, true, n, 0, 0},
		{"hold none, index none", Limits{MaxHold: -1, MaxIndex: -1}, false, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeStorage(leaves)
			tr := open(t, Config{Source: src, Limits: tc.limits}, n)
			if held := tr.mem != nil; held != tc.held {
				t.Fatalf("held %v, want %v", held, tc.held)
			}
			if got := src.count()["GetLeaves"]; got != (min(tc.read, n)+batch-1)/batch {
				t.Errorf("Open read leaves %d times for %d leaves", got, min(tc.read, n))
			}
			for i := range n {
				_, ok := tr.index.lookup(leaves[i].Hash())
				if want := i >= n-tc.indexed; ok != want {
					t.Fatalf("leaf %d indexed %v, want %v", i, ok, want)
				}
			}
			if _, err := tr.Consistency(context.Background(), 10, n); err != nil {
				t.Fatal(err)
			}
			if got := src.count()["ConsistencyProof"]; got != tc.consults {
				t.Errorf("a consistency proof asked storage %d times, want %d", got, tc.consults)
			}
		})
	}
}

// TestContains: a signed leaf is found in the index, or with one indexed lookup in storage (then remembered); a
// leaf storage holds past the signed size is not signed; a tree held in memory tells a leaf it does not have
// without storage; a storage that cannot look a leaf up proves it by hash.
func TestContains(t *testing.T) {
	t.Parallel()
	const n, signed = 300, 250 // storage holds 50 leaves not signed yet
	leaves, _ := testLeaves(n)
	unknown := sigsum.HashBytes([]byte("never logged"))
	for _, tc := range []struct {
		name    string
		limits  Limits
		noIndex bool
		leaf    sigsum.Hash
		index   uint64
		ok      bool
		calls   map[string]int // storage calls of the first Contains
		again   map[string]int // and of the second
	}{
		{"indexed", Limits{}, false, leaves[200].Hash(), 200, true, nil, nil},
		{"signed, not indexed", Limits{MaxIndex: 10}, false, leaves[3].Hash(), 3, true,
			map[string]int{"LeafIndex": 1}, nil},
		{"signed, no index", Limits{MaxIndex: -1}, false, leaves[3].Hash(), 3, true,
			map[string]int{"LeafIndex": 1}, map[string]int{"LeafIndex": 1}},
		{"signed, not held, not indexed", Limits{MaxHold: -1, MaxIndex: 10}, false, leaves[3].Hash(), 3, true,
			map[string]int{"LeafIndex": 1}, nil},
		{"integrated, not signed: the filter answers", Limits{}, false, leaves[260].Hash(), 0, false, nil, nil},
		{"integrated, not signed, not held", Limits{MaxHold: -1}, false, leaves[260].Hash(), 0, false,
			map[string]int{"LeafIndex": 1}, map[string]int{"LeafIndex": 1}},
		{"unknown: the filter answers", Limits{}, false, unknown, 0, false, nil, nil},
		{"unknown, not held", Limits{MaxHold: -1}, false, unknown, 0, false,
			map[string]int{"LeafIndex": 1}, map[string]int{"LeafIndex": 1}},
		{"no lookup by hash, signed", Limits{MaxIndex: 10}, true, leaves[3].Hash(), 3, true,
			map[string]int{"InclusionProof": 1}, nil},
		{"no lookup by hash, integrated, not signed, not held", Limits{MaxHold: -1}, true, leaves[260].Hash(), 0, false,
			map[string]int{"InclusionProof": 1}, map[string]int{"InclusionProof": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newFakeStorage(leaves)
			src.noIndex = tc.noIndex
			tr := open(t, Config{Source: src, Limits: tc.limits}, signed)
			src.count()
			for round, want := range []map[string]int{tc.calls, tc.again} {
				i, ok, err := tr.Contains(context.Background(), tc.leaf)
				if err != nil || ok != tc.ok || (ok && i != tc.index) {
					t.Fatalf("round %d: Contains = %d, %v, %v; want %d, %v", round, i, ok, err, tc.index, tc.ok)
				}
				if got := src.count(); fmt.Sprint(got) != fmt.Sprint(want) && len(got)+len(want) > 0 {
					t.Errorf("round %d: storage calls %v, want %v", round, got, want)
				}
			}
		})
	}

	// An empty tree asks storage nothing; a storage failure is an error, not an answer.
	src := newFakeStorage(leaves)
	empty := open(t, Config{Source: src}, 0)
	if _, ok, err := empty.Contains(context.Background(), leaves[0].Hash()); ok || err != nil || len(src.count()) != 0 {
		t.Errorf("Contains in an empty tree: %v, %v (storage asked)", ok, err)
	}
	failing := open(t, Config{Source: src, Limits: Limits{MaxIndex: -1}}, signed)
	src.fail = errors.New("disk on fire")
	if _, _, err := failing.Contains(context.Background(), leaves[0].Hash()); err == nil {
		t.Error("Contains through a failing storage: no error")
	}
}

// TestInclusionRemembers: a leaf the index does not hold is found in storage with one lookup and proven from
// memory, and remembered so the next proof needs no storage; a leaf past the tree asked about is not found.
func TestInclusionRemembers(t *testing.T) {
	t.Parallel()
	const n, signed = 300, 250
	leaves, hs := testLeaves(n)
	src := newFakeStorage(leaves)
	tr := open(t, Config{Source: src, Limits: Limits{MaxIndex: 10}}, signed)
	src.count()
	ctx := context.Background()
	head := sigsum.TreeHead{Size: 200, RootHash: sigsum.RootHash(hs[:200])}
	for round, want := range []map[string]int{{"LeafIndex": 1}, {}} {
		p, err := tr.Inclusion(ctx, hs[7], 200)
		if err != nil || p.Verify(hs[7], &head) != nil {
			t.Fatalf("round %d: inclusion of leaf 7: %v", round, err)
		}
		if got := src.count(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: storage calls %v, want %v", round, got, want)
		}
	}
	for _, i := range []int{220, 260} { // signed but past the size asked; integrated, not signed
		if _, err := tr.Inclusion(ctx, hs[i], 200); !errors.Is(err, ErrNotFound) {
			t.Errorf("inclusion of leaf %d in the tree of 200: %v, want ErrNotFound", i, err)
		}
	}
	if _, ok := tr.index.lookup(hs[260]); ok {
		t.Error("a leaf not signed was indexed")
	}
}

// TestAdvance: Advance reads the leaves a signed size adds into memory and the index, hands their hashes on in
// order, and after a failure reads what it missed.
// TestAdvanceNotHeldAfterFailure: a tree too large to hold reads again, on the next Advance, the leaves a failed
// Advance missed, so that OnAdvance (which empties the primary's pending set) and the index get every leaf.
func TestAdvanceNotHeldAfterFailure(t *testing.T) {
	t.Parallel()
	const n = 3*batch + 10
	leaves, hs := testLeaves(n)
	src := newFakeStorage(leaves)
	var mu sync.Mutex
	var got []sigsum.Hash
	tr := open(t, Config{Source: src, Limits: Limits{MaxHold: -1}, OnAdvance: func(h []sigsum.Hash) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, h...)
	}}, 100)
	ctx := context.Background()
	src.fail = errors.New("disk on fire")
	if err := tr.Advance(ctx, batch); err == nil {
		t.Fatal("Advance through a failing storage: no error")
	}
	src.fail = nil
	if err := tr.Advance(ctx, n); err != nil || tr.Settling() {
		t.Fatalf("Advance after the failure: %v, settling %v", err, tr.Settling())
	}
	if !slices.Equal(got, hs[100:]) {
		t.Errorf("handed on %d hashes, want leaves 100 to %d in order", len(got), n)
	}
	if _, ok := tr.index.lookup(hs[batch-1]); !ok {
		t.Error("a leaf of the failed Advance is not indexed")
	}
}

func TestAdvance(t *testing.T) {
	t.Parallel()
	const n = 3*batch + 10
	leaves, hs := testLeaves(n)
	src := newFakeStorage(leaves)
	var mu sync.Mutex
	var got []sigsum.Hash
	tr := open(t, Config{Source: src, OnAdvance: func(h []sigsum.Hash) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, h...)
	}}, 100)
	ctx := context.Background()
	if len(got) != 0 || tr.Settling() {
		t.Fatalf("Open handed on %d hashes, settling %v", len(got), tr.Settling())
	}
	if err := tr.Advance(ctx, batch+5); err != nil || tr.Settling() {
		t.Fatalf("Advance: %v, settling %v", err, tr.Settling())
	}
	src.fail = errors.New("disk on fire")
	if err := tr.Advance(ctx, 2*batch); err == nil {
		t.Fatal("Advance through a failing storage: no error")
	}
	if tr.Size() != 2*batch || tr.mem.sizeHeld() != batch+5 {
		t.Fatalf("after a failed Advance: signed %d, held %d; want %d, %d", tr.Size(), tr.mem.sizeHeld(), 2*batch, batch+5)
	}
	if !tr.Settling() {
		t.Fatal("after a failed Advance: not settling, though OnAdvance lacks its leaves")
	}
	src.fail = nil
	if err := tr.Advance(ctx, n); err != nil || tr.Settling() {
		t.Fatalf("Advance after the failure: %v, settling %v", err, tr.Settling())
	}
	if err := tr.Advance(ctx, n-1); err != nil || tr.Size() != n {
		t.Fatalf("Advance to a smaller size: %v, size %d", err, tr.Size())
	}
	if !slices.Equal(got, hs[100:]) {
		t.Errorf("handed on %d hashes, want leaves 100 to %d in order", len(got), n)
	}
	if tr.mem.sizeHeld() != n {
		t.Errorf("%d leaves held, want %d", tr.mem.sizeHeld(), n)
	}
	if i, ok, err := tr.Contains(ctx, hs[n-1]); !ok || i != n-1 || err != nil {
		t.Errorf("Contains of the last leaf: %d, %v, %v", i, ok, err)
	}
}

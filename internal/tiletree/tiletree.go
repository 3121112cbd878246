// Package tiletree holds a log's committed Merkle tree in bounded memory, so that proofs and leaves are served
// without a storage round trip per request however large the log grows.
//
// The tree is cut into tiles of 256 leaves. What is held whole grows with the log but slowly: the hash of every
// full tile and of every subtree above them, 32 bytes per 128 leaves (250 KiB for a million leaves). Below that,
// tiles are held in a cache of bounded size, most recently used first. A tile the tree was given (Append) holds its
// leaves and the eight lower levels of hashes (48 KiB); a tile read back from storage for a proof holds the hashes
// only (16 KiB): they are all a proof needs, and reading them costs a fraction of reading the leaves. Whatever is
// read back is checked against the tile's hash held above before it is used. The last, partial tile is always held.
package tiletree

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

const (
	tileHeight = 8
	tileLeaves = 1 << tileHeight

	// DefaultMaxTiles is how many tiles with leaves a Tree holds by default: 12 MiB, the newest 65,536 leaves, or
	// three times as many tiles of hashes only (196,608 leaves), or any mix.
	DefaultMaxTiles = 256

	// The cache's cost of a tile, in units of a third of a tile with leaves: its leaves take twice the space of its
	// hashes (128 against 64 bytes a leaf, with the levels above).
	costLeaves = 3
	costHashes = 1
)

// Source reads leaf hashes back from storage: those of leaves [start, start+count) of the log, or of a prefix.
type Source interface {
	LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error)
}

// Config configures a Tree.
type Config struct {
	// Source reads tiles that are no longer held; required.
	Source Source
	// MaxTiles bounds the tiles held in memory (DefaultMaxTiles when 0): that many with their leaves, or three
	// times as many tiles of hashes only.
	MaxTiles int
}

// ErrNotHeld is returned for a size beyond the leaves the tree has been given.
var ErrNotHeld = errors.New("tiletree: size beyond the tree held")

// tile is up to 256 consecutive leaves starting at a multiple of 256, with the hashes of their complete subtrees:
// levels[k][i] is the hash of the 2^k leaves from the tile's leaf i·2^k. A tile of hashes only has no leaves.
type tile struct {
	leaves []sigsum.Leaf
	levels [tileHeight][]sigsum.Hash
}

// newTile returns an empty tile, for leaves or, if hashesOnly, for leaf hashes.
func newTile(hashesOnly bool) *tile {
	t := &tile{}
	if !hashesOnly {
		t.leaves = make([]sigsum.Leaf, 0, tileLeaves)
	}
	for k := range t.levels {
		t.levels[k] = make([]sigsum.Hash, 0, tileLeaves>>k)
	}
	return t
}

// hasLeaves reports whether the tile holds its leaves, not only their hashes.
func (t *tile) hasLeaves() bool { return t.leaves != nil }

// cost is the tile's share of the cache's bound.
func (t *tile) cost() int {
	if t.hasLeaves() {
		return costLeaves
	}
	return costHashes
}

// append adds a leaf and completes the subtrees it closes; for the tile's last leaf it returns the tile's root.
func (t *tile) append(leaf *sigsum.Leaf) (root sigsum.Hash, full bool) {
	t.leaves = append(t.leaves, *leaf)
	return t.appendHash(leaf.Hash())
}

// appendHash adds the hash of the next leaf; the tile holds no leaves, or appendHash is called through append.
func (t *tile) appendHash(h sigsum.Hash) (root sigsum.Hash, full bool) {
	for k := 0; ; k++ {
		t.levels[k] = append(t.levels[k], h)
		n := len(t.levels[k])
		if n%2 == 1 {
			return sigsum.Hash{}, false
		}
		h = hashChildren(&t.levels[k][n-2], &t.levels[k][n-1])
		if k+1 == tileHeight {
			return h, true
		}
	}
}

func hashChildren(l, r *sigsum.Hash) sigsum.Hash {
	return sigsum.Hash(rfc6962.DefaultHasher.HashChildren(l[:], r[:]))
}

// Tree is the committed tree. Append adds leaves in order; the other methods are safe to call concurrently with it
// and with each other.
type Tree struct {
	src     Source
	maxCost int // bound of the cache: the sum of its tiles' costs

	mu    sync.RWMutex
	size  uint64
	upper [][]sigsum.Hash // upper[k][i]: hash of the 2^(8+k) leaves from leaf i·2^(8+k); upper[0] are tile roots
	tail  *tile           // the leaves past the last full tile

	cacheMu sync.Mutex
	cache   map[uint64]*list.Element // tile number → element of lru holding a *cached
	lru     *list.List               // front: most recently used
	cost    int                      // sum of the costs of the cached tiles
	loading map[uint64]*load         // tiles being read from storage
}

type cached struct {
	n    uint64
	tile *tile
}

// load is one read of a tile from storage, which concurrent askers wait for.
type load struct {
	done chan struct{}
	tile *tile
	err  error
}

// New returns an empty tree.
func New(cfg Config) (*Tree, error) {
	if cfg.Source == nil {
		return nil, errors.New("tiletree: Source is required")
	}
	if cfg.MaxTiles < 0 {
		return nil, fmt.Errorf("tiletree: MaxTiles %d: want >= 0", cfg.MaxTiles)
	}
	return &Tree{
		src:     cfg.Source,
		maxCost: cmp.Or(cfg.MaxTiles, DefaultMaxTiles) * costLeaves,
		upper:   [][]sigsum.Hash{nil},
		tail:    newTile(false),
		cache:   make(map[uint64]*list.Element),
		lru:     list.New(),
		loading: make(map[uint64]*load),
	}, nil
}

// Size is the number of leaves in the tree.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size
}

// Append adds the leaves that follow the tree's last.
func (t *Tree) Append(leaves []sigsum.Leaf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range leaves {
		t.size++
		root, full := t.tail.append(&leaves[i])
		if !full {
			continue
		}
		t.put(uint64(len(t.upper[0])), t.tail)
		t.tail = newTile(false)
		// Complete every subtree above the tile that it closes.
		for k := 0; ; k++ {
			t.upper[k] = append(t.upper[k], root)
			n := len(t.upper[k])
			if n%2 == 1 {
				break
			}
			root = hashChildren(&t.upper[k][n-2], &t.upper[k][n-1])
			if k+1 == len(t.upper) {
				t.upper = append(t.upper, nil)
			}
		}
	}
}

// Inclusion returns the proof of the leaf at index in the tree of size size.
func (t *Tree) Inclusion(ctx context.Context, index, size uint64) (sigsum.InclusionProof, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return sigsum.InclusionProof{}, err
	}
	path, err := t.path(ctx, nodes, size)
	return sigsum.InclusionProof{LeafIndex: index, Path: path}, err
}

// Consistency returns the proof that the tree of size newSize extends the one of size oldSize.
func (t *Tree) Consistency(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	nodes, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return sigsum.ConsistencyProof{}, err
	}
	path, err := t.path(ctx, nodes, newSize)
	return sigsum.ConsistencyProof{Path: path}, err
}

// path gathers the node hashes of a proof in a tree of size size and rehashes them into the proof's path.
func (t *Tree) path(ctx context.Context, nodes proof.Nodes, size uint64) ([]sigsum.Hash, error) {
	hs := make([][]byte, len(nodes.IDs))
	var from map[uint64][]int // full tile → positions of nodes under it
	t.mu.RLock()
	if size > t.size {
		t.mu.RUnlock()
		return nil, fmt.Errorf("%w: size %d, %d leaves held", ErrNotHeld, size, t.size)
	}
	fullTiles := uint64(len(t.upper[0]))
	for i, id := range nodes.IDs {
		if id.Level >= tileHeight {
			k := int(id.Level - tileHeight)
			if k >= len(t.upper) || id.Index >= uint64(len(t.upper[k])) {
				t.mu.RUnlock()
				return nil, fmt.Errorf("tiletree: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
			}
			h := t.upper[k][id.Index]
			hs[i] = h[:]
			continue
		}
		n := id.Index >> (tileHeight - id.Level)
		if n < fullTiles {
			if from == nil {
				from = make(map[uint64][]int)
			}
			from[n] = append(from[n], i)
			continue
		}
		h, ok := t.tail.node(id.Level, id.Index)
		if !ok {
			t.mu.RUnlock()
			return nil, fmt.Errorf("tiletree: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
		}
		hs[i] = h[:]
	}
	t.mu.RUnlock()
	for n, positions := range from {
		tl, err := t.tile(ctx, n)
		if err != nil {
			return nil, err
		}
		for _, i := range positions {
			h, ok := tl.node(nodes.IDs[i].Level, nodes.IDs[i].Index)
			if !ok {
				return nil, fmt.Errorf("tiletree: node %d/%d missing from full tile %d", nodes.IDs[i].Level, nodes.IDs[i].Index, n)
			}
			hs[i] = h[:]
		}
	}
	path, err := nodes.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, err
	}
	out := make([]sigsum.Hash, len(path))
	for i, h := range path {
		out[i] = sigsum.Hash(h)
	}
	return out, nil
}

// node returns the hash of node (level, index) of the whole tree, which must lie in this tile.
func (t *tile) node(level uint, index uint64) (*sigsum.Hash, bool) {
	i := index & (tileLeaves>>level - 1)
	if i >= uint64(len(t.levels[level])) {
		return nil, false
	}
	return &t.levels[level][i], true
}

// HeldLeaves returns the leaves [start, end) if the tree holds them all in memory, without reading storage or
// changing which tiles are held: a long scan (a secondary catching up) is better served from storage than through
// the cache, which it would empty of the tiles in use.
func (t *Tree) HeldLeaves(start, end uint64) ([]sigsum.Leaf, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if start >= end || end > t.size {
		return nil, false
	}
	fullTiles := uint64(len(t.upper[0]))
	out := make([]sigsum.Leaf, 0, end-start)
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	for start < end {
		n := start / tileLeaves
		first, last := start-n*tileLeaves, min(end-n*tileLeaves, tileLeaves)
		var leaves []sigsum.Leaf
		if n == fullTiles {
			leaves = t.tail.leaves
		} else if e, ok := t.cache[n]; ok && e.Value.(*cached).tile.hasLeaves() {
			leaves = e.Value.(*cached).tile.leaves
		} else {
			return nil, false
		}
		out = append(out, leaves[first:last]...)
		start = (n + 1) * tileLeaves
	}
	return out, true
}

// tile returns full tile n from the cache, or else reads it from storage (once, however many ask at the same time)
// and checks it against the tree held.
func (t *Tree) tile(ctx context.Context, n uint64) (*tile, error) {
	t.cacheMu.Lock()
	if e, ok := t.cache[n]; ok {
		t.lru.MoveToFront(e)
		t.cacheMu.Unlock()
		return e.Value.(*cached).tile, nil
	}
	l, ok := t.loading[n]
	if !ok {
		l = &load{done: make(chan struct{})}
		t.loading[n] = l
		t.cacheMu.Unlock()
		l.tile, l.err = t.read(ctx, n)
		t.cacheMu.Lock()
		delete(t.loading, n)
		if l.err == nil {
			t.putLocked(n, l.tile)
		}
		t.cacheMu.Unlock()
		close(l.done)
		return l.tile, l.err
	}
	t.cacheMu.Unlock()
	select {
	case <-l.done:
		return l.tile, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read reads the leaf hashes of full tile n from storage into a tile of hashes only, and checks that its root is
// the one held.
func (t *Tree) read(ctx context.Context, n uint64) (*tile, error) {
	t.mu.RLock()
	want := t.upper[0][n]
	t.mu.RUnlock()
	tl := newTile(true)
	var root sigsum.Hash
	for got := 0; got < tileLeaves; {
		start := n*tileLeaves + uint64(got)
		hs, err := t.src.LeafHashes(ctx, start, uint64(tileLeaves-got))
		if err != nil {
			return nil, fmt.Errorf("tiletree: reading tile %d: %w", n, err)
		}
		if len(hs) == 0 || len(hs) > tileLeaves-got {
			return nil, fmt.Errorf("tiletree: reading tile %d: storage returned %d leaf hashes from %d", n, len(hs), start)
		}
		for i := range hs {
			root, _ = tl.appendHash(hs[i])
		}
		got += len(hs)
	}
	if root != want {
		return nil, fmt.Errorf("tiletree: tile %d read from storage has root %s, the tree holds %s", n, root, want)
	}
	return tl, nil
}

// put caches full tile n as the most recently used.
func (t *Tree) put(n uint64, tl *tile) {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	t.putLocked(n, tl)
}

// putLocked caches tile n as the most recently used, and evicts the least recently used tiles beyond the bound
// (never the one just put). A tile is put once: by Append when it fills, or read back after it was evicted.
func (t *Tree) putLocked(n uint64, tl *tile) {
	if e, ok := t.cache[n]; ok {
		t.lru.MoveToFront(e)
		return
	}
	t.cache[n] = t.lru.PushFront(&cached{n: n, tile: tl})
	t.cost += tl.cost()
	for t.cost > t.maxCost && t.lru.Len() > 1 {
		e := t.lru.Back()
		c := e.Value.(*cached)
		delete(t.cache, c.n)
		t.lru.Remove(e)
		t.cost -= c.tile.cost()
	}
}

// Package tiletree holds a log's committed Merkle tree in bounded memory, so that proofs and leaves are served
// without a storage round trip per request however large the log grows.
//
// The tree is cut into groups of 32 leaves, and into tiles of 256. What is held whole grows with the log, but
// slowly: the hash of every complete group and of every complete subtree above the groups, 32 bytes per 16 leaves
// (2 MiB for a million leaves). The leaves, and the hashes below the groups, are held for the last, partial tile
// and for the MaxTiles tiles completed last (48 KiB a tile). A proof that needs a node below a group of a tile not
// held reads that group's 32 leaf hashes from storage and checks them against the group's hash before it uses them:
// one short read, where reading back a whole tile took eight times as many rows. Nothing read is kept.
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
	// groupHeight is the lowest level whose hashes are all held: a proof in a tile not held reads the 2^groupHeight
	// leaf hashes below one of them. A level lower would halve that read and double what is held.
	groupHeight = 5
	groupLeaves = 1 << groupHeight

	// DefaultMaxTiles is how many completed tiles a Tree holds by default: 12 MiB, the newest 65,536 leaves.
	DefaultMaxTiles = 256
)

// Source reads leaf hashes back from storage: those of leaves [start, start+count) of the log, or of a prefix.
type Source interface {
	LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error)
}

// Config configures a Tree.
type Config struct {
	// Source reads the leaf hashes of groups whose tile is not held; required.
	Source Source
	// MaxTiles bounds the completed tiles held in memory (DefaultMaxTiles when 0).
	MaxTiles int
}

// ErrNotHeld is returned for a size beyond the leaves the tree has been given.
var ErrNotHeld = errors.New("tiletree: size beyond the tree held")

// tile is up to 256 consecutive leaves starting at a multiple of 256, with the hashes of their complete subtrees
// below the groups: levels[k][i] is the hash of the 2^k leaves from the tile's leaf i·2^k.
type tile struct {
	leaves []sigsum.Leaf
	levels [groupHeight][]sigsum.Hash
}

func newTile() *tile {
	t := &tile{leaves: make([]sigsum.Leaf, 0, tileLeaves)}
	for k := range t.levels {
		t.levels[k] = make([]sigsum.Hash, 0, tileLeaves>>k)
	}
	return t
}

// append adds a leaf and completes the subtrees it closes; for a group's last leaf it returns the group's hash.
func (t *tile) append(leaf *sigsum.Leaf) (group sigsum.Hash, full bool) {
	t.leaves = append(t.leaves, *leaf)
	return appendHash(t.levels[:], leaf.Hash())
}

// appendHash adds the hash of the next leaf to levels, a tile's or a group's, and completes the subtrees it closes;
// for the last leaf of a group it returns the group's hash.
func appendHash(levels [][]sigsum.Hash, h sigsum.Hash) (group sigsum.Hash, full bool) {
	for k := range levels {
		levels[k] = append(levels[k], h)
		n := len(levels[k])
		if n%2 == 1 {
			return sigsum.Hash{}, false
		}
		h = hashChildren(&levels[k][n-2], &levels[k][n-1])
	}
	return h, true
}

func hashChildren(l, r *sigsum.Hash) sigsum.Hash {
	return sigsum.Hash(rfc6962.DefaultHasher.HashChildren(l[:], r[:]))
}

// node returns the hash of node (level, index) of the whole tree, below the groups and in this tile.
func (t *tile) node(level uint, index uint64) (*sigsum.Hash, bool) {
	i := index & (tileLeaves>>level - 1)
	if i >= uint64(len(t.levels[level])) {
		return nil, false
	}
	return &t.levels[level][i], true
}

// Tree is the committed tree. Append adds leaves in order; the other methods are safe to call concurrently with it
// and with each other.
type Tree struct {
	src      Source
	maxTiles int

	mu    sync.RWMutex
	size  uint64
	upper [][]sigsum.Hash // upper[k][i]: hash of the 2^(5+k) leaves from leaf i·2^(5+k); upper[0] are group hashes
	tail  *tile           // the leaves past the last full tile

	cacheMu sync.Mutex
	cache   map[uint64]*list.Element // tile number → element of lru holding a *cached
	lru     *list.List               // front: most recently used
}

type cached struct {
	n    uint64
	tile *tile
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
		src:      cfg.Source,
		maxTiles: cmp.Or(cfg.MaxTiles, DefaultMaxTiles),
		upper:    [][]sigsum.Hash{nil},
		tail:     newTile(),
		cache:    make(map[uint64]*list.Element),
		lru:      list.New(),
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
		// Complete every subtree above the group that it closes.
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
		if len(t.tail.leaves) == tileLeaves {
			t.put(t.size/tileLeaves-1, t.tail)
			t.tail = newTile()
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
	var cold map[uint64][]int // group of a tile not held → positions of nodes below it
	t.mu.RLock()
	if size > t.size {
		t.mu.RUnlock()
		return nil, fmt.Errorf("%w: size %d, %d leaves held", ErrNotHeld, size, t.size)
	}
	tailTile := t.size / tileLeaves
	var groups []sigsum.Hash // the group hashes, for checking what is read of the cold ones
	var lastTile *tile       // the held tile lastN, if held
	var lastN uint64
	for i, id := range nodes.IDs {
		if id.Level >= groupHeight {
			k := int(id.Level - groupHeight)
			if k >= len(t.upper) || id.Index >= uint64(len(t.upper[k])) {
				t.mu.RUnlock()
				return nil, fmt.Errorf("tiletree: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
			}
			h := t.upper[k][id.Index]
			hs[i] = h[:]
			continue
		}
		var h *sigsum.Hash
		ok := false
		if n := id.Index >> (tileHeight - id.Level); n == tailTile {
			h, ok = t.tail.node(id.Level, id.Index)
			if !ok {
				t.mu.RUnlock()
				return nil, fmt.Errorf("tiletree: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
			}
		} else {
			if lastTile == nil || lastN != n { // the nodes of a proof below the groups lie in one or two tiles
				lastTile, lastN = t.held(n), n
			}
			if lastTile != nil {
				h, ok = lastTile.node(id.Level, id.Index)
			}
		}
		if ok {
			hs[i] = h[:]
			continue
		}
		if cold == nil {
			cold = make(map[uint64][]int)
			groups = t.upper[0]
		}
		g := id.Index >> (groupHeight - id.Level)
		cold[g] = append(cold[g], i)
	}
	t.mu.RUnlock()
	for g, positions := range cold {
		levels, err := t.readGroup(ctx, g, groups[g])
		if err != nil {
			return nil, err
		}
		for _, i := range positions {
			id := nodes.IDs[i]
			hs[i] = levels[id.Level][id.Index&(groupLeaves>>id.Level-1)][:]
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

// held returns completed tile n if it is held, as the most recently used; else nil.
func (t *Tree) held(n uint64) *tile {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	e, ok := t.cache[n]
	if !ok {
		return nil
	}
	t.lru.MoveToFront(e)
	return e.Value.(*cached).tile
}

// readGroup reads the leaf hashes of group g from storage, checks that they hash to want, the group's hash held,
// and returns the levels of hashes below the group.
func (t *Tree) readGroup(ctx context.Context, g uint64, want sigsum.Hash) ([][]sigsum.Hash, error) {
	levels := make([][]sigsum.Hash, groupHeight)
	for k := range levels {
		levels[k] = make([]sigsum.Hash, 0, groupLeaves>>k)
	}
	var root sigsum.Hash
	for len(levels[0]) < groupLeaves {
		start := g*groupLeaves + uint64(len(levels[0]))
		left := groupLeaves - len(levels[0])
		hs, err := t.src.LeafHashes(ctx, start, uint64(left))
		if err != nil {
			return nil, fmt.Errorf("tiletree: reading leaf hashes from %d: %w", start, err)
		}
		if len(hs) == 0 || len(hs) > left {
			return nil, fmt.Errorf("tiletree: reading leaf hashes from %d: storage returned %d of %d", start, len(hs), left)
		}
		for i := range hs {
			root, _ = appendHash(levels, hs[i])
		}
	}
	if root != want {
		return nil, fmt.Errorf("tiletree: leaves %d to %d in storage hash to %s, the tree holds %s",
			g*groupLeaves, (g+1)*groupLeaves-1, root, want)
	}
	return levels, nil
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
	tailTile := t.size / tileLeaves
	out := make([]sigsum.Leaf, 0, end-start)
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	for start < end {
		n := start / tileLeaves
		first, last := start-n*tileLeaves, min(end-n*tileLeaves, tileLeaves)
		var leaves []sigsum.Leaf
		if n == tailTile {
			leaves = t.tail.leaves
		} else if e, ok := t.cache[n]; ok {
			leaves = e.Value.(*cached).tile.leaves
		} else {
			return nil, false
		}
		out = append(out, leaves[first:last]...)
		start = (n + 1) * tileLeaves
	}
	return out, true
}

// put caches completed tile n as the most recently used, evicting the least recently used beyond the bound.
func (t *Tree) put(n uint64, tl *tile) {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	t.cache[n] = t.lru.PushFront(&cached{n: n, tile: tl})
	for t.lru.Len() > t.maxTiles {
		e := t.lru.Back()
		delete(t.cache, e.Value.(*cached).n)
		t.lru.Remove(e)
	}
}

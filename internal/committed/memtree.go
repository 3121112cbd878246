package committed

// The committed Merkle tree in bounded memory, so that proofs and leaves are served without a storage round trip
// per request however large the log grows.
//
// The tree is cut into groups of 32 leaves, and into tiles of 256. What is held whole grows with the log, but
// slowly: the hash of every complete group and of every complete subtree above the groups, 32 bytes per 16 leaves
// (2 MiB for a million leaves). The leaves, and the hashes below the groups, are held for the last, partial tile
// and for the MaxTiles tiles completed last (48 KiB a tile). A proof that needs a node below a group of a tile not
// held reads that group's 32 leaf hashes from storage and checks them against the group's hash before it uses them:
// one short read, where reading back a whole tile took eight times as many rows. Nothing read is kept.

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

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

	// DefaultMaxTiles is how many completed tiles the tree in memory holds by default: 12 MiB, the newest 65,536
	// leaves (and up to 10 MiB more of their tlog-tiles encoding, kept for the tiles asked for).
	DefaultMaxTiles = 256
)

// hashSource reads leaf hashes back from storage: those of leaves [start, start+count) of the log, or of a prefix.
type hashSource interface {
	LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error)
}

// errNotHeld is returned for a size beyond the leaves the tree in memory has been given.
var errNotHeld = errors.New("size beyond the tree held")

// tile is up to 256 consecutive leaves starting at a multiple of 256, with the hashes of their complete subtrees
// below the groups: levels[k][i] is the hash of the 2^k leaves from the tile's leaf i·2^k.
type tile struct {
	leaves []sigsum.Leaf
	levels [groupHeight][]sigsum.Hash
	// encoded is, for a completed tile once asked for, its full entry bundle and hash tile (C2SP tlog-tiles), made
	// once: a completed tile never changes.
	encoded atomic.Pointer[encodedTile]
}

type encodedTile struct{ entries, hashes []byte }

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

// hashChildren is RFC 6962's interior node hash, SHA-256(0x01 || l || r), computed without an allocation: the
// hasher of transparency-dev/merkle allocates three times a node, which was a quarter of a cold proof's
// allocations (31 nodes a group) and the same again for every leaf the tree adds.
func hashChildren(l, r *sigsum.Hash) sigsum.Hash {
	var b [1 + 2*len(sigsum.Hash{})]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], l[:])
	copy(b[1+len(l):], r[:])
	return sha256.Sum256(b[:])
}

// node returns the hash of node (level, index) of the whole tree, below the groups and in this tile.
func (t *tile) node(level uint, index uint64) (*sigsum.Hash, bool) {
	i := index & (tileLeaves>>level - 1)
	if i >= uint64(len(t.levels[level])) {
		return nil, false
	}
	return &t.levels[level][i], true
}

// memTree is the committed tree in memory. append adds leaves in order; the other methods are safe to call
// concurrently with it and with each other.
type memTree struct {
	src      hashSource
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

// newMemTree returns an empty tree that holds at most maxTiles completed tiles (at least 1).
func newMemTree(src hashSource, maxTiles int) *memTree {
	return &memTree{
		src:      src,
		maxTiles: max(maxTiles, 1),
		upper:    [][]sigsum.Hash{nil},
		tail:     newTile(),
		cache:    make(map[uint64]*list.Element),
		lru:      list.New(),
	}
}

// sizeHeld is the number of leaves in the tree.
func (t *memTree) sizeHeld() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size
}

// add adds the leaves that follow the tree's last.
func (t *memTree) add(leaves []sigsum.Leaf) {
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

// inclusion returns the proof of the leaf at index in the tree of size size.
func (t *memTree) inclusion(ctx context.Context, index, size uint64) (sigsum.InclusionProof, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return sigsum.InclusionProof{}, err
	}
	path, err := t.path(ctx, nodes, size)
	return sigsum.InclusionProof{LeafIndex: index, Path: path}, err
}

// consistency returns the proof that the tree of size newSize extends the one of size oldSize.
func (t *memTree) consistency(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	nodes, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return sigsum.ConsistencyProof{}, err
	}
	path, err := t.path(ctx, nodes, newSize)
	return sigsum.ConsistencyProof{Path: path}, err
}

// path gathers the node hashes of a proof in a tree of size size and rehashes them into the proof's path.
func (t *memTree) path(ctx context.Context, nodes proof.Nodes, size uint64) ([]sigsum.Hash, error) {
	hs := make([][]byte, len(nodes.IDs))
	var cold map[uint64][]int // group of a tile not held → positions of nodes below it
	t.mu.RLock()
	if size > t.size {
		t.mu.RUnlock()
		return nil, fmt.Errorf("%w: size %d, %d leaves held", errNotHeld, size, t.size)
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
				return nil, fmt.Errorf("committed: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
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
				return nil, fmt.Errorf("committed: node %d/%d not in a tree of %d leaves", id.Level, id.Index, t.size)
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
func (t *memTree) held(n uint64) *tile {
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
func (t *memTree) readGroup(ctx context.Context, g uint64, want sigsum.Hash) ([][]sigsum.Hash, error) {
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
			return nil, fmt.Errorf("committed: reading leaf hashes from %d: %w", start, err)
		}
		if len(hs) == 0 || len(hs) > left {
			return nil, fmt.Errorf("committed: reading leaf hashes from %d: storage returned %d of %d", start, len(hs), left)
		}
		for i := range hs {
			root, _ = appendHash(levels, hs[i])
		}
	}
	if root != want {
		return nil, fmt.Errorf("committed: leaves %d to %d in storage hash to %s, the tree holds %s",
			g*groupLeaves, (g+1)*groupLeaves-1, root, want)
	}
	return levels, nil
}

// heldLeaves returns the leaves [start, end) if the tree holds them all in memory, without reading storage or
// changing which tiles are held: a long scan (a secondary catching up) is better served from storage than through
// the cache, which it would empty of the tiles in use.
func (t *memTree) heldLeaves(start, end uint64) ([]sigsum.Leaf, bool) {
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
func (t *memTree) put(n uint64, tl *tile) {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	t.cache[n] = t.lru.PushFront(&cached{n: n, tile: tl})
	for t.lru.Len() > t.maxTiles {
		e := t.lru.Back()
		delete(t.cache, e.Value.(*cached).n)
		t.lru.Remove(e)
	}
}

// upperTile returns the w hashes upper[k][first:first+w] (tree level groupHeight+k), concatenated.
func (t *memTree) upperTile(k int, first uint64, w int) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if k < 0 || k >= len(t.upper) || first+uint64(w) > uint64(len(t.upper[k])) {
		return nil, fmt.Errorf("committed: nodes %d to %d of level %d not in a tree of %d leaves", first,
			first+uint64(w), groupHeight+k, t.size)
	}
	out := make([]byte, 0, 32*w)
	for _, h := range t.upper[k][first : first+uint64(w)] {
		out = append(out, h[:]...)
	}
	return out, nil
}

// heldTile calls f with tile n if the tree holds it in memory (the partial last one included), without reading
// storage or changing which tiles are held (as heldLeaves), and reports whether it did. f must not keep the tile.
func (t *memTree) heldTile(n uint64, f func(*tile)) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n == t.size/tileLeaves {
		f(t.tail)
		return true
	}
	t.cacheMu.Lock()
	e, ok := t.cache[n]
	t.cacheMu.Unlock()
	if !ok {
		return false
	}
	f(e.Value.(*cached).tile) // a completed tile never changes: evicted meanwhile, it is still whole
	return true
}

// checkGroups checks leaf hashes read from storage, those of leaves start, start+1, ..., against the hashes of the
// complete groups they cover.
func (t *memTree) checkGroups(start uint64, hs []sigsum.Hash) error {
	t.mu.RLock()
	groups := t.upper[0]
	t.mu.RUnlock()
	for g := (start + groupLeaves - 1) / groupLeaves; (g+1)*groupLeaves <= start+uint64(len(hs)); g++ {
		if g >= uint64(len(groups)) {
			break
		}
		levels := make([][]sigsum.Hash, groupHeight)
		var root sigsum.Hash
		for _, h := range hs[g*groupLeaves-start : (g+1)*groupLeaves-start] {
			root, _ = appendHash(levels, h)
		}
		if root != groups[g] {
			return fmt.Errorf("committed: leaves %d to %d in storage hash to %s, the tree holds %s",
				g*groupLeaves, (g+1)*groupLeaves-1, root, groups[g])
		}
	}
	return nil
}

package committed

// C2SP tlog-tiles of the signed tree: hash tiles of height 8 and entry bundles of the 128-byte Sigsum leaves.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TileWidth is the number of hashes in a full tile, and of entries in a full entry bundle.
const TileWidth = tileLeaves

// ErrTileNotServed is wrapped by the errors for a tile the tree cannot serve: one beyond the size asked (a client
// error, 404), or a tile above level 0 of a tree too large to hold in memory (ErrTileNotHeld).
var (
	ErrTileNotServed = errors.New("no such tile in the tree")
	ErrTileNotHeld   = errors.New("tiles above level 0 are served only for a tree held in memory")
)

// tileSpan checks that the tile (level, n) of width w (1 <= w <= 256) lies in a tree of size size no larger than
// the signed size, and returns the index of its first node at tree level 8·level.
func (t *Tree) tileSpan(level uint8, n uint64, w int, size uint64) (uint64, error) {
	if size > t.signed.Load() {
		return 0, fmt.Errorf("committed: tile of a tree of %d leaves, %d signed", size, t.signed.Load())
	}
	if w < 1 || w > TileWidth || level > 7 {
		return 0, fmt.Errorf("%w: level %d, width %d", ErrTileNotServed, level, w)
	}
	nodes := size >> (tileHeight * uint(level)) // complete nodes at tree level 8·level
	if n > nodes/TileWidth || n*TileWidth+uint64(w) > nodes {
		return 0, fmt.Errorf("%w: tile %d/%d of width %d in a tree of %d leaves", ErrTileNotServed, level, n, w, size)
	}
	return n * TileWidth, nil
}

// HashTile returns the hash tile (level, n) of width w, the hashes of the nodes at tree level 8·level from node
// n·256 on, in a tree of size size (at most the signed size): 32·w bytes. The caller must not modify it.
func (t *Tree) HashTile(ctx context.Context, level uint8, n uint64, w int, size uint64) ([]byte, error) {
	first, err := t.tileSpan(level, n, w, size)
	if err != nil {
		return nil, err
	}
	if level == 0 {
		var out []byte
		if t.held(first+uint64(w)) && t.mem.heldTile(n, func(tl *tile) { out = tl.encode().hashes[:32*w] }) {
			return out, nil
		}
		hs, err := t.leafHashes(ctx, first, uint64(w))
		if err != nil {
			return nil, err
		}
		out = make([]byte, 0, 32*w)
		for i := range hs {
			out = append(out, hs[i][:]...)
		}
		return out, nil
	}
	if !t.held(size) {
		return nil, ErrTileNotHeld
	}
	return t.mem.upperTile(int(level)*tileHeight-groupHeight, first, w)
}

// EntryBundle returns the entry bundle n of width w of a tree of size size (at most the signed size): the leaves
// n·256 to n·256+w, each its 128-byte binary form behind a big-endian 16-bit length. The caller must not modify
// it (a held tile's is shared).
func (t *Tree) EntryBundle(ctx context.Context, n uint64, w int, size uint64) ([]byte, error) {
	first, err := t.tileSpan(0, n, w, size)
	if err != nil {
		return nil, err
	}
	var out []byte
	if t.held(first+uint64(w)) && t.mem.heldTile(n, func(tl *tile) { out = tl.encode().entries[:(2+sigsum.LeafSize)*w] }) {
		return out, nil
	}
	ctx, cancel := t.bound(ctx)
	defer cancel()
	var leaves []sigsum.Leaf
	for len(leaves) < w {
		got, err := t.src.GetLeaves(ctx, first+uint64(len(leaves)), uint64(w-len(leaves)))
		if err != nil {
			return nil, fmt.Errorf("committed: entry bundle %d: %w", n, err)
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("committed: entry bundle %d: storage ends at leaf %d", n, first+uint64(len(leaves)))
		}
		leaves = append(leaves, got...)
	}
	return appendEntries(make([]byte, 0, w*(2+sigsum.LeafSize)), leaves[:w]), nil
}

// appendEntries appends the entries of leaves to an entry bundle.
func appendEntries(out []byte, leaves []sigsum.Leaf) []byte {
	for i := range leaves {
		out = binary.BigEndian.AppendUint16(out, sigsum.LeafSize)
		out = leaves[i].AppendBinary(out)
	}
	return out
}

// encode returns the tile's entry bundle and hash tile: made once for a completed tile, every time for the last,
// partial one (which grows). Callers must not modify them.
func (tl *tile) encode() *encodedTile {
	if e := tl.encoded.Load(); e != nil {
		return e
	}
	e := &encodedTile{entries: appendEntries(make([]byte, 0, len(tl.leaves)*(2+sigsum.LeafSize)), tl.leaves),
		hashes: make([]byte, 0, 32*len(tl.levels[0]))}
	for _, h := range tl.levels[0] {
		e.hashes = append(e.hashes, h[:]...)
	}
	if len(tl.leaves) == tileLeaves {
		tl.encoded.Store(e)
	}
	return e
}

// leafHashes returns the hashes of leaves [start, start+count) of the signed tree: from memory, or read from
// storage and checked against the group hashes held.
func (t *Tree) leafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error) {
	ctx, cancel := t.bound(ctx)
	defer cancel()
	hs := make([]sigsum.Hash, 0, count)
	for uint64(len(hs)) < count {
		got, err := t.src.LeafHashes(ctx, start+uint64(len(hs)), count-uint64(len(hs)))
		if err != nil {
			return nil, fmt.Errorf("committed: leaf hashes from %d: %w", start, err)
		}
		if len(got) == 0 {
			return nil, fmt.Errorf("committed: leaf hashes from %d: storage ends at leaf %d", start, start+uint64(len(hs)))
		}
		hs = append(hs, got...)
	}
	hs = hs[:count]
	if t.held(start + count) {
		if err := t.mem.checkGroups(start, hs); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

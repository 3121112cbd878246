package committed

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// levelHashes returns the complete subtree hashes of hs level by level: out[k][i] is the hash of leaves
// [i·2^k, (i+1)·2^k), computed directly as RFC 6962 defines it.
func levelHashes(hs []sigsum.Hash) [][]sigsum.Hash {
	out := [][]sigsum.Hash{hs}
	for len(out[len(out)-1]) > 1 {
		below := out[len(out)-1]
		var up []sigsum.Hash
		for i := 0; i+1 < len(below); i += 2 {
			up = append(up, hashChildren(&below[i], &below[i+1]))
		}
		out = append(out, up)
	}
	return out
}

// Hash tiles and entry bundles equal the tree's nodes and leaves as the tlog-tiles spec lays them out, full and
// partial, from memory and from storage (tiles evicted, a tree too large to hold), and tiles beyond the size asked
// are refused.
func TestTiles(t *testing.T) {
	t.Parallel()
	const n = 70000 // level-1 tiles: one full and one of 17; a level-2 tile of width 1
	leaves, hs := testLeaves(n)
	levels := levelHashes(hs)
	want := func(level uint8, tile uint64, w int) []byte {
		var out []byte
		for i := range w {
			h := levels[8*int(level)][tile*TileWidth+uint64(i)]
			out = append(out, h[:]...)
		}
		return out
	}
	wantBundle := func(tile uint64, w int) []byte {
		var out []byte
		for i := range w {
			out = binary.BigEndian.AppendUint16(out, sigsum.LeafSize)
			out = append(out, leaves[tile*TileWidth+uint64(i)].MarshalBinary()...)
		}
		return out
	}
	ctx := context.Background()
	for _, lim := range []struct {
		name   string
		limits Limits
		held   bool
	}{
		{"held, tiles evicted", Limits{MaxTiles: 2}, true},
		{"held, all tiles", Limits{MaxTiles: n/TileWidth + 1}, true},
		{"too large to hold", Limits{MaxHold: n - 1}, false},
	} {
		t.Run(lim.name, func(t *testing.T) {
			t.Parallel()
			tree, err := Open(ctx, Config{Source: newFakeStorage(leaves), Limits: lim.limits}, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				level    uint8
				tile     uint64
				w        int
				size     uint64
				needHeld bool
			}{
				{0, 0, 256, n, false},
				{0, 0, 1, n, false},
				{0, 100, 256, n, false},
				{0, n / 256, n % 256, n, false},
				{0, n/256 - 1, 256, n - 1, false},
				{1, 0, 256, n, true},
				{1, 1, 17, n, true},
				{1, 1, 3, n, true}, // a smaller partial tile of an older size
				{2, 0, 1, n, true},
				{0, 0, 44, 300, false},
				{0, 1, 44, 300, false},
			} {
				got, err := tree.HashTile(ctx, tc.level, tc.tile, tc.w, tc.size)
				if tc.needHeld && !lim.held {
					if !errors.Is(err, ErrTileNotHeld) {
						t.Errorf("tile %d/%d.p/%d of %d, tree not held: %v, want ErrTileNotHeld", tc.level, tc.tile, tc.w, tc.size, err)
					}
					continue
				}
				if err != nil || string(got) != string(want(tc.level, tc.tile, tc.w)) {
					t.Errorf("tile %d/%d.p/%d of %d: %d bytes, %v", tc.level, tc.tile, tc.w, tc.size, len(got), err)
				}
				if tc.level == 0 {
					got, err := tree.EntryBundle(ctx, tc.tile, tc.w, tc.size)
					if err != nil || string(got) != string(wantBundle(tc.tile, tc.w)) {
						t.Errorf("entries %d.p/%d of %d: %d bytes, %v", tc.tile, tc.w, tc.size, len(got), err)
					}
				}
			}
			for _, tc := range []struct {
				level uint8
				tile  uint64
				w     int
				size  uint64
			}{
				{0, n / 256, n%256 + 1, n}, // wider than the tree
				{0, n/256 + 1, 1, n},       // past the tree
				{1, 1, 18, n},
				{2, 0, 2, n},
				{3, 0, 1, n}, // no level-3 node in 70000 leaves
				{0, 1, 45, 300},
				{0, 0, 0, n},   // width 0
				{0, 0, 257, n}, // wider than a tile
				{8, 0, 1, n},   // beyond any level
				{0, 1 << 60, 1, n},
			} {
				if _, err := tree.HashTile(ctx, tc.level, tc.tile, tc.w, tc.size); !errors.Is(err, ErrTileNotServed) {
					t.Errorf("tile %d/%d.p/%d of %d: %v, want ErrTileNotServed", tc.level, tc.tile, tc.w, tc.size, err)
				}
			}
			if _, err := tree.EntryBundle(ctx, 0, 256, n+1); err == nil || errors.Is(err, ErrTileNotServed) {
				t.Errorf("entries of a size beyond the signed one: %v", err)
			}
		})
	}
}

// A level-0 tile read from storage is checked against the group hashes held: storage that disagrees is an error.
func TestTileFromStorageChecked(t *testing.T) {
	t.Parallel()
	leaves, _ := testLeaves(2000)
	src := newFakeStorage(leaves)
	tree, err := Open(context.Background(), Config{Source: src, Limits: Limits{MaxTiles: 1}}, 2000)
	if err != nil {
		t.Fatal(err)
	}
	src.leaves[40].Checksum[0] ^= 1
	if _, err := tree.HashTile(context.Background(), 0, 0, 256, 2000); err == nil {
		t.Error("a tile of hashes storage changed was served")
	}
}

// Tiles of a held tree are served from memory: the speed targets of the v1.1 read path (a full hash tile and a
// full entry bundle, as the handlers ask for them).
func BenchmarkTiles(b *testing.B) {
	const n = 1 << 16
	leaves, _ := testLeaves(n)
	tree, err := Open(context.Background(), Config{Source: newFakeStorage(leaves)}, n)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		read func(tile uint64) ([]byte, error)
	}{
		{"hash", func(tile uint64) ([]byte, error) { return tree.HashTile(context.Background(), 0, tile, TileWidth, n) }},
		{"level1", func(tile uint64) ([]byte, error) { return tree.HashTile(context.Background(), 1, 0, TileWidth, n) }},
		{"entries", func(tile uint64) ([]byte, error) { return tree.EntryBundle(context.Background(), tile, TileWidth, n) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				if _, err := bc.read(i % (n / TileWidth)); err != nil {
					b.Fatal(err)
				}
				i += 7
			}
		})
	}
}

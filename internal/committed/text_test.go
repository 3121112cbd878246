package committed

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// staticLeaves is a hashSource over a slice of leaves.
type staticLeaves struct{ leaves *[]sigsum.Leaf }

func (s staticLeaves) LeafHashes(_ context.Context, start, count uint64) ([]sigsum.Hash, error) {
	all := *s.leaves
	var hs []sigsum.Hash
	for _, l := range all[min(start, uint64(len(all))):min(start+count, uint64(len(all)))] {
		hs = append(hs, l.Hash())
	}
	return hs, nil
}

// The cached text of any range equals encoding the range afresh: across chunk edges, in the partial last chunk,
// after the tree grows past it, and with chunks evicted.
func TestLeafTextEqualsEncoding(t *testing.T) {
	t.Parallel()
	sub := seedSigner(t, 2)
	var leaves []sigsum.Leaf
	grow := func(mt *memTree, n int) {
		for i := 0; i < n; i++ {
			l, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint("text ", len(leaves)))))
			if err != nil {
				t.Fatal(err)
			}
			leaves = append(leaves, l)
			mt.add([]sigsum.Leaf{l})
		}
	}
	mt := newMemTree(staticLeaves{&leaves}, DefaultMaxTiles)
	for _, maxChunks := range []int{maxTextChunks, 2} {
		lt := newLeafText()
		lt.maxChunks = maxChunks
		check := func() {
			t.Helper()
			n := uint64(len(leaves))
			for _, r := range [][2]uint64{{0, 1}, {0, n}, {1, 65}, {63, 64}, {63, 65}, {64, 128}, {100, n}, {n - 1, n},
				{n - 70, n}, {5, 5 + 512}, {2 * textChunk, 3 * textChunk}} {
				start, end := r[0], min(r[1], n)
				if start >= end {
					continue
				}
				got, ok := lt.body(mt, start, end)
				if want := sigsum.MarshalLeavesASCII(leaves[start:end]); !ok || !bytes.Equal(got, want) {
					t.Fatalf("max %d chunks, size %d: text of [%d, %d) differs from its encoding (held: %v)", maxChunks, n, start, end, ok)
				}
			}
			if len(lt.chunks) > maxChunks {
				t.Fatalf("%d chunks cached, bound %d", len(lt.chunks), maxChunks)
			}
		}
		if len(leaves) == 0 {
			grow(mt, 150) // two full chunks and a partial one
		}
		check()
		grow(mt, 50) // the partial chunk fills up and a new one starts
		check()
		grow(mt, 700)
		check()
	}
}

// Leaves whose tile the tree no longer holds, and whose text is not cached, are left to storage; cached text is
// served whether the tree still holds the leaves or not.
func TestLeafTextOfLeavesNotHeld(t *testing.T) {
	t.Parallel()
	sub := seedSigner(t, 2)
	var leaves []sigsum.Leaf
	for i := range 600 {
		l, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint("held ", i))))
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	mt := newMemTree(staticLeaves{&leaves}, 1)
	lt := newLeafText()
	mt.add(leaves[:100])
	if _, ok := lt.body(mt, 0, 64); !ok { // cached while held
		t.Fatal("text of held leaves not served")
	}
	mt.add(leaves[100:]) // tile 1 evicts tile 0
	if _, ok := lt.body(mt, 64, 128); ok {
		t.Error("text of leaves not held was served")
	}
	got, ok := lt.body(mt, 10, 64)
	if !ok || !bytes.Equal(got, sigsum.MarshalLeavesASCII(leaves[10:64])) {
		t.Error("cached text not served once its leaves were no longer held")
	}
	if got, ok := lt.body(mt, 300, 600); !ok || !bytes.Equal(got, sigsum.MarshalLeavesASCII(leaves[300:600])) {
		t.Error("text of the held tile and the tail not served")
	}
}

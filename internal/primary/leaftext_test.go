package primary

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

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
			mt.append([]sigsum.Leaf{l})
		}
	}
	mt := newMemTree(0)
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
				got, want := lt.body(mt, start, end), sigsum.MarshalLeavesASCII(leaves[start:end])
				if !bytes.Equal(got, want) {
					t.Fatalf("max %d chunks, size %d: text of [%d, %d) differs from its encoding", maxChunks, n, start, end)
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

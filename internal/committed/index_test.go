package committed

import (
	"encoding/binary"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// committedHash is a distinct leaf hash for each n, differing from the others in its first 16 bytes.
func committedHash(n uint64) sigsum.Hash {
	var h sigsum.Hash
	binary.BigEndian.PutUint64(h[:], n)
	h[31] = 0xff
	return h
}

// TestLeafIndexEviction: the index holds the newest DefaultMaxIndex leaves at their indices, forgets the oldest
// first, keeps the first index of a leaf added twice, and tells leaves apart by the first half of their hash.
func TestLeafIndexEviction(t *testing.T) {
	t.Parallel()
	c := newLeafIndex(DefaultMaxIndex)
	const extra = 10
	hs := make([]sigsum.Hash, DefaultMaxIndex+extra)
	for i := range hs {
		hs[i] = committedHash(uint64(i))
	}
	c.add(100, hs[:5])
	c.add(105, hs[5:])

	for _, tc := range []struct {
		desc  string
		h     sigsum.Hash
		want  uint64
		found bool
	}{
		{"oldest evicted", hs[0], 0, false},
		{"last evicted", hs[extra-1], 0, false},
		{"oldest kept", hs[extra], 100 + extra, true},
		{"newest", hs[len(hs)-1], 100 + uint64(len(hs)) - 1, true},
		{"never added", committedHash(1 << 40), 0, false},
	} {
		i, ok := c.lookup(tc.h)
		if ok != tc.found || (ok && i != tc.want) {
			t.Errorf("%s: lookup = %d, %v; want %d, %v", tc.desc, i, ok, tc.want, tc.found)
		}
	}
	if n := len(c.index); n != DefaultMaxIndex {
		t.Errorf("index holds %d leaves, want %d", n, DefaultMaxIndex)
	}

	// A leaf added twice within the cap keeps its first index.
	d := newLeafIndex(DefaultMaxIndex)
	d.add(7, hs[:2])
	d.add(9, hs[1:3])
	if i, ok := d.lookup(hs[1]); !ok || i != 8 {
		t.Errorf("leaf added at 8, then at 9: lookup = %d, %v; want 8", i, ok)
	}
	if i, ok := d.lookup(hs[2]); !ok || i != 10 {
		t.Errorf("lookup = %d, %v; want 10", i, ok)
	}
	// The index keys on the first 16 bytes: a hash that differs only in its second half is the same key (finding
	// one for a real leaf takes 2^112 hashes), one that differs in its first half is not.
	sameFront := hs[1]
	sameFront[20] ^= 1
	if i, ok := d.lookup(sameFront); !ok || i != 8 {
		t.Errorf("hash differing in its second half: lookup = %d, %v; want 8", i, ok)
	}
	otherFront := hs[1]
	otherFront[15] ^= 1
	if _, ok := d.lookup(otherFront); ok {
		t.Error("hash differing in byte 15 found")
	}

	// An index of capacity 0 holds nothing.
	none := newLeafIndex(0)
	none.add(0, hs[:3])
	if _, ok := none.lookup(hs[0]); ok || len(none.index) != 0 {
		t.Error("an index of capacity 0 holds a leaf")
	}
}

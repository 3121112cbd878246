package committed

import (
	"sync"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// DefaultMaxIndex bounds the index of committed leaves by default (about 75 bytes an entry with the map's slack,
// 5 MB at the cap): the newest leaves are the ones submitters retry, and the ones asked about from storage the ones
// monitors ask about again. Submitters retry within seconds of a 202, and 2^16 leaves are 9 s of the fastest
// add-leaf load measured (7,400/s); a retry of a leaf evicted is answered from storage, with one indexed lookup.
const DefaultMaxIndex = 1 << 16

// leafKey is what the index keeps of a leaf hash: its first 16 bytes. Half the hash halves the index, and is still
// far beyond reach of a forged match: a leaf whose hash begins like one of 2^16 indexed leaves takes about
// 2^128 / 2^16 = 2^112 hashes to find, so a hit is the leaf itself.
type leafKey [16]byte

func keyOf(h sigsum.Hash) leafKey { return leafKey(h[:16]) }

// leafIndex indexes the newest committed leaves, and the older ones found in storage since, by leaf hash: a
// submitter's retry of a committed leaf is answered without a signature check or a storage lookup, and an
// inclusion proof is served from the tree in memory. Once full, the entry added longest ago makes room. An index
// of capacity 0 holds nothing.
type leafIndex struct {
	max int

	mu    sync.RWMutex
	index map[leafKey]uint64
	ring  []leafKey // insertion order, for evicting the oldest
	next  int       // next ring slot to overwrite once full
}

func newLeafIndex(capacity int) *leafIndex {
	return &leafIndex{max: capacity, index: make(map[leafKey]uint64)}
}

// lookup returns the index of a committed leaf.
func (c *leafIndex) lookup(h sigsum.Hash) (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.index[keyOf(h)]
	return i, ok
}

// add indexes the leaves with these hashes at first, first+1, …; a leaf already indexed keeps its index.
func (c *leafIndex) add(first uint64, hs []sigsum.Hash) {
	if c.max == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, h := range hs {
		k := keyOf(h)
		if _, ok := c.index[k]; ok {
			continue
		}
		if len(c.ring) < c.max {
			c.ring = append(c.ring, k)
		} else {
			delete(c.index, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % c.max
		}
		c.index[k] = first + uint64(i)
	}
}

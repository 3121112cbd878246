package primary

import (
	"context"
	"fmt"
	"sync"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Bounds of what the primary holds of its committed leaves; neither grows with the log.
const (
	// maxCommitted bounds the index of committed leaves (about 75 bytes an entry with the map's slack, 5 MB at the
	// cap): the newest leaves are the ones submitters retry, and the ones asked about from storage the ones
	// monitors ask about again. Submitters retry within seconds of a 202, and 2^16 leaves are 9 s of the fastest
	// add-leaf load measured (7,400/s); a retry of a leaf evicted still gets its 200, from storage.
	maxCommitted = 1 << 16
	// maxLoadTree bounds the log whose whole tree a start reads to hold its upper levels (32 bytes per 16
	// leaves) and the newest tiles: reading 2^25 leaves takes about a minute. A larger log serves proofs and
	// leaves from storage, and a start reads back only its newest preloadCommitted leaves into the index.
	maxLoadTree = 1 << 25
	// preloadCommitted is how many of the newest signed leaves a start of a log past maxLoadTree reads back.
	preloadCommitted = 1 << 16
	// committedBatch is how many leaves one read of newly signed leaves asks for.
	committedBatch = 4096
)

// leafKey is what the index keeps of a leaf hash: its first 16 bytes. Half the hash halves the index, and is still
// far beyond reach of a forged match: a leaf whose hash begins like one of maxCommitted indexed leaves takes about
// 2^128 / 2^16 = 2^112 hashes to find, so a hit is the leaf itself.
type leafKey [16]byte

func keyOf(h sigsum.Hash) leafKey { return leafKey(h[:16]) }

// isCommitted reports whether a leaf is known, from memory, to be in the signed tree.
func (p *Primary) isCommitted(h sigsum.Hash) bool {
	_, ok := p.committed.lookup(h)
	return ok
}

// committedLeaves indexes the newest committed leaves, and the older ones found in storage since, by leaf hash:
// a submitter's retry of a committed leaf is answered 200 without a signature check or a storage lookup, and an
// inclusion proof is served from the tree in memory. Once full, the entry added longest ago makes room.
type committedLeaves struct {
	mu    sync.RWMutex
	index map[leafKey]uint64
	ring  []leafKey // insertion order, for evicting the oldest
	next  int       // next ring slot to overwrite once full
}

func newCommittedLeaves() *committedLeaves {
	return &committedLeaves{index: make(map[leafKey]uint64)}
}

// lookup returns the index of a committed leaf.
func (c *committedLeaves) lookup(h sigsum.Hash) (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.index[keyOf(h)]
	return i, ok
}

// add indexes the leaves with these hashes at first, first+1, …; a leaf already indexed keeps its index.
func (c *committedLeaves) add(first uint64, hs []sigsum.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, h := range hs {
		k := keyOf(h)
		if _, ok := c.index[k]; ok {
			continue
		}
		if len(c.ring) < maxCommitted {
			c.ring = append(c.ring, k)
		} else {
			delete(c.index, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % maxCommitted
		}
		c.index[k] = first + uint64(i)
	}
}

// indexCommitted reads the leaves [from, to) of the tree, adds them to the tree in memory (which starts where it
// ends, whatever from says) and to the index, and drops them from the pending set.
func (p *Primary) indexCommitted(ctx context.Context, from, to uint64) error {
	if p.tree != nil {
		from = p.tree.Size()
	}
	for from < to {
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		leaves, err := p.cfg.Log.GetLeaves(cctx, from, min(to-from, committedBatch))
		cancel()
		if err != nil {
			return fmt.Errorf("reading committed leaves from %d: %w", from, err)
		}
		if len(leaves) == 0 {
			return fmt.Errorf("reading committed leaves from %d: storage has none below %d", from, to)
		}
		hs := make([]sigsum.Hash, len(leaves))
		for i := range leaves {
			hs[i] = leaves[i].Hash()
		}
		if p.tree != nil {
			p.tree.Append(leaves)
		}
		p.committed.add(from, hs)
		p.pending.remove(hs)
		from += uint64(len(leaves))
	}
	return nil
}

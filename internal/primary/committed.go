package primary

import (
	"context"
	"fmt"
	"sync"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Bounds of the in-memory index of committed leaves.
const (
	// maxCommitted bounds memory (about 80 bytes an entry): the newest leaves are the ones submitters retry.
	maxCommitted = 2 << 20
	// preloadCommitted is how many of the newest signed leaves a start reads back into the index.
	preloadCommitted = 1 << 16
	// committedBatch is how many leaves one read of newly signed leaves asks for.
	committedBatch = 4096
)

// isCommitted reports whether a leaf is known, from memory, to be in the signed tree.
func (p *Primary) isCommitted(h sigsum.Hash) bool {
	if p.mem != nil {
		_, ok := p.mem.lookup(h, p.signed.Load().Size)
		return ok
	}
	return p.committed.has(h)
}

// committedLeaves remembers the hashes of the newest committed leaves, so that a submitter's retry of a committed
// leaf is answered 200 from memory: no signature check, no storage lookup. Older leaves fall back to storage.
type committedLeaves struct {
	mu   sync.RWMutex
	set  map[sigsum.Hash]struct{}
	ring []sigsum.Hash // insertion order, for evicting the oldest
	next int           // next ring slot to overwrite once full
}

func newCommittedLeaves() *committedLeaves {
	return &committedLeaves{set: make(map[sigsum.Hash]struct{})}
}

func (c *committedLeaves) has(h sigsum.Hash) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.set[h]
	return ok
}

func (c *committedLeaves) add(hs []sigsum.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hs {
		if _, ok := c.set[h]; ok {
			continue
		}
		if len(c.ring) < maxCommitted {
			c.ring = append(c.ring, h)
		} else {
			delete(c.set, c.ring[c.next])
			c.ring[c.next] = h
			c.next = (c.next + 1) % maxCommitted
		}
		c.set[h] = struct{}{}
	}
}

// indexCommitted reads the leaves [from, to) of the tree and adds them to the in-memory tree (which starts where
// it ends, whatever from says) or else to the index of recent leaves, dropping them from the pending set.
func (p *Primary) indexCommitted(ctx context.Context, from, to uint64) error {
	if p.mem != nil {
		from = p.mem.size()
	}
	for from < to {
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		leaves, err := p.cfg.Log.GetLeaves(cctx, from, min(to-from, committedBatch))
		cancel()
		if err != nil {
			return fmt.Errorf("reading committed leaves from %d: %w", from, err)
		}
		hs := make([]sigsum.Hash, len(leaves))
		for i := range leaves {
			hs[i] = leaves[i].Hash()
		}
		if p.mem != nil {
			p.mem.append(leaves)
		} else {
			p.committed.add(hs)
		}
		p.pending.remove(hs)
		from += uint64(len(leaves))
	}
	return nil
}

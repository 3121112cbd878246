package primary

import (
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// maxMemTree bounds the committed tree held in memory (the 128-byte leaf, 64 bytes of node hashes and about 80
// bytes of index a leaf: about 1.1 GiB at the bound); a larger log serves proofs and leaves from storage.
const maxMemTree = 4 << 20

// memTree holds every node hash of the committed tree, so that proofs and leaf lookups at the published size are
// answered from memory: storage would decode and rehash its stored tiles for every proof. levels[k][i] is the
// hash of the perfect subtree of 2^k leaves starting at leaf i·2^k.
type memTree struct {
	mu     sync.RWMutex
	leaves []sigsum.Leaf
	levels [][]sigsum.Hash
	index  map[sigsum.Hash]uint64 // leaf hash → its (first) index
}

// newMemTree returns an empty tree with room for n leaves: a log loaded at start knows its size, and slices grown
// by append alone would hold up to twice the memory, and leave as much garbage behind.
func newMemTree(n uint64) *memTree {
	n += n / 8 // room to grow before the first reallocation
	return &memTree{
		leaves: make([]sigsum.Leaf, 0, n),
		levels: [][]sigsum.Hash{make([]sigsum.Hash, 0, n)},
		index:  make(map[sigsum.Hash]uint64, n),
	}
}

// size is the number of leaves held.
func (t *memTree) size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return uint64(len(t.levels[0]))
}

// append adds the leaves that follow the ones held.
func (t *memTree) append(leaves []sigsum.Leaf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leaves = append(t.leaves, leaves...)
	for i := range leaves {
		h := leaves[i].Hash()
		if _, ok := t.index[h]; !ok {
			t.index[h] = uint64(len(t.levels[0]))
		}
		t.levels[0] = append(t.levels[0], h)
		// Complete every subtree this leaf closes.
		for k := 0; len(t.levels[k])%2 == 0; k++ {
			n := len(t.levels[k])
			parent := sigsum.Hash(rfc6962.DefaultHasher.HashChildren(t.levels[k][n-2][:], t.levels[k][n-1][:]))
			if k+1 == len(t.levels) {
				t.levels = append(t.levels, nil)
			}
			t.levels[k+1] = append(t.levels[k+1], parent)
		}
	}
}

// leafRange returns the leaves [start, end), which must be held.
func (t *memTree) leafRange(start, end uint64) []sigsum.Leaf {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]sigsum.Leaf(nil), t.leaves[start:end]...)
}

// lookup returns the index of a leaf among the first size leaves.
func (t *memTree) lookup(h sigsum.Hash, size uint64) (uint64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	i, ok := t.index[h]
	return i, ok && i < size
}

// hashes returns the node hashes a proof needs and rehashes them into the proof path.
func (t *memTree) hashes(nodes proof.Nodes, size uint64) ([]sigsum.Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if size > uint64(len(t.levels[0])) {
		return nil, fmt.Errorf("tree of size %d not held in memory (%d leaves)", size, len(t.levels[0]))
	}
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if int(id.Level) >= len(t.levels) || id.Index >= uint64(len(t.levels[id.Level])) {
			return nil, fmt.Errorf("node %d/%d not held in memory", id.Level, id.Index)
		}
		hs[i] = t.levels[id.Level][id.Index][:]
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

// inclusion returns the proof of the leaf at index in the tree of size size.
func (t *memTree) inclusion(index, size uint64) (sigsum.InclusionProof, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return sigsum.InclusionProof{}, err
	}
	path, err := t.hashes(nodes, size)
	return sigsum.InclusionProof{LeafIndex: index, Path: path}, err
}

// consistency returns the proof that the tree of size newSize extends the one of size oldSize.
func (t *memTree) consistency(oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	nodes, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return sigsum.ConsistencyProof{}, err
	}
	path, err := t.hashes(nodes, newSize)
	return sigsum.ConsistencyProof{Path: path}, err
}

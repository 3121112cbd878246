package committed

import (
	"encoding/binary"
	"sync"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// hashFilter is a Bloom filter of the leaf hashes of a tree held in memory, which tells a new leaf from a signed
// one without storage: a hash it has not had is answered at once, so that add-leaf's check for a signed leaf
// costs a new leaf nothing. A hash it had is always found; one it had not is found with a small probability (see
// filterK), and then storage decides. It grows with the tree as a chain of filters (a Bloom filter cannot grow in
// place), each as large as all before it together, so that the chain's capacity doubles: 12 bits a leaf at
// capacity, 1.5 to 3 bytes a leaf. A tree read whole at start gets one filter of its size and an eighth more, 1.7
// bytes a leaf, rather than the chain a tree grown from nothing has.
type hashFilter struct {
	mu   sync.RWMutex
	segs []*bloom
}

const (
	filterFirst = 1 << 16 // least capacity of a filter of the chain
	filterBits  = 12      // bits per leaf of a filter at capacity
	filterK     = 8       // bits set per leaf: about 0.3% false positives per full filter, 3% for a chain of ten
)

// newHashFilter returns an empty filter whose first filter has room for size leaves and an eighth more.
func newHashFilter(size uint64) *hashFilter {
	return &hashFilter{segs: []*bloom{newBloom(max(filterFirst, int(size+size/8)))}}
}

// bloom is one filter of the chain, for up to capacity leaves.
type bloom struct {
	bits     []uint64
	n, limit int
}

func newBloom(capacity int) *bloom {
	return &bloom{bits: make([]uint64, capacity*filterBits/64), limit: capacity}
}

// probe calls f with the filterK bit positions of h, until f returns false. A leaf hash is uniformly random, so its
// own bytes make the positions (double hashing over two 64-bit halves of its second half).
func (b *bloom) probe(h *sigsum.Hash, f func(word int, bit uint64) bool) bool {
	m := uint64(len(b.bits)) * 64
	x, y := binary.LittleEndian.Uint64(h[16:24]), binary.LittleEndian.Uint64(h[24:32])|1
	for i := range uint64(filterK) {
		p := (x + i*y) % m
		if !f(int(p/64), 1<<(p%64)) {
			return false
		}
	}
	return true
}

func (b *bloom) add(h *sigsum.Hash) {
	b.probe(h, func(w int, bit uint64) bool { b.bits[w] |= bit; return true })
	b.n++
}

func (b *bloom) has(h *sigsum.Hash) bool {
	return b.probe(h, func(w int, bit uint64) bool { return b.bits[w]&bit != 0 })
}

// add adds leaf hashes.
func (f *hashFilter) add(hs []sigsum.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range hs {
		if len(f.segs) == 0 || f.segs[len(f.segs)-1].n >= f.segs[len(f.segs)-1].limit {
			total := 0
			for _, s := range f.segs {
				total += s.limit
			}
			f.segs = append(f.segs, newBloom(max(filterFirst, total)))
		}
		f.segs[len(f.segs)-1].add(&hs[i])
	}
}

// mayHave reports whether h may have been added: false means it was not.
func (f *hashFilter) mayHave(h sigsum.Hash) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.segs {
		if s.has(&h) {
			return true
		}
	}
	return false
}

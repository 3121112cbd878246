package sigsum

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// InclusionProof proves a leaf's presence at LeafIndex in a tree.
type InclusionProof struct {
	LeafIndex uint64
	Path      []Hash
}

// ConsistencyProof proves that a tree is an extension of an older one.
type ConsistencyProof struct {
	Path []Hash
}

func hashSlices(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// Verify checks that leafHash is at p.LeafIndex in the tree th.
func (p *InclusionProof) Verify(leafHash Hash, th *TreeHead) error {
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.LeafIndex, th.Size, leafHash[:], hashSlices(p.Path),
		th.RootHash[:]); err != nil {
		return fmt.Errorf("inclusion proof of leaf %d in tree of size %d: %w", p.LeafIndex, th.Size, err)
	}
	return nil
}

// Verify checks that the tree newer extends the tree older. Equal sizes need an empty proof and equal roots; an
// empty older tree is consistent with any tree.
func (p *ConsistencyProof) Verify(older, newer *TreeHead) error {
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashSlices(p.Path),
		older.RootHash[:], newer.RootHash[:]); err != nil {
		return fmt.Errorf("consistency proof from size %d to %d: %w", older.Size, newer.Size, err)
	}
	return nil
}

// MarshalASCII returns the get-inclusion-proof body.
func (p *InclusionProof) MarshalASCII() []byte {
	var w asciiWriter
	w.int("leaf_index", p.LeafIndex)
	for _, h := range p.Path {
		w.hex("node_hash", h[:])
	}
	return w.b
}

// ParseInclusionProof decodes a get-inclusion-proof body: leaf_index and one or more node_hash lines.
func ParseInclusionProof(b []byte) (InclusionProof, error) {
	var p InclusionProof
	var err error
	r := newASCIIParser(b)
	if p.LeafIndex, err = r.int("leaf_index"); err != nil {
		return p, err
	}
	p.Path, err = r.hashes("node_hash")
	return p, err
}

// MarshalASCII returns the get-consistency-proof body.
func (p *ConsistencyProof) MarshalASCII() []byte {
	var w asciiWriter
	for _, h := range p.Path {
		w.hex("node_hash", h[:])
	}
	return w.b
}

// ParseConsistencyProof decodes a get-consistency-proof body: one or more node_hash lines.
func ParseConsistencyProof(b []byte) (ConsistencyProof, error) {
	var p ConsistencyProof
	var err error
	p.Path, err = newASCIIParser(b).hashes("node_hash")
	return p, err
}

// RootHash computes the RFC 6962 Merkle tree root over leaf hashes.
func RootHash(leafHashes []Hash) Hash {
	r := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for i := range leafHashes {
		// Append only fails for a hash of the wrong length, which a Hash cannot be.
		_ = r.Append(leafHashes[i][:], nil)
	}
	if len(leafHashes) == 0 {
		return HashBytes(nil)
	}
	root, _ := r.GetRootHash(nil)
	return Hash(root)
}

package sigsum

import (
	"errors"
	"fmt"
	"strings"

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
		return &ProofError{fmt.Sprintf("inclusion proof of leaf %d in tree of size %d: %s", p.LeafIndex, th.Size, proofReason(err)), err}
	}
	return nil
}

// ProofError is a proof that does not verify. Its message is one line, with roots in hex; it wraps the verifier's
// error (transparency-dev/merkle's, whose own message spans lines and prints roots as byte lists).
type ProofError struct {
	msg string
	err error
}

func (e *ProofError) Error() string { return e.msg }
func (e *ProofError) Unwrap() error { return e.err }

// proofReason says in one line why a proof failed.
func proofReason(err error) string {
	var rm proof.RootMismatchError
	if errors.As(err, &rm) {
		return fmt.Sprintf("calculated root %x does not match the expected root %x", rm.CalculatedRoot, rm.ExpectedRoot)
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Verify checks that the tree newer extends the tree older. Equal sizes need an empty proof and equal roots; an
// empty older tree is consistent with any tree.
func (p *ConsistencyProof) Verify(older, newer *TreeHead) error {
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, hashSlices(p.Path),
		older.RootHash[:], newer.RootHash[:]); err != nil {
		return &ProofError{fmt.Sprintf("consistency proof from size %d to %d: %s", older.Size, newer.Size, proofReason(err)), err}
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

// ErrNotExtends is wrapped by Extends' error when the newer tree does not extend the older one.
var ErrNotExtends = errors.New("tree does not extend the older one")

// Extends checks that the tree newer extends the tree older: the same root at the same size, the empty tree's root
// at size 0, else the consistency proof that proof returns (asked for only then). An error wrapping ErrNotExtends
// means the two trees disagree (one line, roots in hex); any other error is proof's own. It is the one check of
// "B extends A" for the primary's start, its secondaries, the secondaries' self-check and promote.
func Extends(older, newer TreeHead, proof func() (ConsistencyProof, error)) error {
	switch {
	case older.Size > newer.Size:
		return fmt.Errorf("%w: size %d is smaller than %d", ErrNotExtends, newer.Size, older.Size)
	case older.Size == 0 && older.RootHash != RootHash(nil):
		return fmt.Errorf("%w: the empty tree's root is %s, not %s", ErrNotExtends, older.RootHash, RootHash(nil))
	case older.Size == newer.Size:
		if older.RootHash != newer.RootHash {
			return fmt.Errorf("%w: at size %d the root %s differs from %s", ErrNotExtends, older.Size, newer.RootHash, older.RootHash)
		}
		return nil
	case older.Size == 0:
		return nil // the empty tree is a prefix of every tree
	}
	p, err := proof()
	if err != nil {
		return err
	}
	if err := p.Verify(&older, &newer); err != nil {
		return fmt.Errorf("%w: size %d (root %s) from size %d (root %s): %w", ErrNotExtends, newer.Size, newer.RootHash,
			older.Size, older.RootHash, err)
	}
	return nil
}

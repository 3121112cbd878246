package sigsum

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// Micro-benchmarks of the hot paths of a log and its clients: parsing what clients send and what logs answer,
// leaf hashing and verification, proof verification. Speed is measured here, never asserted.

func benchSigner(b *testing.B) *Ed25519Signer {
	s, err := NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRequest(b *testing.B) AddLeafRequest {
	s := benchSigner(b)
	msg := HashBytes([]byte("bench"))
	l, err := SignLeaf(s, msg)
	if err != nil {
		b.Fatal(err)
	}
	return AddLeafRequest{Message: msg, Signature: l.Signature, PublicKey: s.Public()}
}

func BenchmarkParseAddLeafRequest(b *testing.B) {
	req := benchRequest(b)
	body := req.MarshalASCII()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAddLeafRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalAddLeafRequest(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		req.MarshalASCII()
	}
}

// benchTreeHead returns a get-tree-head body with n cosignatures.
func benchTreeHead(b *testing.B, n int) []byte {
	s := benchSigner(b)
	th := TreeHead{Size: 1 << 20, RootHash: HashBytes([]byte("root"))}
	sth, err := th.Sign(s)
	if err != nil {
		b.Fatal(err)
	}
	cth := CosignedTreeHead{SignedTreeHead: sth}
	for i := range n {
		// One cosignature per witness: each of its own key.
		w, err := NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(6 + i)}, 32)))
		if err != nil {
			b.Fatal(err)
		}
		c, err := th.Cosign(w, Origin(s.Public()), uint64(1700000000+i))
		if err != nil {
			b.Fatal(err)
		}
		cth.Cosignatures = append(cth.Cosignatures, c)
	}
	return cth.MarshalASCII()
}

func BenchmarkParseCosignedTreeHead(b *testing.B) {
	for _, n := range []int{0, 3} {
		b.Run(fmt.Sprintf("cosignatures=%d", n), func(b *testing.B) {
			body := benchTreeHead(b, n)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseCosignedTreeHead(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshalCosignedTreeHead(b *testing.B) {
	cth, err := ParseCosignedTreeHead(benchTreeHead(b, 3))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cth.MarshalASCII()
	}
}

// BenchmarkAddLeafRequestLeafHash is what a log computes for every add-leaf before anything else: the leaf (two
// SHA-256) and its hash (one more).
func BenchmarkAddLeafRequestLeafHash(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		l := req.Leaf()
		l.Hash()
	}
}

func BenchmarkLeafHash(b *testing.B) {
	req := benchRequest(b)
	l := req.Leaf()
	b.ReportAllocs()
	for b.Loop() {
		l.Hash()
	}
}

func BenchmarkAddLeafRequestVerify(b *testing.B) {
	req := benchRequest(b)
	b.ReportAllocs()
	for b.Loop() {
		if !req.Verify() {
			b.Fatal("does not verify")
		}
	}
}

func BenchmarkLeafVerify(b *testing.B) {
	req := benchRequest(b)
	l := req.Leaf()
	b.ReportAllocs()
	for b.Loop() {
		if !l.Verify(req.PublicKey) {
			b.Fatal("does not verify")
		}
	}
}

func BenchmarkSignedTreeHeadVerify(b *testing.B) {
	s := benchSigner(b)
	sth, err := (&TreeHead{Size: 1 << 20, RootHash: HashBytes(nil)}).Sign(s)
	if err != nil {
		b.Fatal(err)
	}
	pub := s.Public()
	b.ReportAllocs()
	for b.Loop() {
		if !sth.Verify(pub) {
			b.Fatal("does not verify")
		}
	}
}

// benchTree is a Merkle tree of n distinct leaves.
func benchTree(n uint64) *testonly.Tree {
	t := testonly.New(rfc6962.DefaultHasher)
	for i := range n {
		h := HashBytes(fmt.Appendf(nil, "%d", i))
		t.Append(h[:])
	}
	return t
}

// treeSizes are the sizes proofs are benchmarked at: the cost should grow with log2(size) only.
var treeSizes = []uint64{1 << 10, 1 << 17}

func BenchmarkInclusionProofVerify(b *testing.B) {
	for _, n := range treeSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			t := benchTree(n)
			idx := n / 3
			path, err := t.InclusionProof(idx, n)
			if err != nil {
				b.Fatal(err)
			}
			p := InclusionProof{LeafIndex: idx}
			for _, h := range path {
				p.Path = append(p.Path, Hash(h))
			}
			th := TreeHead{Size: n, RootHash: Hash(t.Hash())}
			leaf := Hash(t.LeafHash(idx))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Verify(leaf, &th); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConsistencyProofVerify(b *testing.B) {
	for _, n := range treeSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			t := benchTree(n)
			old := n/3 + 1
			path, err := t.ConsistencyProof(old, n)
			if err != nil {
				b.Fatal(err)
			}
			var p ConsistencyProof
			for _, h := range path {
				p.Path = append(p.Path, Hash(h))
			}
			older := TreeHead{Size: old, RootHash: Hash(t.HashAt(old))}
			newer := TreeHead{Size: n, RootHash: Hash(t.Hash())}
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Verify(&older, &newer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseInclusionProof(b *testing.B) {
	p := InclusionProof{LeafIndex: 123456, Path: make([]Hash, 20)}
	body := p.MarshalASCII()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInclusionProof(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalInclusionProof(b *testing.B) {
	p := InclusionProof{LeafIndex: 123456, Path: make([]Hash, 20)}
	b.ReportAllocs()
	for b.Loop() {
		p.MarshalASCII()
	}
}

// benchLeaves returns 512 leaves: one get-leaves answer of the default max range.
func benchLeaves(b *testing.B) []Leaf {
	req := benchRequest(b)
	leaves := make([]Leaf, 512)
	for i := range leaves {
		leaves[i] = req.Leaf()
		leaves[i].Checksum[0] = byte(i)
	}
	return leaves
}

func BenchmarkMarshalLeavesASCII512(b *testing.B) {
	leaves := benchLeaves(b)
	b.ReportAllocs()
	for b.Loop() {
		MarshalLeavesASCII(leaves)
	}
}

func BenchmarkParseLeavesASCII512(b *testing.B) {
	body := MarshalLeavesASCII(benchLeaves(b))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLeavesASCII(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeafBinary(b *testing.B) {
	l := benchLeaves(b)[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLeafBinary(l.MarshalBinary()); err != nil {
			b.Fatal(err)
		}
	}
}

package sigsum

import (
	"encoding/hex"
	"fmt"
)

// LeafSize is the size of a leaf's binary form, the Trillian LeafValue.
const LeafSize = HashSize + SignatureSize + HashSize

const leafNamespace = "sigsum.org/v1/tree-leaf"

// Leaf is one entry of the log: a checksum, the submitter's signature over it, and the submitter's key hash.
type Leaf struct {
	Checksum  Hash
	Signature Signature
	KeyHash   Hash
}

// LeafSignedBytes returns the bytes a submitter signs for a leaf: "sigsum.org/v1/tree-leaf" ‖ 0x00 ‖ checksum.
func LeafSignedBytes(checksum Hash) []byte {
	b := make([]byte, 0, len(leafNamespace)+1+HashSize)
	b = append(b, leafNamespace...)
	b = append(b, 0)
	return append(b, checksum[:]...)
}

// SignLeaf makes the leaf for a 32-byte message: checksum H(message), signed by signer.
func SignLeaf(signer Signer, message Hash) (Leaf, error) {
	checksum := HashBytes(message[:])
	sig, err := signer.Sign(LeafSignedBytes(checksum))
	if err != nil {
		return Leaf{}, fmt.Errorf("signing leaf: %w", err)
	}
	return Leaf{Checksum: checksum, Signature: sig, KeyHash: signer.Public().KeyHash()}, nil
}

// Verify reports whether pub is the leaf's key and signed its checksum.
func (l *Leaf) Verify(pub PublicKey) bool {
	return pub.KeyHash() == l.KeyHash && pub.Verify(LeafSignedBytes(l.Checksum), l.Signature)
}

// MarshalBinary returns the 128-byte binary form: checksum ‖ signature ‖ key_hash.
func (l *Leaf) MarshalBinary() []byte { return l.AppendBinary(make([]byte, 0, LeafSize)) }

// AppendBinary appends the 128-byte binary form to b.
func (l *Leaf) AppendBinary(b []byte) []byte {
	b = append(b, l.Checksum[:]...)
	b = append(b, l.Signature[:]...)
	return append(b, l.KeyHash[:]...)
}

// ParseLeafBinary decodes the 128-byte binary form of a leaf.
func ParseLeafBinary(b []byte) (Leaf, error) {
	var l Leaf
	if len(b) != LeafSize {
		return l, syntaxErr("binary leaf has %d bytes, want %d", len(b), LeafSize)
	}
	copy(l.Checksum[:], b[:HashSize])
	copy(l.Signature[:], b[HashSize:HashSize+SignatureSize])
	copy(l.KeyHash[:], b[HashSize+SignatureSize:])
	return l, nil
}

// Hash returns the RFC 6962 leaf hash H(0x00 ‖ binary leaf).
func (l *Leaf) Hash() Hash {
	var b [1 + LeafSize]byte
	copy(b[1:], l.Checksum[:])
	copy(b[1+HashSize:], l.Signature[:])
	copy(b[1+HashSize+SignatureSize:], l.KeyHash[:])
	return HashBytes(b[:])
}

// appendASCII writes the leaf's `leaf=<checksum> <signature> <key_hash>` line.
func (l *Leaf) appendASCII(w *asciiWriter) {
	w.b = append(w.b, "leaf="...)
	w.b = hex.AppendEncode(w.b, l.Checksum[:])
	w.b = append(w.b, ' ')
	w.b = hex.AppendEncode(w.b, l.Signature[:])
	w.b = append(w.b, ' ')
	w.b = hex.AppendEncode(w.b, l.KeyHash[:])
	w.b = append(w.b, '\n')
}

// leafLineLen is the length of a leaf's get-leaves line: its three fields in hex, two spaces and a newline.
const leafLineLen = len("leaf=") + 2*LeafSize + 3

// MarshalLeavesASCII returns the get-leaves body for leaves.
func MarshalLeavesASCII(leaves []Leaf) []byte {
	w := asciiWriter{b: make([]byte, 0, len(leaves)*leafLineLen)}
	for i := range leaves {
		leaves[i].appendASCII(&w)
	}
	return w.b
}

// ParseLeavesASCII decodes a get-leaves body: one or more leaf= lines.
func ParseLeavesASCII(b []byte) ([]Leaf, error) {
	p := newASCIIParser(b)
	// Sized once from the input, which has room for no more leaves (no growing, and a hostile body cannot make it
	// larger than itself).
	leaves := make([]Leaf, 0, len(b)/leafLineLen+1)
	var f [3][]byte
	for first := true; first || p.more(); first = false {
		v, err := p.nextBytes("leaf")
		if err != nil {
			return nil, err
		}
		if err := fields("leaf", v, f[:]); err != nil {
			return nil, err
		}
		var l Leaf
		if err := parseHex("leaf checksum", f[0], l.Checksum[:]); err != nil {
			return nil, err
		}
		if err := parseHex("leaf signature", f[1], l.Signature[:]); err != nil {
			return nil, err
		}
		if err := parseHex("leaf key hash", f[2], l.KeyHash[:]); err != nil {
			return nil, err
		}
		leaves = append(leaves, l)
	}
	return leaves, nil
}

// AddLeafRequest is the body of add-leaf.
type AddLeafRequest struct {
	Message   Hash
	Signature Signature
	PublicKey PublicKey
}

// Leaf returns the leaf this request asks the log to add. It does not verify the signature.
func (r *AddLeafRequest) Leaf() Leaf {
	return Leaf{Checksum: HashBytes(r.Message[:]), Signature: r.Signature, KeyHash: r.PublicKey.KeyHash()}
}

// Verify reports whether the request's signature is valid for its public key and message.
func (r *AddLeafRequest) Verify() bool {
	return r.PublicKey.Verify(LeafSignedBytes(HashBytes(r.Message[:])), r.Signature)
}

// MarshalASCII returns the request body.
func (r *AddLeafRequest) MarshalASCII() []byte {
	var w asciiWriter
	w.hex("message", r.Message[:])
	w.hex("signature", r.Signature[:])
	w.hex("public_key", r.PublicKey[:])
	return w.b
}

// ParseAddLeafRequest decodes an add-leaf body.
func ParseAddLeafRequest(b []byte) (AddLeafRequest, error) {
	var r AddLeafRequest
	var err error
	p := newASCIIParser(b)
	if r.Message, err = p.hash("message"); err != nil {
		return r, err
	}
	if r.Signature, err = p.signature("signature"); err != nil {
		return r, err
	}
	if r.PublicKey, err = p.publicKey("public_key"); err != nil {
		return r, err
	}
	return r, p.end()
}

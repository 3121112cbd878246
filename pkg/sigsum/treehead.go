package sigsum

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
)

const (
	originPrefix         = "sigsum.org/v1/tree/"
	cosignatureNamespace = "cosignature/v1"
)

// TreeHead is a Merkle tree size and root.
type TreeHead struct {
	Size     uint64
	RootHash Hash
}

// SignedTreeHead is a tree head signed by a log (or by a secondary, with its own key).
type SignedTreeHead struct {
	TreeHead
	Signature Signature
}

// Cosignature is a witness's signature over a tree head at a time.
type Cosignature struct {
	KeyHash   Hash // H(witness public key)
	Timestamp uint64
	Signature Signature
}

// CosignedTreeHead is a signed tree head with the witness cosignatures gathered for it.
type CosignedTreeHead struct {
	SignedTreeHead
	Cosignatures []Cosignature
}

// Origin returns the checkpoint origin of the log whose key is pub.
func Origin(pub PublicKey) string {
	h := pub.KeyHash()
	return originPrefix + hex.EncodeToString(h[:])
}

// Checkpoint returns the signed bytes of a tree head: origin, size, base64 root, each on its own line.
func (th *TreeHead) Checkpoint(origin string) []byte {
	b := make([]byte, 0, len(origin)+64)
	b = append(b, origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, th.Size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, th.RootHash[:])
	return append(b, '\n')
}

// Sign signs the tree head with signer; the origin is derived from the signer's key.
func (th *TreeHead) Sign(signer Signer) (SignedTreeHead, error) {
	sig, err := signer.Sign(th.Checkpoint(Origin(signer.Public())))
	if err != nil {
		return SignedTreeHead{}, fmt.Errorf("signing tree head: %w", err)
	}
	return SignedTreeHead{TreeHead: *th, Signature: sig}, nil
}

// Verify reports whether the tree head is signed by pub.
func (sth *SignedTreeHead) Verify(pub PublicKey) bool {
	return pub.Verify(sth.Checkpoint(Origin(pub)), sth.Signature)
}

// CosignatureSignedBytes returns what a witness signs: "cosignature/v1\ntime <t>\n" ‖ checkpoint.
func (th *TreeHead) CosignatureSignedBytes(origin string, timestamp uint64) []byte {
	b := make([]byte, 0, 128+len(origin))
	b = append(b, cosignatureNamespace+"\ntime "...)
	b = strconv.AppendUint(b, timestamp, 10)
	b = append(b, '\n')
	return append(b, th.Checkpoint(origin)...)
}

// Cosign makes a witness cosignature of the tree head of the log with origin, at timestamp.
func (th *TreeHead) Cosign(signer Signer, origin string, timestamp uint64) (Cosignature, error) {
	sig, err := signer.Sign(th.CosignatureSignedBytes(origin, timestamp))
	if err != nil {
		return Cosignature{}, fmt.Errorf("cosigning tree head: %w", err)
	}
	return Cosignature{KeyHash: signer.Public().KeyHash(), Timestamp: timestamp, Signature: sig}, nil
}

// Verify reports whether c is witness's valid cosignature of th for the log with origin.
func (c *Cosignature) Verify(witness PublicKey, origin string, th *TreeHead) bool {
	return witness.KeyHash() == c.KeyHash && witness.Verify(th.CosignatureSignedBytes(origin, c.Timestamp), c.Signature)
}

func (sth *SignedTreeHead) appendASCII(w *asciiWriter) {
	w.int("size", sth.Size)
	w.hex("root_hash", sth.RootHash[:])
	w.hex("signature", sth.Signature[:])
}

// MarshalASCII returns the size=, root_hash=, signature= form (get-secondary-tree-head, the sth file).
func (sth *SignedTreeHead) MarshalASCII() []byte {
	var w asciiWriter
	sth.appendASCII(&w)
	return w.b
}

func (p *asciiParser) signedTreeHead() (SignedTreeHead, error) {
	var sth SignedTreeHead
	var err error
	if sth.Size, err = p.int("size"); err != nil {
		return sth, err
	}
	if sth.RootHash, err = p.hash("root_hash"); err != nil {
		return sth, err
	}
	sth.Signature, err = p.signature("signature")
	return sth, err
}

// ParseSignedTreeHead decodes the size=, root_hash=, signature= form.
func ParseSignedTreeHead(b []byte) (SignedTreeHead, error) {
	p := newASCIIParser(b)
	sth, err := p.signedTreeHead()
	if err != nil {
		return sth, err
	}
	return sth, p.end()
}

// SortCosignatures orders cosignatures by witness key hash, the stable order get-tree-head uses.
func SortCosignatures(cs []Cosignature) {
	slices.SortFunc(cs, func(a, b Cosignature) int {
		if c := slices.Compare(a.KeyHash[:], b.KeyHash[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Timestamp, b.Timestamp)
	})
}

// MarshalASCII returns the get-tree-head body, cosignatures in the order held.
func (cth *CosignedTreeHead) MarshalASCII() []byte {
	var w asciiWriter
	cth.appendASCII(&w)
	for _, c := range cth.Cosignatures {
		w.line("cosignature", hex.EncodeToString(c.KeyHash[:]), strconv.FormatUint(c.Timestamp, 10),
			hex.EncodeToString(c.Signature[:]))
	}
	return w.b
}

// ParseCosignedTreeHead decodes a get-tree-head body: a signed tree head and zero or more cosignature= lines, at
// most one per witness key hash.
func ParseCosignedTreeHead(b []byte) (CosignedTreeHead, error) {
	p := newASCIIParser(b)
	var cth CosignedTreeHead
	var err error
	if cth.SignedTreeHead, err = p.signedTreeHead(); err != nil {
		return cth, err
	}
	var f [3][]byte
	for p.more() {
		v, err := p.nextBytes("cosignature")
		if err != nil {
			return cth, err
		}
		if err := fields("cosignature", v, f[:]); err != nil {
			return cth, err
		}
		var c Cosignature
		if err := parseHex("cosignature key hash", f[0], c.KeyHash[:]); err != nil {
			return cth, err
		}
		if c.Timestamp, err = ParseInt(string(f[1])); err != nil {
			return cth, fmt.Errorf("cosignature time: %w", err)
		}
		if err := parseHex("cosignature signature", f[2], c.Signature[:]); err != nil {
			return cth, err
		}
		// At most one cosignature per witness key hash (Sigsum, June 2026): a second one could make one witness
		// count twice toward a quorum in a verifier that does not deduplicate.
		for i := range cth.Cosignatures {
			if cth.Cosignatures[i].KeyHash == c.KeyHash {
				return cth, syntaxErr("two cosignatures by witness key hash %s", c.KeyHash)
			}
		}
		cth.Cosignatures = append(cth.Cosignatures, c)
	}
	return cth, nil
}

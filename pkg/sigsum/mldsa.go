package sigsum

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
)

// ML-DSA-44 cosignatures (C2SP tlog-cosignature, subtree/v1 with signed-note type 0x06): post-quantum witness
// cosignatures. A checkpoint carries them; Sigsum v1's get-tree-head carries Ed25519 cosignatures only.
const (
	// MLDSA44PublicKeySize and MLDSA44SignatureSize are the sizes of an ML-DSA-44 public key and signature.
	MLDSA44PublicKeySize = mldsa44.PublicKeySize
	MLDSA44SignatureSize = mldsa44.SignatureSize

	noteTypeMLDSA44 = 0x06
)

// MLDSAWitnessKeyID returns the note key id of an ML-DSA-44 cosigner: H(name ‖ 0x0A ‖ 0x06 ‖ key)[:4].
func MLDSAWitnessKeyID(name string, key []byte) KeyID {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', noteTypeMLDSA44})
	h.Write(key)
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// SubtreeCosignedMessage returns the message an ML-DSA-44 cosigner signs (C2SP tlog-cosignature cosigned_message):
// the label "subtree/v1\n\0", the cosigner's name and the timestamp, the log's origin, and the subtree [start, end)
// with its root hash. A checkpoint's is the subtree [0, size).
func SubtreeCosignedMessage(name, origin string, timestamp, start, end uint64, root Hash) []byte {
	b := make([]byte, 0, 12+1+len(name)+8+1+len(origin)+8+8+HashSize)
	b = append(b, "subtree/v1\n\x00"...)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint64(b, timestamp)
	b = append(b, byte(len(origin)))
	b = append(b, origin...)
	b = binary.BigEndian.AppendUint64(b, start)
	b = binary.BigEndian.AppendUint64(b, end)
	return append(b, root[:]...)
}

// MLDSACosignature is an ML-DSA-44 cosignature of a checkpoint, as a witness returned it.
type MLDSACosignature struct {
	Name      string // the cosigner's own name, on its note line
	Timestamp uint64
	Signature []byte // MLDSA44SignatureSize bytes
}

// Line returns the cosignature's note signature line for key.
func (c *MLDSACosignature) Line(key []byte) []byte {
	id := MLDSAWitnessKeyID(c.Name, key)
	blob := make([]byte, 0, KeyIDSize+8+len(c.Signature))
	blob = append(blob, id[:]...)
	blob = binary.BigEndian.AppendUint64(blob, c.Timestamp)
	blob = append(blob, c.Signature...)
	return appendNoteSignature(nil, c.Name, blob)
}

// Verify reports whether c is key's ML-DSA-44 cosignature of the checkpoint of th for the log of origin.
func (c *MLDSACosignature) Verify(key []byte, origin string, th *TreeHead) bool {
	var pk mldsa44.PublicKey
	if len(c.Name) == 0 || len(c.Name) > 255 || len(origin) > 255 || pk.UnmarshalBinary(key) != nil ||
		len(c.Signature) != MLDSA44SignatureSize {
		return false
	}
	return mldsa44.Verify(&pk, SubtreeCosignedMessage(c.Name, origin, c.Timestamp, 0, th.Size, th.RootHash), nil, c.Signature)
}

// ParseMLDSAWitnessCosignature finds, among the note signature lines of a witness's add-checkpoint response, the
// ML-DSA-44 line signed with key (its key id is H(name-on-that-line ‖ 0x0A ‖ 0x06 ‖ key)[:4]). It does not verify
// the signature.
func ParseMLDSAWitnessCosignature(body []byte, key []byte) (MLDSACosignature, error) {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return MLDSACosignature{}, syntaxErr("cosignature response does not end in a newline")
	}
	for _, line := range strings.Split(string(body[:len(body)-1]), "\n") {
		ns, err := ParseNoteSignature(line)
		if err != nil {
			return MLDSACosignature{}, err
		}
		if ns.KeyID != MLDSAWitnessKeyID(ns.Name, key) || len(ns.Blob) != 8+MLDSA44SignatureSize {
			continue
		}
		c := MLDSACosignature{Name: ns.Name, Timestamp: binary.BigEndian.Uint64(ns.Blob), Signature: ns.Blob[8:]}
		if c.Timestamp > MaxInt {
			return MLDSACosignature{}, syntaxErr("cosignature time exceeds 2^63-1")
		}
		return c, nil
	}
	return MLDSACosignature{}, syntaxErr("no ML-DSA-44 cosignature line signed with the witness key (key hash %s)", HashBytes(key))
}

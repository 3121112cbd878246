package sigsum

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// KeyIDSize is the length of a signed-note key id.
const KeyIDSize = 4

// KeyID is a signed-note key id: the first four bytes of a hash over the key's name, a type byte and the key.
type KeyID [KeyIDSize]byte

// Signed-note signature type bytes (C2SP signed-note).
const (
	noteTypeEd25519     = 0x01
	noteTypeCosignature = 0x04
)

const emDash = "\u2014"

func noteKeyID(name string, typ byte, pub PublicKey) KeyID {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', typ})
	h.Write(pub[:])
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// LogKeyID returns the note key id of a log key: H(origin ‖ 0x0A ‖ 0x01 ‖ key)[:4].
func LogKeyID(origin string, pub PublicKey) KeyID { return noteKeyID(origin, noteTypeEd25519, pub) }

// WitnessKeyID returns the note key id of a witness cosigning key: H(name ‖ 0x0A ‖ 0x04 ‖ key)[:4].
func WitnessKeyID(name string, pub PublicKey) KeyID {
	return noteKeyID(name, noteTypeCosignature, pub)
}

// SignedNote returns the checkpoint note a log sends witnesses: the checkpoint body, an empty line and the log's
// signature line. logKey must be the key that made sth.
func (sth *SignedTreeHead) SignedNote(logKey PublicKey) []byte {
	origin := Origin(logKey)
	id := LogKeyID(origin, logKey)
	b := sth.Checkpoint(origin)
	b = append(b, '\n')
	return appendNoteSignature(b, origin, append(id[:], sth.Signature[:]...))
}

func appendNoteSignature(b []byte, name string, blob []byte) []byte {
	b = append(b, emDash+" "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = base64.StdEncoding.AppendEncode(b, blob)
	return append(b, '\n')
}

// CosignatureLine returns a witness's note signature line for c: `— <name> base64(key id ‖ time ‖ signature)`.
func CosignatureLine(name string, witness PublicKey, c *Cosignature) []byte {
	id := WitnessKeyID(name, witness)
	blob := make([]byte, 0, KeyIDSize+8+SignatureSize)
	blob = append(blob, id[:]...)
	blob = binary.BigEndian.AppendUint64(blob, c.Timestamp)
	blob = append(blob, c.Signature[:]...)
	return appendNoteSignature(nil, name, blob)
}

// NoteSignature is one parsed signature line of a signed note.
type NoteSignature struct {
	Name  string
	KeyID KeyID
	Blob  []byte // what follows the key id
}

// ParseNoteSignature decodes one `— <name> <base64>` line, without its newline.
func ParseNoteSignature(line string) (NoteSignature, error) {
	var ns NoteSignature
	rest, ok := strings.CutPrefix(line, emDash+" ")
	if !ok {
		return ns, syntaxErr("note signature line does not start with an em dash and a space")
	}
	name, b64, ok := strings.Cut(rest, " ")
	if !ok || name == "" || strings.ContainsAny(name, " +\t") || strings.Contains(b64, " ") {
		return ns, syntaxErr("note signature line is not `— <name> <base64>`")
	}
	blob, err := decodeBase64(b64)
	if err != nil || len(blob) <= KeyIDSize {
		return ns, syntaxErr("note signature of %q is not valid base64 of a key id and a signature", truncate(name))
	}
	ns.Name = name
	copy(ns.KeyID[:], blob)
	ns.Blob = blob[KeyIDSize:]
	return ns, nil
}

// decodeBase64 decodes strict standard base64, refusing also the line breaks Go's decoder skips even in strict
// mode: signed text must have one reading, and a note that re-assembles differently is not the note that was sent.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break inside base64")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// ParseWitnessCosignature finds, among the note signature lines of a witness's add-checkpoint response, the line
// signed with the witness key: the one whose key id is H(name-on-that-line ‖ 0x0A ‖ 0x04 ‖ key)[:4]. The name on
// the line is the witness's own; a trust policy's name for the witness is local to the policy file and plays no
// part. It returns the cosignature and the name the witness signed under (CosignatureLine(name, witness, &c)
// rebuilds the line, byte for byte, for a checkpoint). It does not verify the signature.
func ParseWitnessCosignature(body []byte, witness PublicKey) (c Cosignature, name string, err error) {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return Cosignature{}, "", syntaxErr("cosignature response does not end in a newline")
	}
	kh := witness.KeyHash()
	for _, line := range strings.Split(string(body[:len(body)-1]), "\n") {
		ns, err := ParseNoteSignature(line)
		if err != nil {
			return Cosignature{}, "", err
		}
		// Other lines (other keys, other signature types such as ML-DSA) are not this one; skip them.
		if ns.KeyID != WitnessKeyID(ns.Name, witness) || len(ns.Blob) != 8+SignatureSize {
			continue
		}
		c := Cosignature{KeyHash: kh, Timestamp: binary.BigEndian.Uint64(ns.Blob)}
		if c.Timestamp > MaxInt {
			return Cosignature{}, "", syntaxErr("cosignature time exceeds 2^63-1")
		}
		copy(c.Signature[:], ns.Blob[8:])
		return c, ns.Name, nil
	}
	return Cosignature{}, "", syntaxErr("no Ed25519 cosignature line signed with the witness key (key hash %x)", kh[:])
}

// ParseCheckpoint decodes a Sigsum checkpoint body: origin, size and base64 root, each ending in a newline.
func ParseCheckpoint(b []byte) (origin string, th TreeHead, err error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return "", th, syntaxErr("checkpoint is not three newline-terminated lines")
	}
	if lines[0] == "" {
		return "", th, syntaxErr("checkpoint has an empty origin")
	}
	if th.Size, err = ParseInt(lines[1]); err != nil {
		return "", th, fmt.Errorf("checkpoint size: %w", err)
	}
	root, err := decodeBase64(lines[2])
	if err != nil || len(root) != HashSize {
		return "", th, syntaxErr("checkpoint root is not the base64 of a 32-byte hash")
	}
	copy(th.RootHash[:], root)
	return lines[0], th, nil
}

// Note is a parsed signed note: its text and signature lines.
type Note struct {
	Text       []byte // up to and including the text's last newline
	Signatures []NoteSignature
}

// ParseNote decodes a signed note: text, an empty line, then one or more signature lines, each newline-terminated.
func ParseNote(b []byte) (Note, error) {
	var n Note
	i := bytes.Index(b, []byte("\n\n"))
	if i < 0 {
		return n, syntaxErr("note has no empty line before its signatures")
	}
	n.Text = b[:i+1]
	sigs := b[i+2:]
	if len(sigs) == 0 || sigs[len(sigs)-1] != '\n' {
		return n, syntaxErr("note signatures missing or not newline-terminated")
	}
	for _, line := range strings.Split(string(sigs[:len(sigs)-1]), "\n") {
		ns, err := ParseNoteSignature(line)
		if err != nil {
			return n, err
		}
		n.Signatures = append(n.Signatures, ns)
	}
	return n, nil
}

// AddCheckpointRequest is the body a log POSTs to a witness's add-checkpoint endpoint (C2SP tlog-witness).
type AddCheckpointRequest struct {
	OldSize uint64
	Proof   []Hash // consistency proof from OldSize to the checkpoint's size
	Note    []byte // the signed checkpoint note
}

// MarshalBinary returns the request body: `old <n>`, base64 proof lines, an empty line, the note.
func (r *AddCheckpointRequest) MarshalBinary() []byte {
	b := append([]byte("old "), strconv.FormatUint(r.OldSize, 10)...)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Note...)
}

// MaxProofLength bounds a proof's hashes: a tree of at most 2^63-1 leaves needs at most 2·63 of them.
const MaxProofLength = 2 * 63

// ParseAddCheckpointRequest decodes an add-checkpoint body. The note is returned unparsed.
func ParseAddCheckpointRequest(b []byte) (AddCheckpointRequest, error) {
	var r AddCheckpointRequest
	first, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return r, syntaxErr("add-checkpoint body has no old-size line")
	}
	old, ok := bytes.CutPrefix(first, []byte("old "))
	if !ok {
		return r, syntaxErr("add-checkpoint body does not start with `old <size>`")
	}
	var err error
	if r.OldSize, err = ParseInt(string(old)); err != nil {
		return r, fmt.Errorf("add-checkpoint old size: %w", err)
	}
	for {
		line, tail, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return r, syntaxErr("add-checkpoint body has no empty line before the checkpoint")
		}
		rest = tail
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLength {
			return r, syntaxErr("add-checkpoint proof has more than %d hashes", MaxProofLength)
		}
		h, err := decodeBase64(string(line))
		if err != nil || len(h) != HashSize {
			return r, syntaxErr("add-checkpoint proof line is not the base64 of a 32-byte hash")
		}
		r.Proof = append(r.Proof, Hash(h))
	}
	r.Note = rest
	return r, nil
}

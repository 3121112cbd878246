// Package proof reads, writes and verifies Sigsum proofs of logging: the `.proof` files that sigsum-go's
// sigsum-submit writes and sigsum-verify reads, so that a proof made by sigsumctl verifies with those tools and
// the other way round.
//
// A proof is ASCII key=value lines (PROTOCOL.md §2) in up to three parts separated by one empty line:
//
//	version=2
//	log=<hex key hash of the log's public key>
//	leaf=<hex key hash of the submitter's public key> <hex leaf signature>
//
//	size=<tree size>
//	root_hash=<hex root hash>
//	signature=<hex log signature>
//	cosignature=<hex witness key hash> <timestamp> <hex cosignature>   (zero or more)
//
//	leaf_index=<index>
//	node_hash=<hex hash>                                                (one or more)
//
// The second part is the get-tree-head response and the third the get-inclusion-proof response, verbatim. For a
// tree of size 1 the third part is omitted: the leaf is at index 0 and its hash is the root. The leaf's checksum
// is not in the proof; the verifier derives it from the data. Version 1 proofs, whose leaf line starts with a
// 4-hex-digit prefix of the checksum (`leaf=<short checksum> <key hash> <signature>`), are read too; proofs are
// always written as version 2.
package proof

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	merkleproof "github.com/transparency-dev/merkle/proof"

	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Version is the proof format version this package writes.
const Version = 2

// versionShortChecksum is the older format whose leaf line carries a checksum prefix.
const versionShortChecksum = 1

// ShortChecksumSize is the length of the checksum prefix of a version 1 leaf line.
const ShortChecksumSize = 2

// MaxSize bounds a proof file. A proof is a few KiB even with many cosignatures and a deep inclusion path.
const MaxSize = 1 << 20

// ErrSyntax is wrapped by every error about a malformed proof (as opposed to one that does not verify).
var ErrSyntax = errors.New("malformed proof")

// Proof is a Sigsum proof of logging.
type Proof struct {
	// LogKeyHash identifies the log: H(log public key).
	LogKeyHash sigsum.Hash
	// KeyHash is the submitter's key hash, as in the leaf.
	KeyHash sigsum.Hash
	// Signature is the submitter's leaf signature over the checksum.
	Signature sigsum.Signature
	// TreeHead is the log's cosigned tree head the leaf is proven to be in.
	TreeHead sigsum.CosignedTreeHead
	// Inclusion is the inclusion proof of the leaf in TreeHead; empty (index 0, no path) for a tree of size 1.
	Inclusion sigsum.InclusionProof
}

// New assembles a proof that leaf is in the tree cth of the log whose key hash is logKeyHash.
func New(logKeyHash sigsum.Hash, leaf *sigsum.Leaf, cth *sigsum.CosignedTreeHead, inclusion *sigsum.InclusionProof) *Proof {
	p := &Proof{LogKeyHash: logKeyHash, KeyHash: leaf.KeyHash, Signature: leaf.Signature, TreeHead: *cth}
	p.TreeHead.Cosignatures = append([]sigsum.Cosignature(nil), cth.Cosignatures...)
	if inclusion != nil {
		p.Inclusion = sigsum.InclusionProof{LeafIndex: inclusion.LeafIndex, Path: append([]sigsum.Hash(nil), inclusion.Path...)}
	}
	return p
}

// Leaf returns the leaf the proof is about, given the checksum H(message) it does not carry.
func (p *Proof) Leaf(checksum sigsum.Hash) sigsum.Leaf {
	return sigsum.Leaf{Checksum: checksum, Signature: p.Signature, KeyHash: p.KeyHash}
}

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// MarshalASCII returns the proof in the version 2 file format.
func (p *Proof) MarshalASCII() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "version=%d\nlog=%s\nleaf=%s %s\n\n", Version, p.LogKeyHash, p.KeyHash, p.Signature)
	b.Write(p.TreeHead.MarshalASCII())
	if p.TreeHead.Size > 1 {
		b.WriteByte('\n')
		b.Write(p.Inclusion.MarshalASCII())
	}
	return b.Bytes()
}

// splitParts cuts a proof at its empty lines. Each part keeps its final newline; empty parts (two empty lines in
// a row, a leading or a trailing empty line) are errors.
func splitParts(b []byte) ([][]byte, error) {
	var parts [][]byte
	for {
		i := bytes.Index(b, []byte("\n\n"))
		if i < 0 {
			break
		}
		parts = append(parts, b[:i+1])
		b = b[i+2:]
	}
	parts = append(parts, b)
	for i, part := range parts {
		if len(part) == 0 || part[0] == '\n' {
			return nil, syntaxErr("part %d is empty (extra empty line?)", i+1)
		}
	}
	return parts, nil
}

// Parse decodes a proof file (version 2, or version 1 with its short checksum, which is then not kept: Verify
// checks the full leaf signature anyway).
func Parse(b []byte) (*Proof, error) {
	if len(b) == 0 {
		return nil, syntaxErr("empty file")
	}
	if len(b) > MaxSize {
		return nil, syntaxErr("larger than %d bytes", MaxSize)
	}
	parts, err := splitParts(b)
	if err != nil {
		return nil, err
	}
	if len(parts) < 2 {
		return nil, syntaxErr("no tree head part (parts are separated by an empty line)")
	}
	var p Proof
	if err := p.parseHeader(parts[0]); err != nil {
		return nil, err
	}
	if p.TreeHead, err = sigsum.ParseCosignedTreeHead(parts[1]); err != nil {
		return nil, fmt.Errorf("%w: tree head: %w", ErrSyntax, err)
	}
	switch {
	case p.TreeHead.Size == 0:
		return nil, syntaxErr("tree head of size 0 cannot include a leaf")
	case p.TreeHead.Size == 1 && len(parts) != 2:
		return nil, syntaxErr("tree of size 1 must have no inclusion proof part, got %d parts", len(parts))
	case p.TreeHead.Size == 1:
		return &p, nil
	case len(parts) < 3:
		return nil, syntaxErr("no inclusion proof part for a tree of size %d", p.TreeHead.Size)
	case len(parts) > 3:
		return nil, syntaxErr("%d parts, want 3", len(parts))
	}
	if p.Inclusion, err = sigsum.ParseInclusionProof(parts[2]); err != nil {
		return nil, fmt.Errorf("%w: inclusion proof: %w", ErrSyntax, err)
	}
	if p.Inclusion.LeafIndex >= p.TreeHead.Size {
		return nil, syntaxErr("leaf index %d is outside the tree of size %d", p.Inclusion.LeafIndex, p.TreeHead.Size)
	}
	return &p, nil
}

// headerLine returns the value of the next `key=value` line of part, which must carry key.
func headerLine(part *[]byte, key string) (string, error) {
	i := bytes.IndexByte(*part, '\n')
	if i < 0 {
		return "", syntaxErr("missing %s line", key)
	}
	line := string((*part)[:i])
	*part = (*part)[i+1:]
	k, v, ok := strings.Cut(line, "=")
	if !ok || k != key {
		return "", syntaxErr("expected a %s= line, got %q", key, truncate(line))
	}
	return v, nil
}

func (p *Proof) parseHeader(part []byte) error {
	v, err := headerLine(&part, "version")
	if err != nil {
		return err
	}
	version, err := sigsum.ParseInt(v)
	if err != nil {
		return fmt.Errorf("%w: version: %w", ErrSyntax, err)
	}
	if version != Version && version != versionShortChecksum {
		return syntaxErr("unsupported version %d (want %d or %d)", version, Version, versionShortChecksum)
	}
	if v, err = headerLine(&part, "log"); err != nil {
		return err
	}
	if p.LogKeyHash, err = sigsum.ParseHash(v); err != nil {
		return fmt.Errorf("%w: log: %w", ErrSyntax, err)
	}
	if v, err = headerLine(&part, "leaf"); err != nil {
		return err
	}
	f := strings.Split(v, " ")
	if version == versionShortChecksum {
		if len(f) != 3 {
			return syntaxErr("version 1 leaf line has %d fields, want 3", len(f))
		}
		if len(f[0]) != 2*ShortChecksumSize || !isHex(f[0]) {
			return syntaxErr("leaf short checksum %q is not %d hex digits", truncate(f[0]), 2*ShortChecksumSize)
		}
		f = f[1:]
	} else if len(f) != 2 {
		return syntaxErr("leaf line has %d fields, want 2 (key hash, signature)", len(f))
	}
	if p.KeyHash, err = sigsum.ParseHash(f[0]); err != nil {
		return fmt.Errorf("%w: leaf key hash: %w", ErrSyntax, err)
	}
	if p.Signature, err = sigsum.ParseSignature(f[1]); err != nil {
		return fmt.Errorf("%w: leaf signature: %w", ErrSyntax, err)
	}
	if len(part) != 0 {
		return syntaxErr("unexpected line after leaf: %q", truncate(firstLine(part)))
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// truncate keeps error messages short and on one line.
func truncate(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// Verification failures. Each error Verify returns wraps exactly one of them, so callers (and tests) can tell why a
// proof was rejected; the message says the specifics.
var (
	ErrUnknownSubmitter   = errors.New("leaf key is not a trusted submitter key")
	ErrLeafSignature      = errors.New("leaf signature does not verify")
	ErrUnknownLog         = errors.New("log is not in the policy")
	ErrLogSignature       = errors.New("log signature on tree head does not verify")
	ErrQuorum             = errors.New("witness cosignatures do not satisfy the policy's quorum")
	ErrInclusion          = errors.New("inclusion proof does not verify")
	errNoSubmitterKeys    = errors.New("no submitter keys given")
	errNilPolicy          = errors.New("no policy given")
	errInvalidSizeOneTree = errors.New("tree of size 1 with a non-empty inclusion proof")
)

// Verify checks the proof for message (the 32-byte value that was signed, normally H(data)): the leaf's key is one
// of submitters and its signature is valid; the log is one of the policy's logs and signed the tree head; the
// valid cosignatures of the policy's witnesses satisfy its quorum; the leaf is in the tree.
func (p *Proof) Verify(message sigsum.Hash, submitters []sigsum.PublicKey, pol *policy.Policy) error {
	if len(submitters) == 0 {
		return errNoSubmitterKeys
	}
	if pol == nil {
		return errNilPolicy
	}
	leaf := p.Leaf(sigsum.HashBytes(message[:]))
	var submitter *sigsum.PublicKey
	for i := range submitters {
		if submitters[i].KeyHash() == p.KeyHash {
			submitter = &submitters[i]
			break
		}
	}
	if submitter == nil {
		return fmt.Errorf("%w: key hash %s", ErrUnknownSubmitter, p.KeyHash)
	}
	if !leaf.Verify(*submitter) {
		return fmt.Errorf("%w: wrong data, or the proof's leaf was altered", ErrLeafSignature)
	}
	var logKey *sigsum.PublicKey
	for _, l := range pol.Logs() {
		if l.Key.KeyHash() == p.LogKeyHash {
			logKey = &l.Key
			break
		}
	}
	if logKey == nil {
		return fmt.Errorf("%w: key hash %s", ErrUnknownLog, p.LogKeyHash)
	}
	if err := VerifyTreeHead(*logKey, pol, &p.TreeHead); err != nil {
		return err
	}
	return p.verifyInclusion(leaf.Hash())
}

func (p *Proof) verifyInclusion(leafHash sigsum.Hash) error {
	th := &p.TreeHead.TreeHead
	if th.Size == 1 {
		if p.Inclusion.LeafIndex != 0 || len(p.Inclusion.Path) != 0 {
			return fmt.Errorf("%w: %w", ErrInclusion, errInvalidSizeOneTree)
		}
		if leafHash != th.RootHash {
			return fmt.Errorf("%w: leaf hash is not the root of the tree of size 1", ErrInclusion)
		}
		return nil
	}
	if err := p.Inclusion.Verify(leafHash, th); err != nil {
		var mismatch merkleproof.RootMismatchError
		if errors.As(err, &mismatch) {
			return fmt.Errorf("%w: leaf %d in tree of size %d: computed root %x, signed root %s", ErrInclusion,
				p.Inclusion.LeafIndex, th.Size, mismatch.CalculatedRoot, th.RootHash)
		}
		return fmt.Errorf("%w: %w", ErrInclusion, OneLine(err))
	}
	return nil
}

// OneLine returns err with its message folded onto one line (some libraries write several), still wrapping err.
func OneLine(err error) error {
	if err == nil || !strings.ContainsAny(err.Error(), "\r\n") {
		return err
	}
	return oneLineError{err}
}

type oneLineError struct{ err error }

func (e oneLineError) Error() string { return strings.Join(strings.Fields(e.err.Error()), " ") }
func (e oneLineError) Unwrap() error { return e.err }

// VerifyTreeHead checks that logKey signed cth and that the valid cosignatures in cth by witnesses of pol satisfy
// its quorum. Cosignatures by keys the policy does not name are ignored; an invalid cosignature by a policy witness
// does not count.
func VerifyTreeHead(logKey sigsum.PublicKey, pol *policy.Policy, cth *sigsum.CosignedTreeHead) error {
	if !cth.Verify(logKey) {
		return fmt.Errorf("%w: size %d, log %s", ErrLogSignature, cth.Size, logKey.KeyHash())
	}
	_, err := VerifyCosignatures(logKey, pol, cth)
	return err
}

// VerifyCosignatures returns the key hashes of the policy witnesses whose cosignatures of cth are valid, and an
// error wrapping ErrQuorum if they do not satisfy the policy's quorum. It does not check the log's signature.
func VerifyCosignatures(logKey sigsum.PublicKey, pol *policy.Policy, cth *sigsum.CosignedTreeHead) (map[sigsum.Hash]bool, error) {
	origin := sigsum.Origin(logKey)
	valid := map[sigsum.Hash]bool{}
	invalid := 0
	for i := range cth.Cosignatures {
		c := &cth.Cosignatures[i]
		w, ok := pol.WitnessByKeyHash(c.KeyHash)
		if !ok || w.MLDSA != nil { // a v1 tree head's cosignatures are Ed25519; ML-DSA ones are the checkpoint's
			continue
		}
		if c.Verify(w.Key, origin, &cth.TreeHead) {
			valid[c.KeyHash] = true
		} else {
			invalid++
		}
	}
	if !pol.Satisfied(valid) {
		return valid, fmt.Errorf("%w %q: %d valid policy cosignatures, %d invalid, %d cosignatures in all",
			ErrQuorum, pol.Quorum(), len(valid), invalid, len(cth.Cosignatures))
	}
	return valid, nil
}

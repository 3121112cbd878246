// Package sigsum holds the Sigsum v1 protocol types and their encodings: the ASCII key=value messages, leaves,
// tree heads, cosignatures, checkpoint notes, submit tokens and Merkle proofs, as PROTOCOL.md specifies them.
package sigsum

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Sizes of the fixed-length protocol values.
const (
	HashSize      = sha256.Size
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
)

// Hash is a SHA-256 digest.
type Hash [HashSize]byte

// PublicKey is a raw Ed25519 public key.
type PublicKey [PublicKeySize]byte

// Signature is a raw Ed25519 signature.
type Signature [SignatureSize]byte

// HashBytes returns SHA-256(b).
func HashBytes(b []byte) Hash { return sha256.Sum256(b) }

// String returns the lowercase hex form, as written on the wire.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// String returns the lowercase hex form, as written on the wire.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// String returns the lowercase hex form, as written on the wire.
func (s Signature) String() string { return hex.EncodeToString(s[:]) }

// KeyHash returns H(public_key), the key's identity in leaves, cosignatures and policies.
func (k PublicKey) KeyHash() Hash { return HashBytes(k[:]) }

// Verify reports whether sig is a valid Ed25519 signature by k over msg.
func (k PublicKey) Verify(msg []byte, sig Signature) bool {
	return ed25519.Verify(ed25519.PublicKey(k[:]), msg, sig[:])
}

// Signer produces Ed25519 signatures with one key. Implementations: pkg/key (key file, ssh-agent).
type Signer interface {
	// Public returns the signer's public key.
	Public() PublicKey
	// Sign returns an Ed25519 signature over msg (the message itself; Ed25519 does its own hashing).
	Sign(msg []byte) (Signature, error)
}

// Ed25519Signer is a Signer holding the private key in memory.
type Ed25519Signer struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// NewEd25519Signer returns a Signer for priv, which must be a 64-byte Ed25519 private key.
func NewEd25519Signer(priv ed25519.PrivateKey) (*Ed25519Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	s := &Ed25519Signer{priv: priv}
	copy(s.pub[:], priv.Public().(ed25519.PublicKey))
	return s, nil
}

// Public returns the public key.
func (s *Ed25519Signer) Public() PublicKey { return s.pub }

// Sign signs msg.
func (s *Ed25519Signer) Sign(msg []byte) (Signature, error) {
	var sig Signature
	copy(sig[:], ed25519.Sign(s.priv, msg))
	return sig, nil
}

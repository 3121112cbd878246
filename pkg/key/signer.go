package key

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Signer is a sigsum.Signer that may hold resources (an ssh-agent connection); Close releases them.
type Signer interface {
	sigsum.Signer
	// Close releases the signer's resources; Sign must not be used afterwards.
	Close() error
}

// FileSigner is a Signer holding an Ed25519 private key in memory, as read from a private key file.
type FileSigner struct {
	*sigsum.Ed25519Signer
}

// NewFileSigner returns a Signer for priv, a 64-byte Ed25519 private key.
func NewFileSigner(priv ed25519.PrivateKey) (*FileSigner, error) {
	s, err := sigsum.NewEd25519Signer(priv)
	if err != nil {
		return nil, fmt.Errorf("file signer: %w", err)
	}
	return &FileSigner{s}, nil
}

// Close does nothing; it makes FileSigner a Signer.
func (*FileSigner) Close() error { return nil }

// LoadSigner returns the signer named by the key file at path (PROTOCOL.md §7): an OpenSSH private key file gives
// a FileSigner (refused with an UnprotectedKeyError if group or others may access the file); a public key file
// gives an AgentSigner for that key through the ssh-agent at agentSocket ($SSH_AUTH_SOCK when empty), with
// DefaultAgentTimeout. ctx bounds connecting to the agent. The caller must Close the returned signer.
func LoadSigner(ctx context.Context, path string, agentSocket string) (Signer, error) {
	data, mode, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		if err := checkPrivateKeyMode(path, mode); err != nil {
			return nil, err
		}
		priv, err := ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("load signer from %s: %w", path, err)
		}
		return NewFileSigner(priv)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("load signer from %s: not a private key file, and as a public key file: %w", path, err)
	}
	s, err := NewAgentSigner(ctx, agentSocket, pub, DefaultAgentTimeout)
	if err != nil {
		return nil, fmt.Errorf("load signer from %s (public key, signing through ssh-agent): %w", path, err)
	}
	return s, nil
}

// Package key reads, writes and generates the key files a Sigsum log operator already has (PROTOCOL.md §7):
// OpenSSH Ed25519 private key files as written by `ssh-keygen -t ed25519`, and public key files holding either an
// `ssh-ed25519 <base64> [comment]` line or a bare 64-character hex key. It also provides the signers built from
// them: an in-memory signer for a private key file, and an ssh-agent signer for a public key file.
package key

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Names used in the OpenSSH formats.
const (
	// SSHKeyType is the OpenSSH key type and signature format name of Ed25519 keys.
	SSHKeyType = ssh.KeyAlgoED25519
	// PrivateKeyPEMType is the PEM block type of OpenSSH private key files.
	PrivateKeyPEMType = "OPENSSH PRIVATE KEY"
)

// hexKeyLen is the length of a public key written as bare hex.
const hexKeyLen = 2 * sigsum.PublicKeySize

// ErrEncryptedKey is returned (wrapped) for passphrase-protected private key files.
var ErrEncryptedKey = errors.New("passphrase-protected private keys are not supported; " +
	"load the key into ssh-agent and give the public key file instead")

// Generate returns a new Ed25519 key pair drawing randomness from rand (crypto/rand.Reader when rand is nil).
func Generate(rand io.Reader) (ed25519.PrivateKey, sigsum.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, sigsum.PublicKey{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	var pk sigsum.PublicKey
	copy(pk[:], pub)
	return priv, pk, nil
}

// ParsePrivateKey parses an unencrypted OpenSSH Ed25519 private key file ("-----BEGIN OPENSSH PRIVATE KEY-----").
// Encrypted keys give an error wrapping ErrEncryptedKey; other key types give an error naming the type.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, errors.New("parse private key: no PEM block found (want an OpenSSH private key file)")
	}
	if block.Type != PrivateKeyPEMType {
		return nil, fmt.Errorf("parse private key: PEM block type %q is not supported, want %q "+
			"(an OpenSSH ed25519 key as written by ssh-keygen -t ed25519)", block.Type, PrivateKeyPEMType)
	}
	raw, err := ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("parse private key: %w", ErrEncryptedKey)
		}
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *k
	case ed25519.PrivateKey:
		priv = k
	default:
		return nil, fmt.Errorf("parse private key: key type %s is not supported, only %s", privateKeyTypeName(raw), SSHKeyType)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("parse private key: ed25519 key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	// The OpenSSH format stores the public half separately; make sure it belongs to the seed.
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return nil, errors.New("parse private key: corrupt ed25519 key: public half does not match the seed")
	}
	return priv, nil
}

// privateKeyTypeName names the SSH key type of a parsed private key, for error messages.
func privateKeyTypeName(raw any) string {
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return fmt.Sprintf("%T", raw)
	}
	return signer.PublicKey().Type()
}

// ParsePublicKey parses a public key file: one line holding either an OpenSSH public key
// (`ssh-ed25519 <base64> [comment]`) or the key as 64 hex characters. Surrounding whitespace is ignored.
func ParsePublicKey(data []byte) (sigsum.PublicKey, error) {
	line := strings.TrimSpace(string(data))
	if line == "" {
		return sigsum.PublicKey{}, errors.New("parse public key: empty input")
	}
	if strings.ContainsAny(line, "\r\n") {
		return sigsum.PublicKey{}, errors.New("parse public key: more than one line")
	}
	fields := strings.Fields(line)
	if len(fields) == 1 && isHex(fields[0]) {
		return parseHexPublicKey(fields[0])
	}
	if len(fields) < 2 {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: want %q followed by a base64 key, or %d hex characters",
			SSHKeyType, hexKeyLen)
	}
	if fields[0] != SSHKeyType {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: key type %q is not supported, only %s",
			truncate(fields[0], 64), SSHKeyType)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: bad base64: %w", err)
	}
	return fromSSHWireKey(blob)
}

// fromSSHWireKey converts an SSH wire-format public key blob to a sigsum.PublicKey, requiring type ssh-ed25519.
func fromSSHWireKey(blob []byte) (sigsum.PublicKey, error) {
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: %w", err)
	}
	if pub.Type() != SSHKeyType {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: key blob has type %q, want %s", pub.Type(), SSHKeyType)
	}
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: cannot extract %s key", SSHKeyType)
	}
	edpk, ok := cpk.CryptoPublicKey().(ed25519.PublicKey)
	if !ok || len(edpk) != sigsum.PublicKeySize {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: malformed %s key", SSHKeyType)
	}
	var pk sigsum.PublicKey
	copy(pk[:], edpk)
	return pk, nil
}

func parseHexPublicKey(s string) (sigsum.PublicKey, error) {
	if len(s) != hexKeyLen {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: hex key has %d characters, want %d", len(s), hexKeyLen)
	}
	var pk sigsum.PublicKey
	if _, err := hex.Decode(pk[:], []byte(s)); err != nil {
		return sigsum.PublicKey{}, fmt.Errorf("parse public key: bad hex: %w", err)
	}
	return pk, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// MarshalPrivateKey encodes priv as an unencrypted OpenSSH private key file, the format ssh-keygen writes.
func MarshalPrivateKey(priv ed25519.PrivateKey, comment string) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("marshal private key: ed25519 key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// sshPublicKey returns pub as an ssh.PublicKey of type ssh-ed25519.
func sshPublicKey(pub sigsum.PublicKey) ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(pub[:]))
	if err != nil {
		// ssh.NewPublicKey only fails for unsupported types or wrong ed25519 lengths, neither possible here.
		panic(fmt.Sprintf("ssh.NewPublicKey(ed25519): %v", err))
	}
	return k
}

// MarshalPublicKey encodes pub as an OpenSSH public key line, `ssh-ed25519 <base64> <comment>\n`
// (without the comment field when comment is empty). The comment must be a single line.
func MarshalPublicKey(pub sigsum.PublicKey, comment string) ([]byte, error) {
	if strings.ContainsAny(comment, "\r\n") {
		return nil, errors.New("marshal public key: comment contains a line break")
	}
	var b strings.Builder
	b.WriteString(SSHKeyType)
	b.WriteByte(' ')
	b.WriteString(base64.StdEncoding.EncodeToString(sshPublicKey(pub).Marshal()))
	if comment = strings.TrimSpace(comment); comment != "" {
		b.WriteByte(' ')
		b.WriteString(comment)
	}
	b.WriteByte('\n')
	return []byte(b.String()), nil
}

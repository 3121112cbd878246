package key

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Compile-time checks that both signers satisfy the package's Signer.
var (
	_ Signer = (*FileSigner)(nil)
	_ Signer = (*AgentSigner)(nil)
)

const seed01PubHex = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"

// seed01 returns the Ed25519 key with a seed of 32 bytes 0x01.
func seed01(t testing.TB) (ed25519.PrivateKey, sigsum.PublicKey) {
	t.Helper()
	priv, pub, err := Generate(bytes.NewReader(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func mustMarshalPEM(t testing.TB, block *pem.Block, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func authorizedKeyLine(t testing.TB, pub any) []byte {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(k)
}

func TestKnownSeed(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	if got := pub.String(); got != seed01PubHex {
		t.Fatalf("public key = %s, want %s", got, seed01PubHex)
	}
	if !bytes.Equal(priv, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))) {
		t.Fatal("Generate with a fixed reader did not use it as the seed")
	}

	line, err := MarshalPublicKey(pub, "sigsum key")
	if err != nil {
		t.Fatal(err)
	}
	// Same line ssh-keygen / x/crypto/ssh would produce (plus our comment).
	want := strings.TrimSuffix(string(authorizedKeyLine(t, ed25519.PublicKey(pub[:]))), "\n") + " sigsum key\n"
	if string(line) != want {
		t.Fatalf("MarshalPublicKey = %q, want %q", line, want)
	}

	pemBytes, err := MarshalPrivateKey(priv, "sigsum key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Fatalf("MarshalPrivateKey output does not start with the OpenSSH header: %q", pemBytes[:40])
	}
	got, err := ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSigner(got)
	if err != nil {
		t.Fatal(err)
	}
	if s.Public() != pub {
		t.Fatalf("signer public key %s, want %s", s.Public(), pub)
	}
	for _, msg := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0xff}, 1000)} {
		sig, err := s.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig[:], ed25519.Sign(priv, msg)) {
			t.Fatalf("signature over %q differs from ed25519.Sign", msg)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		comment string
	}{
		{"no comment", ""},
		{"comment", "log@example.org"},
		{"comment with spaces", "sigsum log key 2026"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			priv, pub, err := Generate(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			privPath := filepath.Join(dir, "key")
			pubPath := filepath.Join(dir, "key.pub")
			if err := WritePrivateKeyFile(privPath, priv, tc.comment); err != nil {
				t.Fatal(err)
			}
			if err := WritePublicKeyFile(pubPath, pub, tc.comment); err != nil {
				t.Fatal(err)
			}
			for path, mode := range map[string]fs.FileMode{privPath: 0o600, pubPath: 0o644} {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != mode {
					t.Errorf("%s: mode %v, want %v", filepath.Base(path), fi.Mode().Perm(), mode)
				}
			}
			gotPriv, err := ReadPrivateKeyFile(privPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotPriv, priv) {
				t.Fatal("private key changed in round trip")
			}
			gotPub, err := ReadPublicKeyFile(pubPath)
			if err != nil {
				t.Fatal(err)
			}
			if gotPub != pub {
				t.Fatalf("public key %s, want %s", gotPub, pub)
			}
			// x/crypto/ssh (and so OpenSSH tooling) reads both files too.
			pubData, _ := os.ReadFile(pubPath)
			sshPub, comment, _, _, err := ssh.ParseAuthorizedKey(pubData)
			if err != nil {
				t.Fatal(err)
			}
			if comment != tc.comment || !bytes.Equal(sshPub.Marshal(), sshPublicKey(pub).Marshal()) {
				t.Fatalf("ssh.ParseAuthorizedKey: comment %q key %s", comment, ssh.FingerprintSHA256(sshPub))
			}
			privData, _ := os.ReadFile(privPath)
			if _, err := ssh.ParsePrivateKey(privData); err != nil {
				t.Fatalf("ssh.ParsePrivateKey: %v", err)
			}

			// LoadSigner on the private key file gives a key-file signer.
			s, err := LoadSigner(context.Background(), privPath, "/nonexistent/agent.sock")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(*FileSigner); !ok || s.Public() != pub {
				t.Fatalf("LoadSigner(private key) = %T with key %s", s, s.Public())
			}

			// Never overwrite, and leave no temporary files behind.
			other, otherPub, _ := Generate(rand.Reader)
			if err := WritePrivateKeyFile(privPath, other, ""); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("overwriting private key: err = %v, want fs.ErrExist", err)
			}
			if err := WritePublicKeyFile(pubPath, otherPub, ""); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("overwriting public key: err = %v, want fs.ErrExist", err)
			}
			if again, _ := ReadPrivateKeyFile(privPath); !bytes.Equal(again, priv) {
				t.Fatal("private key file changed by refused overwrite")
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("directory holds %v, want just key and key.pub", names)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, pub := seed01(t)
	if err := WritePrivateKeyFile(filepath.Join(dir, "k"), ed25519.PrivateKey{1, 2, 3}, ""); err == nil {
		t.Error("short private key: no error")
	}
	if err := WritePublicKeyFile(filepath.Join(dir, "k.pub"), pub, "two\nlines"); err == nil {
		t.Error("comment with newline: no error")
	}
	if err := WritePublicKeyFile(filepath.Join(dir, "missing", "k.pub"), pub, ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := ReadPublicKeyFile(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), maxKeyFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKeyFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: err = %v", err)
	}
}

func TestParsePublicKeyForms(t *testing.T) {
	t.Parallel()
	_, pub := seed01(t)
	line := strings.TrimSpace(string(authorizedKeyLine(t, ed25519.PublicKey(pub[:]))))
	for _, tc := range []struct {
		name, in string
	}{
		{"ssh line", line},
		{"ssh line newline", line + "\n"},
		{"ssh line comment", line + " user@host with spaces\n"},
		{"ssh line surrounding whitespace", "\n\t  " + line + "  \r\n\n"},
		{"hex", seed01PubHex},
		{"hex newline", seed01PubHex + "\n"},
		{"hex upper case", strings.ToUpper(seed01PubHex)},
		{"hex surrounding whitespace", "  " + seed01PubHex + " \r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePublicKey([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != pub {
				t.Fatalf("got %s, want %s", got, pub)
			}
		})
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := seed01(t)
	edLine := strings.TrimSpace(string(authorizedKeyLine(t, ed25519.PublicKey(pub[:]))))
	edB64 := strings.Fields(edLine)[1]
	rsaLine := string(authorizedKeyLine(t, &rsaKey.PublicKey))
	rsaB64 := strings.Fields(rsaLine)[1]

	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"whitespace", " \n\t", "empty"},
		{"garbage", "hello world, this is not a key", "not supported"},
		{"garbage word", "nonsense", "want \"ssh-ed25519\""},
		{"rsa", rsaLine, `key type "ssh-rsa" is not supported`},
		{"ecdsa", string(authorizedKeyLine(t, &ecKey.PublicKey)), `key type "ecdsa-sha2-nistp256" is not supported`},
		{"type says ed25519, blob is rsa", "ssh-ed25519 " + rsaB64, `key blob has type "ssh-rsa"`},
		{"type only", "ssh-ed25519", "want \"ssh-ed25519\""},
		{"truncated base64", "ssh-ed25519 " + edB64[:len(edB64)-5], "bad base64"},
		{"truncated blob", "ssh-ed25519 " + base64.StdEncoding.EncodeToString(sshPublicKey(pub).Marshal()[:40]), "parse public key"},
		{"hex too short", seed01PubHex[:63], "hex key has 63 characters, want 64"},
		{"hex too long", seed01PubHex + "00", "hex key has 66 characters, want 64"},
		{"hex odd chars", seed01PubHex[:62] + "zz", "or 64 hex characters"},
		{"two lines", edLine + "\n" + edLine, "more than one line"},
		{"authorized_keys options", `command="x" ` + edLine, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParsePublicKey([]byte(tc.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParsePrivateKeyErrors(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := seed01(t)
	good, err := MarshalPrivateKey(priv, "c")
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	// A key whose stored public half belongs to another key.
	_, otherPub, _ := Generate(rand.Reader)
	mismatched := append(ed25519.PrivateKey(nil), priv...)
	copy(mismatched[32:], otherPub[:])
	rsaBlock, rsaErr := ssh.MarshalPrivateKey(rsaKey, "")
	ecBlock, ecErr := ssh.MarshalPrivateKey(ecKey, "")
	encBlock, encErr := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	misBlock, misErr := ssh.MarshalPrivateKey(mismatched, "")

	for _, tc := range []struct {
		name   string
		in     []byte
		want   string
		wantIs error
	}{
		{"empty", nil, "no PEM block", nil},
		{"garbage", []byte("this is not a key"), "no PEM block", nil},
		{"public key line", authorizedKeyLine(t, ed25519.PublicKey(priv[32:])), "no PEM block", nil},
		{"rsa openssh", mustMarshalPEM(t, rsaBlock, rsaErr), "key type ssh-rsa is not supported, only ssh-ed25519", nil},
		{"ecdsa openssh", mustMarshalPEM(t, ecBlock, ecErr), "key type ecdsa-sha2-nistp256 is not supported", nil},
		{"rsa pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), `PEM block type "RSA PRIVATE KEY" is not supported`, nil},
		{"ed25519 pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), `PEM block type "PRIVATE KEY" is not supported`, nil},
		{"encrypted", mustMarshalPEM(t, encBlock, encErr), "passphrase-protected", ErrEncryptedKey},
		{"truncated", good[:len(good)/2], "no PEM block", nil},
		{"corrupt body", bytes.Replace(good, []byte("b3BlbnNzaC1rZXktdjE"), []byte("AAAAAAAAAAAAAAAAAAA"), 1), "parse private key", nil},
		{"mismatched public half", mustMarshalPEM(t, misBlock, misErr), "public half does not match", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParsePrivateKey(tc.in)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
		})
	}
}

func TestLoadSignerErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "missing"), "no such file"},
		{"garbage", write("garbage", "garbage\n"), "not a private key file"},
		{"bad pem", write("badpem", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"), "no PEM block"},
		{"public key, no agent", write("pub", seed01PubHex+"\n"), "connect to ssh-agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := LoadSigner(context.Background(), tc.path, filepath.Join(dir, "no-agent.sock"))
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestHexHelpers(t *testing.T) {
	t.Parallel()
	b, _ := hex.DecodeString(seed01PubHex)
	var want sigsum.PublicKey
	copy(want[:], b)
	got, err := parseHexPublicKey(seed01PubHex)
	if err != nil || got != want {
		t.Fatalf("parseHexPublicKey = %s, %v", got, err)
	}
}

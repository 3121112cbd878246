package key

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestPrivateKeyFilePermissions checks that a private key file group or others can access is refused with the
// fix in a one-line message, as OpenSSH does, while public key files keep working whatever their mode.
func TestPrivateKeyFilePermissions(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Log("file modes do not describe access on windows; the check is off there")
		return
	}
	priv, pub, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privData, err := MarshalPrivateKey(priv, "c")
	if err != nil {
		t.Fatal(err)
	}
	pubData, err := MarshalPublicKey(pub, "c")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		mode    fs.FileMode
		refused bool
	}{
		{"private 0600", privData, 0o600, false},
		{"private 0400", privData, 0o400, false},
		{"private 0700", privData, 0o700, false},
		{"private 0644", privData, 0o644, true},
		{"private 0666", privData, 0o666, true},
		{"private 0640", privData, 0o640, true},
		{"private 0604", privData, 0o604, true},
		{"private 0620", privData, 0o620, true},
		{"private 0601", privData, 0o601, true},
		{"public 0644", pubData, 0o644, false},
		{"public 0666", pubData, 0o666, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			// Chmod after writing: the umask does not interfere.
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			var errs []error
			if tc.data[0] == '-' {
				_, err := ReadPrivateKeyFile(path)
				errs = append(errs, err)
			}
			// LoadSigner on a public key file goes to ssh-agent, which is absent here; only private keys are checked.
			s, err := LoadSigner(context.Background(), path, filepath.Join(t.TempDir(), "no-agent.sock"))
			if err == nil {
				s.Close()
			}
			errs = append(errs, err)
			for _, err := range errs {
				var ue *UnprotectedKeyError
				if got := errors.As(err, &ue); got != tc.refused {
					t.Fatalf("refused = %v (err %v), want %v", got, err, tc.refused)
				}
				if !tc.refused {
					continue
				}
				if !errors.Is(err, ErrUnprotectedKey) {
					t.Errorf("error %q does not wrap ErrUnprotectedKey", err)
				}
				msg := err.Error()
				for _, want := range []string{"chmod 600 " + path, "UNPROTECTED PRIVATE KEY FILE", fmt.Sprintf("mode %04o", tc.mode)} {
					if !strings.Contains(msg, want) {
						t.Errorf("error %q does not name %q", msg, want)
					}
				}
				if strings.ContainsAny(msg, "\r\n") {
					t.Errorf("error %q is more than one line", msg)
				}
			}
		})
	}
}

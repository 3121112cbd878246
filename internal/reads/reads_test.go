package reads

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func cosigned(t testing.TB) (note []byte, lines [][]byte, cs []sigsum.Cosignature) {
	t.Helper()
	logSigner, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	sth := sigsum.SignedTreeHead{TreeHead: sigsum.TreeHead{Size: 3, RootHash: sigsum.HashBytes([]byte("root"))}}
	note = sth.SignedNote(logSigner.Public())
	for i, name := range []string{"w1", "w2"} {
		seed := make([]byte, 32)
		seed[0] = byte(i + 1)
		w := ed25519.NewKeyFromSeed(seed)
		var pub sigsum.PublicKey
		copy(pub[:], w.Public().(ed25519.PublicKey))
		c := sigsum.Cosignature{KeyHash: pub.KeyHash(), Timestamp: uint64(100 + i)}
		copy(c.Signature[:], ed25519.Sign(w, []byte(name)))
		cs = append(cs, c)
		lines = append(lines, sigsum.CosignatureLine(name, pub, &c))
	}
	return note, lines, cs
}

func TestCheckpoint(t *testing.T) {
	t.Parallel()
	note, lines, cs := cosigned(t)
	both := string(note) + string(lines[0]) + string(lines[1])
	for _, tc := range []struct {
		name string
		from string
		cs   []sigsum.Cosignature
		want string
	}{
		{"both kept", both, cs, both},
		{"one verified", both, cs[1:], string(note) + string(lines[1])},
		{"none verified", both, nil, string(note)},
		{"no source", "", cs, string(note)},
		{"another head", strings.Replace(both, "\n3\n", "\n4\n", 1), cs, string(note)},
		{"garbage lines dropped", string(note) + "junk\n\u2014 x !!\n" + string(lines[0]) + "\u2014 w2 AAAA\n", cs, string(note) + string(lines[0])},
		{"a line without its newline", strings.TrimSuffix(both, "\n"), cs, string(note) + string(lines[0])},
	} {
		if got := string(Checkpoint(note, []byte(tc.from), tc.cs)); got != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

func FuzzCheckpoint(f *testing.F) {
	note, lines, cs := cosigned(f)
	f.Add(append(append(append([]byte{}, note...), lines[0]...), lines[1]...))
	f.Add(append(append([]byte{}, note...), "\u2014 w1 \n\n"...))
	f.Fuzz(func(t *testing.T, from []byte) {
		out := Checkpoint(note, from, cs)
		if !strings.HasPrefix(string(out), string(note)) || len(out) > len(note)+len(from) {
			t.Fatalf("checkpoint %q from %q", out, from)
		}
	})
}

// Before a node holds a published head, every read is 503 with a reason, not a crash or an empty 200.
func TestNoHeadYet(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	Register(mux, "/", Config{Head: func() *Head { return nil }, Tree: func() Tree { return nil }})
	for _, path := range []string{"/get-tree-head", "/checkpoint", "/tile/0/000", "/get-leaves/0/1",
		"/get-inclusion-proof/2/" + strings.Repeat("00", 32), "/get-consistency-proof/1/2"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "retry") {
			t.Errorf("GET %s: %d %q, want 503", path, w.Code, w.Body)
		}
	}
}

package secondary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// fuzzSecondary is a secondary whose tree holds three integrated leaves, built once per fuzz target (openNode
// wants a *testing.T). It does not replicate: its primary is unreachable.
func fuzzSecondary(f *testing.F) *Secondary {
	f.Helper()
	dir := f.TempDir()
	ctx := context.Background()
	e, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"),
		Type: trillian.TreeType_PREORDERED_LOG, Create: true})
	if err != nil {
		f.Fatal(err)
	}
	leaves := make([]sigsum.Leaf, 3)
	for i := range leaves {
		leaves[i].Checksum = sigsum.HashBytes([]byte(fmt.Sprint("fuzz ", i)))
	}
	if err := l.AddSequencedLeaves(ctx, 0, leaves); err != nil {
		f.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		th, err := l.TreeHead(ctx)
		if err != nil {
			f.Fatal(err)
		}
		if th.Size == uint64(len(leaves)) {
			break
		}
		if time.Now().After(deadline) {
			f.Fatalf("tree stuck at %d", th.Size)
		}
	}
	primary, err := client.New(client.Config{URL: "http://127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	signer, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Log: l, Signer: signer, Primary: primary, Timeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// FuzzHandlers sends arbitrary requests to the secondary's internal and public handlers, with and without a
// prefix: never a 500 for what a client sent, never a panic, a one-line reason on errors, Allow on 405, and a
// get-secondary-tree-head answer that verifies with the secondary's key.
func FuzzHandlers(f *testing.F) {
	s := fuzzSecondary(f)
	handlers := []http.Handler{s.InternalHandler(""), s.InternalHandler("/a/b/"), s.PublicHandler(""), s.PublicHandler("log")}
	for _, seed := range []struct {
		which        uint8
		method, path string
		body         []byte
	}{
		{0, "GET", "/get-secondary-tree-head", nil},
		{0, "HEAD", "/get-secondary-tree-head", nil},
		{0, "POST", "/get-secondary-tree-head", []byte("size=1\n")},
		{1, "GET", "/a/b/get-secondary-tree-head", nil},
		{1, "GET", "/a/get-secondary-tree-head", nil},
		{1, "GET", "/a/b//get-secondary-tree-head/..", nil},
		{0, "GET", "/get-secondary-tree-head/x", nil},
		{2, "GET", "/", nil},
		{2, "PUT", "/", []byte("x")},
		{3, "GET", "/log/", nil},
		{3, "GET", "/log/get-tree-head", nil},
		{3, "POST", "/log/add-leaf", []byte("message=00\n")},
		{0, "GET", "/%FF", nil},
	} {
		f.Add(seed.which, seed.method, seed.path, seed.body)
	}
	f.Fuzz(func(t *testing.T, which uint8, method, target string, body []byte) {
		r, ok := fuzzRequest(method, target, body)
		if !ok {
			return
		}
		rec := httptest.NewRecorder()
		handlers[int(which)%len(handlers)].ServeHTTP(rec, r)
		what := fmt.Sprintf("%s %q (%d body bytes)", r.Method, r.RequestURI, len(body))
		got := rec.Body.String()
		switch rec.Code {
		case http.StatusOK, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect,
			http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			t.Fatalf("%s: status %d %q", what, rec.Code, got)
		}
		if rec.Code >= 400 && (got == "" || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n")) {
			t.Fatalf("%s: %d with a reason that is not one line: %q", what, rec.Code, got)
		}
		if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Fatalf("%s: 405 without Allow", what)
		}
		if rec.Code == http.StatusOK && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/get-secondary-tree-head") {
			sth, err := sigsum.ParseSignedTreeHead([]byte(got))
			if err != nil || sth.Size != 3 || !sth.Verify(s.PublicKey()) {
				t.Fatalf("%s: 200 %q is not the signed head of 3 leaves: %v", what, got, err)
			}
		}
	})
}

// fuzzRequest builds the request a server would hand its handler; ok is false when no server would (an invalid
// method token or request target).
func fuzzRequest(method, target string, body []byte) (*http.Request, bool) {
	if method == "" || strings.IndexFunc(method, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
	}) >= 0 {
		return nil, false
	}
	if strings.ContainsAny(target, " \r\n\x00") || !strings.HasPrefix(target, "/") {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	r := &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Host: "secondary.example", RemoteAddr: "192.0.2.1:1234"}
	return r.WithContext(context.Background()), true
}

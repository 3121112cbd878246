package primary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// fuzzPrimary is a primary on an embedded SQLite Trillian with five signed leaves, built once per fuzz target
// (newEnv wants a *testing.T, a fuzz target has only a *testing.F before it fuzzes).
func fuzzPrimary(f *testing.F) (*Primary, []sigsum.Leaf) {
	f.Helper()
	dir := f.TempDir()
	ctx := context.Background()
	e, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_LOG, Create: true})
	if err != nil {
		f.Fatal(err)
	}
	signer := fuzzSigner(f, 1)
	sub := fuzzSigner(f, 2)
	var leaves []sigsum.Leaf
	for i := 0; i < 5; i++ {
		leaf, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint("fuzz leaf ", i))))
		if err != nil {
			f.Fatal(err)
		}
		if _, err := l.QueueLeaf(ctx, &leaf); err != nil {
			f.Fatal(err)
		}
		leaves = append(leaves, leaf)
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
	sth := filepath.Join(dir, "sth")
	if err := WriteStartupFile(sth, StartupEmpty); err != nil {
		f.Fatal(err)
	}
	p, err := New(ctx, Config{Log: l, Signer: signer, STHFile: sth, Interval: time.Hour, Timeout: 5 * time.Second,
		Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	if err := p.Rotate(ctx); err != nil {
		f.Fatal(err)
	}
	if p.Published().Size != uint64(len(leaves)) {
		f.Fatalf("published %d leaves, want %d", p.Published().Size, len(leaves))
	}
	// The leaves in the order the tree holds them.
	if leaves, err = l.GetLeaves(ctx, 0, uint64(len(leaves))); err != nil {
		f.Fatal(err)
	}
	return p, leaves
}

func fuzzSigner(tb testing.TB, seed byte) sigsum.Signer {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzRequest builds the request a server would hand its handler for method, target, body and a sigsum-token
// header; ok is false when no server would (an invalid method token, request target or header value).
func fuzzRequest(method, target string, body []byte, token string) (*http.Request, bool) {
	if method == "" || strings.IndexFunc(method, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r)
	}) >= 0 {
		return nil, false
	}
	if strings.ContainsAny(target, " \r\n\x00") {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || !strings.HasPrefix(target, "/") {
		return nil, false
	}
	r := &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Host: "log.example", RemoteAddr: "192.0.2.1:1234"}
	if token != "" {
		if strings.ContainsAny(token, "\r\n\x00") {
			return nil, false
		}
		r.Header.Set(sigsum.SubmitTokenHeader, token)
	}
	return r.WithContext(context.Background()), true
}

// checkAnswer holds every answer to the handler invariants: never a 500 for what a client sent, a status the
// API uses, a one-line reason on errors, an Allow header on 405.
func checkAnswer(t *testing.T, r *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	what := fmt.Sprintf("%s %q (%d body bytes)", r.Method, r.RequestURI, r.ContentLength)
	body := rec.Body.String()
	switch rec.Code {
	case http.StatusOK, http.StatusAccepted, http.StatusMovedPermanently, http.StatusTemporaryRedirect,
		http.StatusPermanentRedirect, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusTooManyRequests:
	default:
		t.Fatalf("%s: status %d %q", what, rec.Code, body)
	}
	if rec.Code >= 400 && (body == "" || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n")) {
		t.Fatalf("%s: %d with a reason that is not one line: %q", what, rec.Code, body)
	}
	if rec.Code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
		t.Fatalf("%s: 405 without Allow", what)
	}
}

// FuzzHandlers sends arbitrary requests to the primary's public and internal handlers, with and without a URL
// prefix.
func FuzzHandlers(f *testing.F) {
	p, leaves := fuzzPrimary(f)
	handlers := []http.Handler{p.PublicHandler(""), p.PublicHandler("a/b"), p.InternalHandler(""), p.InternalHandler("a/b")}
	h := leaves[2].Hash().String()
	sub := fuzzSigner(f, 3)
	msg := sigsum.HashBytes([]byte("fuzz new leaf"))
	newLeaf, err := sigsum.SignLeaf(sub, msg)
	if err != nil {
		f.Fatal(err)
	}
	good := (&sigsum.AddLeafRequest{Message: msg, Signature: newLeaf.Signature, PublicKey: sub.Public()}).MarshalASCII()
	for _, seed := range []struct {
		which        uint8
		method, path string
		body         []byte
		token        string
	}{
		{0, "GET", "/", nil, ""},
		{0, "GET", "/get-tree-head", nil, ""},
		{1, "GET", "/a/b/get-tree-head", nil, ""},
		{0, "GET", "/get-inclusion-proof/5/" + h, nil, ""},
		{0, "GET", "/get-inclusion-proof/9223372036854775808/" + h, nil, ""},
		{0, "GET", "/get-inclusion-proof/5/" + h[:63], nil, ""},
		{0, "GET", "/get-consistency-proof/2/5", nil, ""},
		{0, "GET", "/get-consistency-proof/0/5", nil, ""},
		{0, "GET", "/get-leaves/0/5", nil, ""},
		{0, "GET", "/get-leaves/-1/5", nil, ""},
		{0, "GET", "/get-leaves/4/3", nil, ""},
		{0, "POST", "/add-leaf", good, ""},
		{0, "POST", "/add-leaf", good, "example.org " + strings.Repeat("ab", 64)},
		{0, "POST", "/add-leaf", good[:len(good)-1], ""},
		{0, "POST", "/add-leaf", append(good, good...), ""},
		{0, "PUT", "/add-leaf", good, ""},
		{0, "POST", "/get-tree-head", nil, ""},
		{2, "GET", "/get-leaves/0/100", nil, ""},
		{2, "GET", "/get-leaves/5/6", nil, ""},
		{2, "GET", "/get-leaves/18446744073709551615/1", nil, ""},
		{3, "GET", "/a/b/get-leaves/1/2", nil, ""},
		{3, "DELETE", "/a/b/get-leaves/1/2", nil, ""},
		{0, "GET", "/get-leaves/%FF/1", nil, ""},
		{0, "GET", "//get-tree-head/../x", nil, ""},
	} {
		f.Add(seed.which, seed.method, seed.path, seed.body, seed.token)
	}
	f.Fuzz(func(t *testing.T, which uint8, method, target string, body []byte, token string) {
		r, ok := fuzzRequest(method, target, body, token)
		if !ok {
			return
		}
		rec := httptest.NewRecorder()
		handlers[int(which)%len(handlers)].ServeHTTP(rec, r)
		checkAnswer(t, r, rec)
	})
}

package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func signer(t *testing.T, b byte) sigsum.Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeLog answers every endpoint from fixed values and records what it was asked.
type fakeLog struct {
	t        *testing.T
	cth      sigsum.CosignedTreeHead
	leaves   []sigsum.Leaf
	commits  atomic.Int32 // add-leaf answers 202 until this many calls, then 200
	lastPath atomic.Value
	token    atomic.Value
}

func (f *fakeLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.lastPath.Store(r.URL.Path)
	p := strings.TrimPrefix(r.URL.Path, "/prefix/")
	switch {
	case p == "get-tree-head":
		w.Write(f.cth.MarshalASCII())
	case p == "get-secondary-tree-head":
		w.Write(f.cth.SignedTreeHead.MarshalASCII())
	case strings.HasPrefix(p, "get-inclusion-proof/"):
		ip := sigsum.InclusionProof{LeafIndex: 1, Path: []sigsum.Hash{{1}}}
		w.Write(ip.MarshalASCII())
	case strings.HasPrefix(p, "get-consistency-proof/"):
		cp := sigsum.ConsistencyProof{Path: []sigsum.Hash{{2}, {3}}}
		w.Write(cp.MarshalASCII())
	case p == "get-leaves/0/2":
		w.Write(sigsum.MarshalLeavesASCII(f.leaves))
	case p == "get-leaves/0/1":
		w.Write(sigsum.MarshalLeavesASCII(f.leaves)) // more than asked: the client must refuse
	case p == "get-leaves/2/3":
		http.Error(w, "at end of tree", http.StatusNotFound)
	case p == "add-leaf":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if _, err := sigsum.ParseAddLeafRequest(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.token.Store(r.Header.Get("sigsum-token"))
		if f.commits.Add(-1) >= 0 {
			w.WriteHeader(http.StatusAccepted)
		}
	case p == "huge":
		w.Write(bytes.Repeat([]byte("leaf=x\n"), 1<<20))
	case p == "slow":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	default:
		http.Error(w, "no such endpoint\nsecond line\x07", http.StatusNotFound)
	}
}

func newTest(t *testing.T, maxBytes int64) (*fakeLog, *Client) {
	t.Helper()
	logS, witS := signer(t, 1), signer(t, 3)
	th := sigsum.TreeHead{Size: 2, RootHash: sigsum.Hash{7}}
	sth, err := th.Sign(logS)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := th.Cosign(witS, sigsum.Origin(logS.Public()), 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	l0, _ := sigsum.SignLeaf(signer(t, 2), sigsum.Hash{1})
	l1, _ := sigsum.SignLeaf(signer(t, 2), sigsum.Hash{2})
	f := &fakeLog{t: t, cth: sigsum.CosignedTreeHead{SignedTreeHead: sth, Cosignatures: []sigsum.Cosignature{cs}},
		leaves: []sigsum.Leaf{l0, l1}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL + "/prefix/", MaxResponseBytes: maxBytes, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	f, c := newTest(t, 0)
	ctx := context.Background()

	cth, err := c.GetTreeHead(ctx)
	if err != nil || !bytes.Equal(cth.MarshalASCII(), f.cth.MarshalASCII()) {
		t.Fatalf("GetTreeHead: %v", err)
	}
	if !cth.Verify(signer(t, 1).Public()) {
		t.Error("tree head does not verify")
	}
	sth, err := c.GetSecondaryTreeHead(ctx)
	if err != nil || sth != f.cth.SignedTreeHead {
		t.Fatalf("GetSecondaryTreeHead: %v", err)
	}
	ip, err := c.GetInclusionProof(ctx, 2, sigsum.Hash{0xab})
	if err != nil || ip.LeafIndex != 1 || len(ip.Path) != 1 {
		t.Fatalf("GetInclusionProof: %v", err)
	}
	if got, want := f.lastPath.Load(), "/prefix/get-inclusion-proof/2/ab"+strings.Repeat("00", 31); got != want {
		t.Errorf("inclusion path = %q, want %q", got, want)
	}
	cp, err := c.GetConsistencyProof(ctx, 1, 2)
	if err != nil || len(cp.Path) != 2 {
		t.Fatalf("GetConsistencyProof: %v", err)
	}
	leaves, err := c.GetLeaves(ctx, 0, 2)
	if err != nil || len(leaves) != 2 || leaves[1] != f.leaves[1] {
		t.Fatalf("GetLeaves: %v", err)
	}
	if _, err := c.GetLeaves(ctx, 0, 1); err == nil || !strings.Contains(err.Error(), "asked for 1") {
		t.Errorf("GetLeaves with too many leaves: %v", err)
	}
	if _, err := c.GetLeaves(ctx, 2, 3); StatusCode(err) != http.StatusNotFound || !strings.Contains(err.Error(), "at end of tree") {
		t.Errorf("GetLeaves at end: %v", err)
	}
}

func TestAddLeaf(t *testing.T) {
	t.Parallel()
	f, c := newTest(t, 0)
	ctx := context.Background()
	s := signer(t, 2)
	leaf, _ := sigsum.SignLeaf(s, sigsum.Hash{5})
	req := &sigsum.AddLeafRequest{Message: sigsum.Hash{5}, Signature: leaf.Signature, PublicKey: s.Public()}
	tok, _ := sigsum.SignSubmitToken(s, "example.org", signer(t, 1).Public())
	f.commits.Store(1)
	committed, err := c.AddLeaf(ctx, req, &tok)
	if err != nil || committed {
		t.Fatalf("first AddLeaf = %v, %v; want 202", committed, err)
	}
	if got := f.token.Load(); got != tok.String() {
		t.Errorf("token header = %q, want %q", got, tok.String())
	}
	committed, err = c.AddLeaf(ctx, req, nil)
	if err != nil || !committed {
		t.Fatalf("second AddLeaf = %v, %v; want 200", committed, err)
	}
	if got := f.token.Load(); got != "" {
		t.Errorf("token header without a token = %q", got)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	_, c := newTest(t, 64<<10)
	ctx := context.Background()

	_, err := c.get(ctx, "nope")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Message != "no such endpoint" {
		t.Errorf("404 error = %#v", err)
	}
	if _, err := c.get(ctx, "huge"); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("oversized response: %v", err)
	}
	start := time.Now()
	if _, err := c.get(ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow response: %v", err)
	}
	if d := time.Since(start); d > 1900*time.Millisecond {
		t.Errorf("timeout of 1s took %v", d)
	}
	_, _, err = c.do(ctx, http.MethodGet, "add-leaf", nil, nil, http.StatusOK)
	if !errors.As(err, &he) || he.StatusCode != 405 || he.Header.Get("Allow") != "POST" {
		t.Errorf("405 error = %#v", err)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:80", "ftp://x/", "http://", ":"} {
		if _, err := New(Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"reason\nmore":            "reason",
		"bad\x00\x1b[31mcolor":    "bad[31mcolor",
		strings.Repeat("x", 1000): strings.Repeat("x", maxErrorMessage) + "...",
		"  padded  \n":            "padded",
	} {
		if got := oneLine([]byte(in)); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

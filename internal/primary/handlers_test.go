package primary

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func do(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, string(b), rsp.Header
}

func addLeafBody(t *testing.T, msg string) (string, sigsum.Leaf) {
	s := seedSigner(t, 3)
	m := sigsum.HashBytes([]byte(msg))
	l, err := sigsum.SignLeaf(s, m)
	if err != nil {
		t.Fatal(err)
	}
	req := sigsum.AddLeafRequest{Message: m, Signature: l.Signature, PublicKey: s.Public()}
	return string(req.MarshalASCII()), l
}

func TestEndpointStatusCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	e.addLeaves(5)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.addLeaves(2) // integrated but not yet signed: public endpoints must not show them
	pub := httptest.NewServer(p.PublicHandler("pfx/log"))
	t.Cleanup(pub.Close)
	internal := httptest.NewServer(p.InternalHandler("pfx/log"))
	t.Cleanup(internal.Close)
	base := pub.URL + "/pfx/log/"
	h2 := e.leaves[2].Hash().String()
	h6 := e.leaves[6].Hash().String()
	goodLeaf, _ := addLeafBody(t, "new")

	for _, c := range []struct {
		method, url, body string
		code              int
		bodyHas           string
	}{
		{"GET", base, "", 404, ""}, // the status page at the base is the node's (internal/node)
		{"GET", base + "get-tree-head", "", 200, "size=5\n"},
		{"POST", base + "get-tree-head", "", 405, ""},
		{"GET", base + "get-inclusion-proof/5/" + h2, "", 200, "leaf_index=2\n"},
		{"GET", base + "get-inclusion-proof/5/" + strings.ToUpper(h2), "", 200, "leaf_index=2\n"},
		{"GET", base + "get-inclusion-proof/7/" + h6, "", 400, "larger than the published"},
		{"GET", base + "get-inclusion-proof/5/" + h6, "", 404, "not in the tree"},
		{"GET", base + "get-inclusion-proof/1/" + h2, "", 400, "at least 2"},
		{"GET", base + "get-inclusion-proof/05/" + h2, "", 400, "leading zero"},
		{"GET", base + "get-inclusion-proof/5/" + h2[2:], "", 400, "hex digits"},
		{"GET", base + "get-inclusion-proof/5/zz" + h2[2:], "", 400, "not hex"},
		{"GET", base + "get-inclusion-proof/9223372036854775808/" + h2, "", 400, "2^63-1"},
		{"GET", base + "get-inclusion-proof/-1/" + h2, "", 400, "non-digit"},
		{"GET", base + "get-inclusion-proof/5", "", 404, ""},
		{"GET", base + "get-consistency-proof/2/5", "", 200, "node_hash="},
		{"GET", base + "get-consistency-proof/0/5", "", 400, "0 < old < new"},
		{"GET", base + "get-consistency-proof/5/5", "", 400, "0 < old < new"},
		{"GET", base + "get-consistency-proof/3/2", "", 400, "0 < old < new"},
		{"GET", base + "get-consistency-proof/2/6", "", 400, "larger than the published"},
		{"GET", base + "get-leaves/0/5", "", 200, "leaf="},
		{"GET", base + "get-leaves/4/100", "", 200, "leaf="},
		{"GET", base + "get-leaves/5/6", "", 400, "not below the published"},
		{"GET", base + "get-leaves/3/3", "", 400, "start < end"},
		{"GET", base + "get-leaves/x/3", "", 400, "non-digit"},
		{"DELETE", base + "get-leaves/0/1", "", 405, ""},
		{"GET", base + "add-leaf", "", 405, ""},
		{"POST", base + "add-leaf", "", 400, "missing key"},
		{"POST", base + "add-leaf", strings.Repeat("x", 5000), 400, "larger than"},
		{"POST", base + "add-leaf", strings.Replace(goodLeaf, "message=", "message=00", 1)[:len(goodLeaf)], 400, ""},
		{"POST", base + "add-leaf", goodLeaf + "extra=1\n", 400, "trailing"},
		{"GET", pub.URL + "/get-tree-head", "", 404, ""},
		{"GET", internal.URL + "/get-leaves/0/100", "", 200, "leaf="},
		{"GET", internal.URL + "/pfx/log/get-leaves/5/7", "", 200, "leaf="},
		{"GET", internal.URL + "/get-leaves/7/8", "", 404, "at end of tree"},
		{"GET", internal.URL + "/get-leaves/8/9", "", 400, "beyond"},
		{"GET", internal.URL + "/get-leaves/2/1", "", 400, "start < end"},
		{"POST", internal.URL + "/get-leaves/0/1", "", 405, ""},
	} {
		code, body, hdr := do(t, c.method, c.url, c.body)
		name := c.method + " " + strings.TrimPrefix(strings.TrimPrefix(c.url, pub.URL), internal.URL)
		if code != c.code {
			t.Errorf("%s: %d %q, want %d", name, code, body, c.code)
			continue
		}
		if !strings.Contains(body, c.bodyHas) {
			t.Errorf("%s: body %q lacks %q", name, body, c.bodyHas)
		}
		if code >= 400 && strings.Count(body, "\n") > 1 {
			t.Errorf("%s: error body %q is not one line", name, body)
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", name)
		}
		if code == 500 {
			t.Errorf("%s: 500", name)
		}
	}

	// Leaves and proofs served verify against the published head.
	c, _ := client.New(client.Config{URL: base})
	ctx := context.Background()
	cth, err := c.GetTreeHead(ctx)
	if err != nil || !cth.Verify(e.signer.Public()) {
		t.Fatalf("get-tree-head: %v", err)
	}
	leaves, err := c.GetLeaves(ctx, 0, 100)
	if err != nil || len(leaves) != 5 {
		t.Fatalf("get-leaves: %d, %v", len(leaves), err)
	}
	for i := range leaves {
		if leaves[i] != e.leaves[i] {
			t.Errorf("leaf %d differs", i)
		}
		proof, err := c.GetInclusionProof(ctx, 5, leaves[i].Hash())
		if err != nil || proof.Verify(leaves[i].Hash(), &cth.TreeHead) != nil {
			t.Errorf("inclusion proof of leaf %d: %v", i, err)
		}
	}
	for old := uint64(1); old < 5; old++ {
		proof, err := c.GetConsistencyProof(ctx, old, 5)
		oldHead := e.head(int(old))
		if err != nil || proof.Verify(&oldHead, &cth.TreeHead) != nil {
			t.Errorf("consistency proof %d→5: %v", old, err)
		}
	}
}

func TestMaxRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p, err := func() (*Primary, error) {
		WriteStartupFile(e.sthFile(), StartupEmpty)
		return New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), MaxRange: 3, Logger: quietLogger()})
	}()
	if err != nil {
		t.Fatal(err)
	}
	e.addLeaves(5)
	p.Rotate(context.Background())
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	c, _ := client.New(client.Config{URL: srv.URL})
	leaves, err := c.GetLeaves(context.Background(), 1, 5)
	if err != nil || len(leaves) != 3 || leaves[0] != e.leaves[1] {
		t.Fatalf("get-leaves with max-range 3: %d leaves, %v", len(leaves), err)
	}
}

// stalledLog is a Log whose GetLeaves, once stall is set, signals entered and waits for release: it holds the
// signed tree's reading of newly signed leaves (Advance) midway.
type stalledLog struct {
	engine.Log
	stall   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (l *stalledLog) GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error) {
	if l.stall.Load() {
		select {
		case l.entered <- struct{}{}:
		default:
		}
		select {
		case <-l.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.Log.GetLeaves(ctx, start, count)
}

// A submitter's retry of a queued leaf is 200 as soon as a signed head covers it, not once the primary has read
// the newly signed leaves into memory (which takes tens of milliseconds for a busy interval's leaves).
func TestAddLeafCommittedBeforeTheTreeAdvances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := &stalledLog{Log: e.log, entered: make(chan struct{}, 1), release: make(chan struct{})}
	if err := WriteStartupFile(e.sthFile(), StartupEmpty); err != nil {
		t.Fatal(err)
	}
	p, err := New(context.Background(), Config{Log: log, Signer: e.signer, STHFile: e.sthFile(),
		Interval: time.Hour, Timeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	url := srv.URL + "/add-leaf"
	body, leaf := addLeafBody(t, "retried")
	if code, b, _ := do(t, "POST", url, body); code != 202 {
		t.Fatalf("new leaf: %d %q, want 202", code, b)
	}
	e.leaves = append(e.leaves, leaf)
	e.waitIntegrated()

	log.stall.Store(true)
	rotated := make(chan error, 1)
	go func() { rotated <- p.Rotate(context.Background()) }()
	<-log.entered // signed and published; the tree is reading the new leaf
	code, b, _ := do(t, "POST", url, body)
	close(log.release)
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	if code != 200 {
		t.Fatalf("retry once signed, before the tree read the leaf: %d %q, want 200", code, b)
	}
	if p.Signed().Size != 1 || p.Published().Size != 1 {
		t.Fatalf("signed %d, published %d, want 1", p.Signed().Size, p.Published().Size)
	}
}

func TestAddLeaf(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	url := srv.URL + "/add-leaf"

	body, leaf := addLeafBody(t, "hello")
	for i := 0; i < 3; i++ {
		if code, b, _ := do(t, "POST", url, body); code != 202 {
			t.Fatalf("submission %d before commit: %d %q, want 202", i, code, b)
		}
	}
	e.leaves = append(e.leaves, leaf)
	e.waitIntegrated()
	if code, _, _ := do(t, "POST", url, body); code != 202 {
		t.Fatalf("integrated but not signed: %d, want 202", code)
	}
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(t, "POST", url, body); code != 200 {
		t.Fatalf("after commit: %d, want 200", code)
	}
	if got := p.Signed().Size; got != 1 {
		t.Fatalf("resubmissions made %d leaves, want 1", got)
	}
	// A committed leaf the primary no longer remembers (evicted, or older than a start's preload) is found in
	// storage: still 200, still one leaf.
	forgetful, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(),
		Logger: quietLogger(), Committed: committed.Limits{MaxHold: -1, MaxIndex: -1}})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(forgetful.PublicHandler(""))
	t.Cleanup(srv2.Close)
	url = srv2.URL + "/add-leaf"
	if code, _, _ := do(t, "POST", url, body); code != 200 {
		t.Fatalf("committed leaf missing from memory: %d, want 200", code)
	}
	if th, _ := e.log.TreeHead(context.Background()); th.Size != 1 {
		t.Fatalf("tree grew to %d", th.Size)
	}

	// A forged signature is 403, for a new message or the signature of another message.
	req, err := sigsum.ParseAddLeafRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	forged := req
	forged.Signature[0] ^= 1
	if code, b, _ := do(t, "POST", url, string(forged.MarshalASCII())); code != 403 {
		t.Errorf("forged signature: %d %q, want 403", code, b)
	}
	mixed := req
	mixed.Message = sigsum.HashBytes([]byte("other"))
	if code, _, _ := do(t, "POST", url, string(mixed.MarshalASCII())); code != 403 {
		t.Errorf("signature of another message: %d, want 403", code)
	}
	if got, _ := e.log.TreeHead(context.Background()); got.Size != 1 {
		t.Errorf("rejected submissions changed the tree to size %d", got.Size)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/torchwood"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// fakeLog is a minimal Sigsum log in memory: a new leaf answers 202 and is appended at once; the next
// submission answers 200. The forge* fields make it lie in one way each.
type fakeLog struct {
	t      *testing.T
	signer sigsum.Signer
	mu     sync.Mutex
	tree   *testonly.Tree
	leaves []sigsum.Leaf
	index  map[sigsum.Hash]int

	forgeHeadSig   bool // get-tree-head signature by another key
	forgeLeafSig   bool // get-leaves returns leaf 0 with a flipped signature bit
	forgeInclusion bool // inclusion proofs with a wrong node
	forgeCommitted bool // add-leaf answers 200 for a leaf it never added
	forgeTile      bool // tiles and entry bundles with their last bit flipped
}

func newFakeLog(t *testing.T) (*fakeLog, *httptest.Server) {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLog{t: t, signer: s, tree: testonly.New(rfc6962.DefaultHasher), index: map[sigsum.Hash]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeLog) head() sigsum.CosignedTreeHead {
	th := sigsum.TreeHead{Size: f.tree.Size(), RootHash: sigsum.Hash(f.tree.Hash())}
	signer := f.signer
	if f.forgeHeadSig {
		signer, _ = sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)))
	}
	sth, err := th.Sign(signer)
	if err != nil {
		f.t.Error(err)
	}
	return sigsum.CosignedTreeHead{SignedTreeHead: sth}
}

func (f *fakeLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	num := func(i int) uint64 {
		n, _ := strconv.ParseUint(parts[i], 10, 64)
		return n
	}
	switch {
	case parts[0] == "add-leaf":
		body, _ := io.ReadAll(r.Body)
		req, err := sigsum.ParseAddLeafRequest(body)
		if err != nil || !req.Verify() {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		leaf := req.Leaf()
		h := leaf.Hash()
		if _, ok := f.index[h]; ok || f.forgeCommitted {
			w.WriteHeader(http.StatusOK)
			return
		}
		f.index[h] = len(f.leaves)
		f.leaves = append(f.leaves, leaf)
		f.tree.Append(h[:])
		w.WriteHeader(http.StatusAccepted)
	case parts[0] == "tile":
		// Level-0 hash tiles and entry bundles only: what the tile modes ask for.
		tile, err := torchwood.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
		first := int(tile.N) * torchwood.TileWidth
		if err != nil || tile.L > 0 || first+tile.W > len(f.leaves) {
			http.Error(w, "no such tile", http.StatusNotFound)
			return
		}
		var body []byte
		for _, l := range f.leaves[first : first+tile.W] {
			if tile.L == 0 {
				h := l.Hash()
				body = append(body, h[:]...)
			} else {
				body, _ = torchwood.AppendTileEntry(body, l.MarshalBinary())
			}
		}
		if f.forgeTile {
			body[len(body)-1] ^= 1
		}
		w.Write(body)
	case parts[0] == "get-tree-head":
		cth := f.head()
		w.Write(cth.MarshalASCII())
	case parts[0] == "get-leaves" && len(parts) == 3:
		start, end := num(1), min(num(2), uint64(len(f.leaves)))
		if start >= end {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		out := append([]sigsum.Leaf(nil), f.leaves[start:end]...)
		if f.forgeLeafSig && start == 0 {
			out[0].Signature[0] ^= 1
		}
		w.Write(sigsum.MarshalLeavesASCII(out))
	case parts[0] == "get-inclusion-proof" && len(parts) == 3:
		h, _ := sigsum.ParseHash(parts[2])
		i, ok := f.index[h]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		path, err := f.tree.InclusionProof(uint64(i), num(1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := sigsum.InclusionProof{LeafIndex: uint64(i)}
		for _, n := range path {
			p.Path = append(p.Path, sigsum.Hash(n))
		}
		if f.forgeInclusion {
			p.Path[0][0] ^= 1
		}
		w.Write(p.MarshalASCII())
	case parts[0] == "get-consistency-proof" && len(parts) == 3:
		path, err := f.tree.ConsistencyProof(num(1), num(2))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p sigsum.ConsistencyProof
		for _, n := range path {
			p.Path = append(p.Path, sigsum.Hash(n))
		}
		w.Write(p.MarshalASCII())
	default:
		http.NotFound(w, r)
	}
}

// testConfig is a small, fast configuration against url.
func testConfig(t *testing.T, url string, pub sigsum.PublicKey) Config {
	c, err := client.New(client.Config{URL: url, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return Config{Client: c, LogKey: pub, Concurrency: 4, Duration: 300 * time.Millisecond, Drain: 2 * time.Second,
		Retry: 20 * time.Millisecond, MaxLeaves: 50, MaxRequests: 200, Keys: 3, KeySeed: "test", KnownLeaves: 5,
		Range: 16, MaxSetupLeaves: 1000, VerifySample: 10, Presign: 20}
}

// TestVerifyLeafSignaturesStride: setup checks the signature of every stride-th leaf, from the first: a bad one
// among them is an error, one between them is not looked at.
func TestVerifyLeafSignaturesStride(t *testing.T) {
	b := NewBench(Config{Keys: 3, KeySeed: "test"})
	leaves := make([]sigsum.Leaf, 12)
	for i, r := range b.presign(len(leaves)) {
		leaves[i] = r.Leaf()
	}
	for _, tc := range []struct {
		bad, stride int
		errors      int64
	}{
		{-1, 1, 0}, {5, 1, 1}, {0, 3, 1}, {9, 3, 1}, {10, 3, 0}, {11, 5, 0},
	} {
		ls := append([]sigsum.Leaf(nil), leaves...)
		if tc.bad >= 0 {
			ls[tc.bad].Signature[0] ^= 1
		}
		var ec errorCounter
		b.verifyLeafSignatures(ls, tc.stride, &ec)
		if got := ec.n.Load(); got != tc.errors {
			t.Errorf("bad leaf %d, stride %d: %d errors, want %d", tc.bad, tc.stride, got, tc.errors)
		}
	}
}

// TestPresign: presigned requests are valid add-leaf requests of the bench's submitters, all different.
func TestPresign(t *testing.T) {
	b := NewBench(Config{Keys: 3, KeySeed: "test"})
	reqs := b.presign(9)
	seen := make(map[sigsum.Hash]bool)
	for i, r := range reqs {
		if !r.Verify() {
			t.Errorf("request %d: the signature does not verify", i)
		}
		if r.PublicKey != b.submitters[i%3].Public() {
			t.Errorf("request %d is not signed by submitter %d", i, i%3)
		}
		leaf := r.Leaf()
		h := leaf.Hash()
		if seen[h] {
			t.Errorf("request %d repeats a leaf", i)
		}
		seen[h] = true
	}
}

func TestModesAgainstHonestLog(t *testing.T) {
	f, srv := newFakeLog(t)
	b := NewBench(testConfig(t, srv.URL, f.signer.Public()))
	ctx := context.Background()

	r := b.Run(ctx, ModeAddLeaf)
	if r.Errors != 0 || r.Accepted != 50 || r.Committed != 50 || r.Uncommitted != 0 || len(r.CommitLatencies) != 50 {
		t.Fatalf("add-leaf: %s", r.Line())
	}
	if r.TreeSize != 50 {
		t.Errorf("add-leaf tree size: %s", r.Line())
	}
	// Each leaf took at least two POSTs: 202, then 200 one retry interval later.
	if len(r.Latencies) < 100 || r.CommitLatencies[0] < b.cfg.Retry {
		t.Errorf("add-leaf did not retry as a client does: %s", r.Line())
	}
	for _, m := range []string{ModeAddKnown, ModeTreeHead, ModeLeaves, ModeInclusion, ModeConsistency, ModeTile, ModeEntries} {
		r := b.Run(ctx, m)
		if r.Errors != 0 || len(r.Latencies) == 0 || len(r.Latencies) > 200 {
			t.Errorf("%s: %s", m, r.Line())
		}
	}
}

func TestMaxSetupLeavesUsesConsistencyProof(t *testing.T) {
	f, srv := newFakeLog(t)
	cfg := testConfig(t, srv.URL, f.signer.Public())
	cfg.MaxSetupLeaves = 7
	b := NewBench(cfg)
	if r := b.Run(context.Background(), ModeAddLeaf); r.Errors != 0 {
		t.Fatalf("add-leaf: %s", r.Line())
	}
	for _, m := range []string{ModeLeaves, ModeInclusion, ModeConsistency} {
		if r := b.Run(context.Background(), m); r.Errors != 0 || len(r.Latencies) == 0 {
			t.Errorf("%s on a prefix: %s", m, r.Line())
		}
	}
}

// A lying log is caught: every forgery counts as an error.
func TestForgeriesCountAsErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		forge func(*fakeLog)
		mode  string
	}{
		{"head signature", func(f *fakeLog) { f.forgeHeadSig = true }, ModeTreeHead},
		{"head signature in add-leaf check", func(f *fakeLog) { f.forgeHeadSig = true }, ModeAddLeaf},
		{"leaf signature", func(f *fakeLog) { f.forgeLeafSig = true }, ModeLeaves},
		{"inclusion proof", func(f *fakeLog) { f.forgeInclusion = true }, ModeInclusion},
		{"hash tile", func(f *fakeLog) { f.forgeTile = true }, ModeTile},
		{"entry bundle", func(f *fakeLog) { f.forgeTile = true }, ModeEntries},
		{"200 for a leaf not in the log", func(f *fakeLog) { f.forgeCommitted = true }, ModeAddLeaf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeLog(t)
			b := NewBench(testConfig(t, srv.URL, f.signer.Public()))
			if tc.mode != ModeAddLeaf {
				if r := b.Run(context.Background(), ModeAddLeaf); r.Errors != 0 {
					t.Fatalf("add-leaf: %s", r.Line())
				}
			}
			f.mu.Lock()
			tc.forge(f)
			f.mu.Unlock()
			var stderr bytes.Buffer
			b.cfg.Stderr = &stderr
			if r := b.Run(context.Background(), tc.mode); r.Errors == 0 {
				t.Errorf("%s with a forged %s: no error: %s", tc.mode, tc.name, r.Line())
			}
			if !strings.Contains(stderr.String(), "error:") {
				t.Errorf("no error described on stderr: %q", stderr.String())
			}
		})
	}
}

// A log that never answers 200 leaves every leaf uncommitted, and the run still ends by itself.
func TestUncommittedLeavesAreBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	cfg := testConfig(t, srv.URL, sigsum.PublicKey{})
	cfg.Drain = 200 * time.Millisecond
	start := time.Now()
	r := NewBench(cfg).Run(context.Background(), ModeAddLeaf)
	if time.Since(start) > 10*time.Second {
		t.Errorf("run took %v", time.Since(start))
	}
	if r.Accepted != 50 || r.Committed != 0 || r.Uncommitted != 50 || r.Errors == 0 {
		t.Errorf("never-committing log: %s", r.Line())
	}
}

// TestProbes: probe leaves go beside the load, each re-posted every ProbeRetry until 200, and their commit
// latencies are reported apart from the load's.
func TestProbes(t *testing.T) {
	f, srv := newFakeLog(t)
	cfg := testConfig(t, srv.URL, f.signer.Public())
	cfg.Probes, cfg.ProbeRetry = 2, 5*time.Millisecond
	r := NewBench(cfg).Run(context.Background(), ModeAddLeaf)
	if r.Errors != 0 || r.Committed != 50 || len(r.CommitLatencies) != 50 {
		t.Fatalf("add-leaf with probes: %s", r.Line())
	}
	if len(r.ProbeLatencies) == 0 {
		t.Fatalf("no probe leaf committed while the load ran: %s", r.Line())
	}
	// The fake log answers a new leaf 202 first: each probe leaf took a re-post.
	for _, d := range r.ProbeLatencies {
		if d < cfg.ProbeRetry {
			t.Errorf("probe commit latency %v, under one probe retry (%v)", d, cfg.ProbeRetry)
		}
	}
	if !strings.Contains(r.Line(), fmt.Sprintf("probe_commits=%d ", len(r.ProbeLatencies))) {
		t.Errorf("line lacks the probes: %s", r.Line())
	}
}

func TestResultLine(t *testing.T) {
	r := &Result{Mode: "get-tree-head", Concurrency: 8, Elapsed: 2 * time.Second, Errors: 3, TreeSize: 9}
	for i := 1; i <= 100; i++ {
		r.Latencies = append(r.Latencies, time.Duration(i)*time.Millisecond)
	}
	want := "mode=get-tree-head c=8 secs=2.00 requests=100 rps=50.0 p50_ms=50.00 p99_ms=99.00 accepted=0 " +
		"accepted_per_s=0 committed=0 committed_per_s=0 uncommitted=0 commit_p50_ms=0.00 commit_p95_ms=0.00 " +
		"commit_p99_ms=0.00 probe_commits=0 probe_commit_p50_ms=0.00 probe_commit_p95_ms=0.00 tree_size=9 errors=3"
	if got := r.Line(); got != want {
		t.Errorf("Line()\n got %s\nwant %s", got, want)
	}
}

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "log.pub")
	pub := sigsum.PublicKey{1}
	if err := key.WritePublicKeyFile(keyFile, pub, "log"); err != nil {
		t.Fatal(err)
	}
	o, err := parseArgs([]string{"-log-key", keyFile, "-log-url", "http://[::1]:1234/prefix", "-mode",
		"add-leaf, inclusion", "-c", "64"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.LogKey != pub || o.cfg.Concurrency != 64 || fmt.Sprint(o.modes) != "[add-leaf inclusion]" {
		t.Errorf("parsed %+v %v", o.cfg, o.modes)
	}
	for _, bad := range [][]string{
		{"-log-key", keyFile, "-log-url", "http://example.org"},
		{"-log-key", keyFile, "-log-url", "http://10.0.0.1:6965"},
		{"-log-key", keyFile, "-log-url", "http://localhost.example.org"},
		{"-log-key", keyFile, "-mode", "get-everything"},
		{"-log-key", keyFile, "-c", "0"},
		{"-log-key", keyFile, "-duration", "0s"},
		{"-log-key", keyFile, "-leaves", "0"},
		{"-log-key", filepath.Join(dir, "missing")},
		{},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:6965", "http://127.1.2.3/x", "http://localhost:80", "https://[::1]"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("checkLoopback(%q): %v", ok, err)
		}
	}
}

func TestRunPrintsOneLinePerMode(t *testing.T) {
	f, srv := newFakeLog(t)
	keyFile := filepath.Join(t.TempDir(), "log.pub")
	if err := key.WritePublicKeyFile(keyFile, f.signer.Public(), "log"); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-log-url", srv.URL, "-log-key", keyFile, "-mode", "add-leaf,get-tree-head",
		"-c", "2", "-duration", "200ms", "-retry", "20ms", "-leaves", "10", "-requests", "20"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "mode=add-leaf c=2 ") ||
		!strings.HasPrefix(lines[1], "mode=get-tree-head c=2 ") || !strings.HasSuffix(lines[1], " errors=0") {
		t.Errorf("output %q, stderr %q", stdout.String(), stderr.String())
	}
}

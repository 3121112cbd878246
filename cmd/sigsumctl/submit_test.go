package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/proof"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// testLog is an in-process Sigsum log for the verbs' tests: add-leaf answers 202 for a new leaf and 200 once the
// leaf is in the published head, which grows to every leaf held when a pending leaf is resubmitted.
type testLog struct {
	t       *testing.T
	key     *sigsum.Ed25519Signer
	srv     *httptest.Server
	mu      sync.Mutex
	leaves  []sigsum.Leaf
	pending []sigsum.Leaf
	size    int
	// addStatus, when non-empty, gives the status of the next add-leaf answers (0: normal).
	addStatus []int
	// tokens records the sigsum-token headers received.
	tokens []string
	// never keeps leaves pending forever.
	never bool
}

func newTestLog(t *testing.T) *testLog {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{11}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{t: t, key: s}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *testLog) hashes(n int) []sigsum.Hash {
	hs := make([]sigsum.Hash, n)
	for i := range hs {
		hs[i] = l.leaves[i].Hash()
	}
	return hs
}

// auditPath is RFC 6962 §2.1.1 PATH(m, D[n]).
func auditPath(hs []sigsum.Hash, m int) []sigsum.Hash {
	if len(hs) <= 1 {
		return nil
	}
	k := 1
	for k<<1 < len(hs) {
		k <<= 1
	}
	if m < k {
		return append(auditPath(hs[:k], m), sigsum.RootHash(hs[k:]))
	}
	return append(auditPath(hs[k:], m-k), sigsum.RootHash(hs[:k]))
}

// consistency is RFC 6962 §2.1.2 SUBPROOF(m, D[n], complete).
func consistency(hs []sigsum.Hash, m int, complete bool) []sigsum.Hash {
	if m == len(hs) {
		if complete {
			return nil
		}
		return []sigsum.Hash{sigsum.RootHash(hs)}
	}
	k := 1
	for k<<1 < len(hs) {
		k <<= 1
	}
	if m <= k {
		return append(consistency(hs[:k], m, complete), sigsum.RootHash(hs[k:]))
	}
	return append(consistency(hs[k:], m-k, false), sigsum.RootHash(hs[:k]))
}

func (l *testLog) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	num := func(i int) int {
		if i >= len(parts) {
			return -1
		}
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return -1
		}
		return n
	}
	switch parts[0] {
	case "add-leaf":
		if tok := r.Header.Get(sigsum.SubmitTokenHeader); tok != "" {
			l.tokens = append(l.tokens, tok)
		}
		if len(l.addStatus) > 0 {
			code := l.addStatus[0]
			l.addStatus = l.addStatus[1:]
			if code != 0 {
				http.Error(w, "test says "+strconv.Itoa(code), code)
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		req, err := sigsum.ParseAddLeafRequest(body)
		if err != nil || !req.Verify() {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		leaf := req.Leaf()
		for i := range l.leaves[:l.size] {
			if l.leaves[i] == leaf {
				return // 200
			}
		}
		for i := range l.leaves {
			if l.leaves[i] == leaf { // a retry: publish everything and answer 200, unless never
				if l.never {
					w.WriteHeader(http.StatusAccepted)
				} else {
					l.size = len(l.leaves)
				}
				return
			}
		}
		if l.never {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		l.leaves = append(l.leaves, leaf)
		w.WriteHeader(http.StatusAccepted)
	case "get-tree-head":
		th := sigsum.TreeHead{Size: uint64(l.size), RootHash: sigsum.RootHash(l.hashes(l.size))}
		sth, err := th.Sign(l.key)
		if err != nil {
			l.t.Error(err)
		}
		cth := sigsum.CosignedTreeHead{SignedTreeHead: sth}
		w.Write(cth.MarshalASCII())
	case "get-inclusion-proof":
		size := num(1)
		h, err := sigsum.ParseHash(parts[min(2, len(parts)-1)])
		if size < 2 || size > l.size || err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		hs := l.hashes(size)
		for i := range hs {
			if hs[i] == h {
				p := sigsum.InclusionProof{LeafIndex: uint64(i), Path: auditPath(hs, i)}
				w.Write(p.MarshalASCII())
				return
			}
		}
		http.Error(w, "not found", http.StatusNotFound)
	case "get-consistency-proof":
		old, new := num(1), num(2)
		if old <= 0 || new <= old || new > l.size {
			http.Error(w, "bad sizes", http.StatusBadRequest)
			return
		}
		p := sigsum.ConsistencyProof{Path: consistency(l.hashes(new), old, true)}
		w.Write(p.MarshalASCII())
	case "get-leaves":
		start, end := num(1), num(2)
		if start < 0 || end <= start || start >= l.size {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		w.Write(sigsum.MarshalLeavesASCII(l.leaves[start:min(end, l.size)]))
	default:
		http.NotFound(w, r)
	}
}

func (l *testLog) set(f func(*testLog)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

// env is a directory with a submitter key pair, a policy for the test log, and helpers to run verbs.
type env struct {
	t   *testing.T
	dir string
	log *testLog
	key string // private key file; the public key is key + ".pub"
	pol string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), log: newTestLog(t)}
	e.key = filepath.Join(e.dir, "submitter")
	if _, err := writeKeyPair(e.key, "test"); err != nil {
		t.Fatal(err)
	}
	e.pol = e.write("policy", fmt.Sprintf("log %s %s\nquorum none\n", e.log.key.Public(), e.log.srv.URL))
	return e
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run runs sigsumctl with args and returns stdout, stderr and the exit status.
func (e *env) run(args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func (e *env) ok(args ...string) string {
	e.t.Helper()
	stdout, stderr, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("sigsumctl %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

func (e *env) fails(want string, args ...string) {
	e.t.Helper()
	_, stderr, code := e.run(args...)
	if code == 0 || !strings.Contains(stderr, want) {
		e.t.Fatalf("sigsumctl %s: exit %d, stderr %q, want failure with %q", strings.Join(args, " "), code, stderr, want)
	}
}

func (e *env) submit(args ...string) []string {
	return append([]string{"submit", "-key-file", e.key, "-policy", e.pol, "-poll", "10ms", "-timeout", "20s"}, args...)
}

func TestSubmitAndVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	one := e.write("one", "first\n")
	e.ok(e.submit(one)...)
	b, err := os.ReadFile(one + ".proof")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := proof.Parse(b); err != nil || p.TreeHead.Size != 1 {
		t.Fatalf("size 1 proof: %v\n%s", err, b)
	}
	var files []string
	for i := 0; i < 5; i++ {
		files = append(files, e.write(fmt.Sprint("f", i), fmt.Sprint("file ", i)))
	}
	out := e.ok(e.submit(files...)...)
	if strings.Count(out, ".proof: leaf index") != 5 {
		t.Errorf("submit output:\n%s", out)
	}
	out = e.ok(append([]string{"verify", "-key-file", e.key + ".pub", "-policy", e.pol}, append(files, one)...)...)
	if strings.Count(out, ": ok: leaf index") != 6 {
		t.Errorf("verify output:\n%s", out)
	}
	// One bad file among several: each failure on its own line, then a summary.
	if err := os.WriteFile(files[2], []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := e.run(append([]string{"verify", "-key-file", e.key + ".pub", "-policy", e.pol}, files...)...)
	if code != 1 || !strings.Contains(stderr, files[2]+": leaf signature does not verify") || !strings.Contains(stderr, "1 of 5 proofs failed") {
		t.Errorf("verify with a changed file: exit %d, stderr %q", code, stderr)
	}
}

func TestSubmitRetriesAndToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.log.set(func(l *testLog) { l.addStatus = []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, 0} })
	tokenKey := filepath.Join(e.dir, "token")
	if _, err := writeKeyPair(tokenKey, "token"); err != nil {
		t.Fatal(err)
	}
	f := e.write("f", "data")
	e.ok(e.submit("-token-domain", "example.org", "-token-key-file", tokenKey, f)...)
	e.log.set(func(l *testLog) {
		if len(l.tokens) == 0 {
			t.Fatal("no sigsum-token received")
		}
		tok, err := sigsum.ParseSubmitToken(l.tokens[0])
		if err != nil {
			t.Fatal(err)
		}
		pub := readPub(t, tokenKey+".pub")
		if tok.Domain != "example.org" || !tok.Verify(pub, l.key.Public()) {
			t.Errorf("token %q does not verify", l.tokens[0])
		}
	})
}

func TestSubmitFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.write("f", "data")
	e.log.set(func(l *testLog) { l.addStatus = []int{http.StatusForbidden} })
	e.fails("the log refused the leaf", e.submit(f)...)
	e.log.set(func(l *testLog) { l.never = true })
	e.fails("gave up waiting for add-leaf to commit 1 of 1 leaves", e.submit("-timeout", "300ms", f)...)
	e.fails("no input files", e.submit()...)
	e.fails("-token-domain and -token-key-file go together", e.submit("-token-domain", "x.org", f)...)
	e.fails("given twice", e.submit(f, f)...)
	e.fails("-raw-hash input is neither 32 bytes nor 64 hex digits", e.submit("-raw-hash", f)...)
	e.fails("-key-file is required", "submit", "-policy", e.pol, f)
	// The log serves a head its key did not sign.
	other := e.write("policy-wrong-key", fmt.Sprintf("log %s %s\nquorum none\n", strings.Repeat("ab", 32), e.log.srv.URL))
	e.log.set(func(l *testLog) { l.never = false })
	e.fails("does not verify with the log key", "submit", "-key-file", e.key, "-policy", other, "-poll", "10ms", f)
}

func readPub(t *testing.T, path string) sigsum.PublicKey {
	t.Helper()
	var e keyFilesFlag
	if err := e.Set(path); err != nil {
		t.Fatal(err)
	}
	return e.keys[0]
}

func TestParseRawHash(t *testing.T) {
	t.Parallel()
	h := sigsum.HashBytes([]byte("x"))
	for _, c := range []struct {
		in string
		ok bool
	}{
		{string(h[:]), true},
		{h.String(), true},
		{" " + strings.ToUpper(h.String()) + "\n", true},
		{h.String()[:63], false},
		{h.String() + "00", false},
		{"", false},
	} {
		got, err := parseRawHash("in", []byte(c.in))
		if c.ok && (err != nil || got != h) || !c.ok && err == nil {
			t.Errorf("parseRawHash(%q) = %s, %v", c.in, got, err)
		}
	}
}

func TestLogChoice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.write("f", "data")
	k1, k2 := strings.Repeat("01", 32), strings.Repeat("02", 32)
	logKey := filepath.Join(e.dir, "log.pub")
	if err := os.WriteFile(logKey, []byte(e.log.key.Public().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noURL := e.write("p1", fmt.Sprintf("log %s\nquorum none\n", e.log.key.Public()))
	e.fails("add it to the policy's log line or give -log-url", e.submit("-policy", noURL, f)...)
	e.ok(e.submit("-policy", noURL, "-log-url", e.log.srv.URL, f)...)
	two := e.write("p2", fmt.Sprintf("log %s\nlog %s\nlog %s %s\nquorum none\n", k1, k2, e.log.key.Public(), e.log.srv.URL))
	e.ok(e.submit("-policy", two, f)...) // the first log with a URL
	e.fails("choose one with -log-key", e.submit("-policy", two, "-log-url", e.log.srv.URL, f)...)
	e.ok(e.submit("-policy", two, "-log-key", logKey, f)...)
	notIn := e.write("p3", fmt.Sprintf("log %s http://127.0.0.1:1\nquorum none\n", k1))
	e.fails("is not in the policy", e.submit("-policy", notIn, "-log-key", logKey, f)...)
}

// A policy the log's heads never meet (a copied example, a witness that does not know the log) fails within
// -cosign-timeout, naming the witnesses missing, after saying what it waits for.
func TestSubmitPolicyNeverMet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pol := e.write("strict", fmt.Sprintf("log %s %s\nwitness w9 %s\nwitness w8 %s\ngroup g all w9 w8\nquorum g\n",
		e.log.key.Public(), e.log.srv.URL, strings.Repeat("ab", 32), strings.Repeat("cd", 32)))
	f := e.write("f", "data")
	start := time.Now()
	_, stderr, code := e.run("submit", "-key-file", e.key, "-policy", pol, "-poll", "20ms", "-timeout", "1m",
		"-cosign-timeout", "1s", f)
	if code == 0 || !strings.Contains(stderr, "lacked the policy's quorum") || !strings.Contains(stderr, "missing w9, w8") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("gave up after %v, want about -cosign-timeout", d)
	}
	if !strings.Contains(stderr, "sigsumctl submit: waiting for a tree head the policy accepts") {
		t.Errorf("no progress line about the cosignatures:\n%s", stderr)
	}
}

package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// logBuffer is a goroutine-safe sink for the collector's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func signer(t *testing.T, seed byte) *sigsum.Ed25519Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(witnesstest.Seed(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testWitness is a witnesstest.Witness served over loopback HTTP.
type testWitness struct {
	*witnesstest.Witness
	pw    policy.Witness
	conns atomic.Int32 // TCP connections accepted: keep-alive means few
}

type witnessOpts struct {
	now       func() time.Time
	stateFile string
	logs      []sigsum.PublicKey
	prefix    string
}

func startWitness(t *testing.T, name string, seed byte, l *witnesstest.Log, o witnessOpts) *testWitness {
	t.Helper()
	s := signer(t, seed)
	logs := o.logs
	if logs == nil {
		logs = []sigsum.PublicKey{l.Public()}
	}
	w, err := witnesstest.New(witnesstest.Config{Name: name, Signer: s, StateFile: o.stateFile, Logs: logs, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWitness{Witness: w}
	var h http.Handler = w
	if o.prefix != "" {
		h = http.StripPrefix(o.prefix, w)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			tw.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tw.pw = policy.Witness{Name: name, Key: s.Public(), URL: srv.URL + o.prefix}
	return tw
}

// serve starts a loopback server with handler h and returns a policy witness for it.
func serve(t *testing.T, name string, key sigsum.PublicKey, h http.HandlerFunc) policy.Witness {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return policy.Witness{Name: name, Key: key, URL: srv.URL}
}

type collectorOpts struct {
	stateFile string
	timeout   time.Duration
	proofs    func(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
}

func newCollector(t *testing.T, l *witnesstest.Log, ws []policy.Witness, o collectorOpts) (*Collector, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if o.proofs == nil {
		o.proofs = l.Proof
	}
	c, err := New(Config{
		Witnesses: ws,
		LogKey:    l.Public(),
		Proofs:    o.proofs,
		StateFile: o.stateFile,
		Timeout:   o.timeout,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, logs
}

// wantCosigs checks that cs holds exactly one valid cosignature of sth by each of ws.
func wantCosigs(t *testing.T, l *witnesstest.Log, sth sigsum.SignedTreeHead, cs []sigsum.Cosignature, ws ...*testWitness) {
	t.Helper()
	if len(cs) != len(ws) {
		t.Fatalf("got %d cosignatures, want %d", len(cs), len(ws))
	}
	pws := make([]policy.Witness, len(ws))
	for i, w := range ws {
		pws[i] = w.pw
	}
	if got := VerifyCosignatures(l.Public(), &sth.TreeHead, pws, cs); len(got) != len(ws) {
		t.Fatalf("%d of %d cosignatures verify", len(got), len(cs))
	}
	for i := 1; i < len(cs); i++ {
		if bytes.Compare(cs[i-1].KeyHash[:], cs[i].KeyHash[:]) > 0 {
			t.Error("cosignatures not sorted by key hash")
		}
	}
}

func TestGrowingHeads(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a.example/w", 10, l, witnessOpts{})
	b := startWitness(t, "b", 11, l, witnessOpts{prefix: "/some/prefix"})
	c, logs := newCollector(t, l, []policy.Witness{a.pw, b.pw}, collectorOpts{stateFile: filepath.Join(t.TempDir(), "state")})

	// First contact with the empty tree, then growing heads with proofs.
	for _, grow := range []int{0, 1, 4, 27, 0, 100} {
		l.Append(grow)
		sth := l.Head()
		wantCosigs(t, l, sth, c.Cosign(t.Context(), sth), a, b)
		for _, w := range []*testWitness{a, b} {
			if got := c.Size(w.pw.Key.KeyHash()); got != sth.Size {
				t.Errorf("%s: collector size %d, want %d", w.pw.Name, got, sth.Size)
			}
		}
	}
	// No 409 round trips: one request per head per witness, over one kept-alive connection.
	for _, w := range []*testWitness{a, b} {
		if w.Requests() != 6 {
			t.Errorf("%s: %d requests, want 6", w.Name(), w.Requests())
		}
		if n := w.conns.Load(); n != 1 {
			t.Errorf("%s: %d connections, want 1 (keep-alive)", w.Name(), n)
		}
	}
	if s := logs.String(); s != "" {
		t.Errorf("unexpected log lines:\n%s", s)
	}
}

func TestRestartUsesPersistedState(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	state := filepath.Join(t.TempDir(), "state")
	c, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	l.Append(5)
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a)

	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s=5\n", a.pw.Key.KeyHash()); string(data) != want {
		t.Errorf("state file %q, want %q", data, want)
	}

	c2, logs := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	l.Append(4)
	before := a.Requests()
	wantCosigs(t, l, l.Head(), c2.Cosign(t.Context(), l.Head()), a)
	if n := a.Requests() - before; n != 1 {
		t.Errorf("%d requests after restart, want 1 (no 409)", n)
	}
	if s := logs.String(); s != "" {
		t.Errorf("unexpected log lines:\n%s", s)
	}
}

func TestRecoverFrom409(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	c, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	l.Append(5)
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a)

	// The collector forgets (state file lost): it sends old 0, the witness answers 409 with 5, the collector
	// re-sends from 5 with a proof.
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	c2, logs := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	l.Append(6)
	before := a.Requests()
	wantCosigs(t, l, l.Head(), c2.Cosign(t.Context(), l.Head()), a)
	if n := a.Requests() - before; n != 2 {
		t.Errorf("%d requests, want 2 (409, then the retry)", n)
	}
	if s := logs.String(); s != "" {
		t.Errorf("a recovered 409 should not be logged:\n%s", s)
	}
	// Same head again after another loss: the witness holds exactly this size, the retry has old == new.
	c3, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{})
	wantCosigs(t, l, l.Head(), c3.Cosign(t.Context(), l.Head()), a)
}

func TestWitnessAhead(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	l.Append(9)
	other, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{})
	wantCosigs(t, l, l.Head(), other.Cosign(t.Context(), l.Head()), a)

	// This collector sends an older head: the witness holds 9 > 5, nothing to do but remember 9.
	c, logs := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{})
	if cs := c.Cosign(t.Context(), l.HeadAt(5)); len(cs) != 0 {
		t.Fatalf("got %d cosignatures for a head behind the witness", len(cs))
	}
	if c.Size(a.pw.Key.KeyHash()) != 9 {
		t.Errorf("409 size not remembered: %d", c.Size(a.pw.Key.KeyHash()))
	}
	if !strings.Contains(logs.String(), "witness_size=9") {
		t.Errorf("log does not say the witness size: %s", logs)
	}
	// The next head starts from 9 directly.
	l.Append(3)
	before := a.Requests()
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a)
	if n := a.Requests() - before; n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestStateAheadOfHead(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	l.Append(4)
	state := filepath.Join(t.TempDir(), "state")
	// A state file claiming more than the tree has: the collector asks from 0 and learns the truth.
	if err := os.WriteFile(state, fmt.Appendf(nil, "%s=1000\n", a.pw.Key.KeyHash()), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a)
	if c.Size(a.pw.Key.KeyHash()) != 4 {
		t.Errorf("size %d, want 4", c.Size(a.pw.Key.KeyHash()))
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(10)
	badProof := func(ctx context.Context, o, n uint64) (sigsum.ConsistencyProof, error) {
		p, err := l.Proof(ctx, o, n)
		if err == nil && len(p.Path) > 0 {
			p.Path[0][0] ^= 1
		}
		return p, err
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T) *testWitness
		proofs func(ctx context.Context, o, n uint64) (sigsum.ConsistencyProof, error)
		want   []string // in the log line
	}{
		{"403", func(t *testing.T) *testWitness {
			w := startWitness(t, "w403", 10, l, witnessOpts{})
			w.SetFailure(http.StatusForbidden)
			return w
		}, nil, []string{"witness=w403", "status=403", "failing on purpose"}},
		{"404 unknown log", func(t *testing.T) *testWitness {
			return startWitness(t, "w404", 10, l, witnessOpts{logs: []sigsum.PublicKey{witnesstest.NewLog(2).Public()}})
		}, nil, []string{"witness=w404", "status=404", "unknown log origin"}},
		{"422 bad proof", func(t *testing.T) *testWitness {
			w := startWitness(t, "w422", 10, l, witnessOpts{})
			// The witness holds size 3, so the collector's retry needs a proof 3→10, which is corrupted.
			body := l.Request(0, 3)
			resp, err := http.Post(w.pw.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return w
		}, badProof, []string{"witness=w422", "status=422"}},
		{"500", func(t *testing.T) *testWitness {
			w := startWitness(t, "w500", 10, l, witnessOpts{})
			w.SetFailure(http.StatusInternalServerError)
			return w
		}, nil, []string{"witness=w500", "status=500"}},
		{"proof unavailable", func(t *testing.T) *testWitness {
			w := startWitness(t, "wp", 10, l, witnessOpts{})
			resp, err := http.Post(w.pw.URL+"/add-checkpoint", "text/plain", bytes.NewReader(l.Request(0, 3)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return w
		}, func(context.Context, uint64, uint64) (sigsum.ConsistencyProof, error) {
			return sigsum.ConsistencyProof{}, errors.New("tree unavailable")
		}, []string{"witness=wp", "tree unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := tt.setup(t)
			good := startWitness(t, "good", 20, l, witnessOpts{})
			c, logs := newCollector(t, l, []policy.Witness{w.pw, good.pw}, collectorOpts{proofs: tt.proofs})
			sth := l.Head()
			wantCosigs(t, l, sth, c.Cosign(t.Context(), sth), good)
			s := logs.String()
			if n := strings.Count(s, "\n"); n != 1 {
				t.Errorf("%d log lines, want 1:\n%s", n, s)
			}
			for _, want := range tt.want {
				if !strings.Contains(s, want) {
					t.Errorf("log %q does not contain %q", s, want)
				}
			}
		})
	}
}

// TestBadCosignatures serves answers that look right but must be refused.
func TestBadCosignatures(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(10)
	sth := l.Head()
	origin := sigsum.Origin(l.Public())
	ws := signer(t, 30)
	now := time.Now()
	// answer returns a handler that answers 200 with the line made by line.
	answer := func(line func() []byte) http.HandlerFunc {
		return func(rw http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			rw.Write(line())
		}
	}
	cosign := func(s sigsum.Signer, th sigsum.TreeHead, at time.Time) sigsum.Cosignature {
		c, err := th.Cosign(s, origin, uint64(at.Unix()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		line func() []byte
		want string
	}{
		{"bad signature", func() []byte {
			c := cosign(ws, sth.TreeHead, now)
			c.Signature[5] ^= 1
			return sigsum.CosignatureLine("w", ws.Public(), &c)
		}, "does not verify"},
		{"other tree head", func() []byte {
			c := cosign(ws, l.HeadAt(9).TreeHead, now)
			return sigsum.CosignatureLine("w", ws.Public(), &c)
		}, "does not verify"},
		{"wrong key id", func() []byte {
			// Signed by another key, under that key's id.
			other := signer(t, 31)
			c := cosign(other, sth.TreeHead, now)
			return sigsum.CosignatureLine("w", other.Public(), &c)
		}, "no cosignature line"},
		{"other name", func() []byte {
			c := cosign(ws, sth.TreeHead, now)
			return sigsum.CosignatureLine("not-w", ws.Public(), &c)
		}, "no cosignature line"},
		{"future timestamp", func() []byte {
			c := cosign(ws, sth.TreeHead, now.Add(time.Hour))
			return sigsum.CosignatureLine("w", ws.Public(), &c)
		}, "in the future"},
		{"ancient timestamp", func() []byte {
			c := cosign(ws, sth.TreeHead, now.Add(-48*time.Hour))
			return sigsum.CosignatureLine("w", ws.Public(), &c)
		}, "old"},
		{"garbage", func() []byte { return []byte("hello\n") }, "em dash"},
		{"huge", func() []byte { return bytes.Repeat([]byte("x"), MaxResponseBytes+1) }, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pw := serve(t, "w", ws.Public(), answer(tt.line))
			c, logs := newCollector(t, l, []policy.Witness{pw}, collectorOpts{})
			if cs := c.Cosign(t.Context(), sth); len(cs) != 0 {
				t.Fatalf("accepted %d cosignatures", len(cs))
			}
			if s := logs.String(); !strings.Contains(s, tt.want) || !strings.Contains(s, "witness=w") {
				t.Errorf("log %q does not name the witness and say %q", s, tt.want)
			}
			if c.Size(ws.Public().KeyHash()) != 0 {
				t.Error("size recorded for a refused cosignature")
			}
		})
	}

	// A good answer with skew inside the bound, among other witnesses' lines, is kept.
	t.Run("good among others", func(t *testing.T) {
		t.Parallel()
		pw := serve(t, "w", ws.Public(), answer(func() []byte {
			other := signer(t, 32)
			c1 := cosign(other, sth.TreeHead, now)
			c2 := cosign(ws, sth.TreeHead, now.Add(MaxClockSkew/2))
			return append(sigsum.CosignatureLine("x", other.Public(), &c1), sigsum.CosignatureLine("w", ws.Public(), &c2)...)
		}))
		c, _ := newCollector(t, l, []policy.Witness{pw}, collectorOpts{})
		if cs := c.Cosign(t.Context(), sth); len(cs) != 1 || cs[0].KeyHash != ws.Public().KeyHash() {
			t.Fatalf("got %+v", cs)
		}
	})
}

func TestConflictAnswers(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(10)
	ws := signer(t, 30)
	tests := []struct {
		name  string
		ctype string
		body  string
		want  string
	}{
		{"no content type", "text/plain", "3\n", "Content-Type"},
		{"no newline", "text/x.tlog.size", "3", "newline"},
		{"not a number", "text/x.tlog.size", "x\n", "409 size"},
		{"same size again", "text/x.tlog.size", "0\n", "witness holds another size"},
		{"always conflict", "text/x.tlog.size; charset=utf-8", "4\n", "witness holds another size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int32
			pw := serve(t, "w", ws.Public(), func(rw http.ResponseWriter, r *http.Request) {
				n.Add(1)
				body := tt.body
				// "always conflict": answer 4 first and then 5, so the retry also fails.
				if tt.name == "always conflict" && n.Load() > 1 {
					body = "5\n"
				}
				rw.Header().Set("Content-Type", tt.ctype)
				rw.WriteHeader(http.StatusConflict)
				io.WriteString(rw, body)
			})
			c, logs := newCollector(t, l, []policy.Witness{pw}, collectorOpts{})
			if cs := c.Cosign(t.Context(), l.Head()); len(cs) != 0 {
				t.Fatal("cosignature from a 409")
			}
			if s := logs.String(); !strings.Contains(s, tt.want) {
				t.Errorf("log %q does not contain %q", s, tt.want)
			}
			if n.Load() > 2 {
				t.Errorf("%d requests: at most one retry", n.Load())
			}
		})
	}
}

func TestHungWitness(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(3)
	release := make(chan struct{})
	hung := serve(t, "hung", signer(t, 40).Public(), func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Headers at once, then a body that never comes.
	slowBody := serve(t, "slow", signer(t, 41).Public(), func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(http.StatusOK)
		rw.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	good := startWitness(t, "good", 42, l, witnessOpts{})
	c, logs := newCollector(t, l, []policy.Witness{hung, slowBody, good.pw}, collectorOpts{timeout: 200 * time.Millisecond})
	start := time.Now()
	cs := c.Cosign(t.Context(), l.Head())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Cosign took %v with a 200ms timeout", d)
	}
	wantCosigs(t, l, l.Head(), cs, good)
	s := logs.String()
	for _, want := range []string{"witness=hung", "witness=slow"} {
		if !strings.Contains(s, want) {
			t.Errorf("log does not mention %s:\n%s", want, s)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	c, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if cs := c.Cosign(ctx, l.Head()); len(cs) != 0 {
		t.Errorf("got cosignatures with a cancelled context")
	}
}

func TestUnsignedHead(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	c, logs := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{})
	sth := l.Head()
	sth.Signature[0] ^= 1
	if cs := c.Cosign(t.Context(), sth); len(cs) != 0 || a.Requests() != 0 {
		t.Errorf("sent a head the log did not sign")
	}
	if !strings.Contains(logs.String(), "not signed") {
		t.Errorf("log: %s", logs)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	k1, k2 := signer(t, 1).Public(), signer(t, 2).Public()
	base := Config{LogKey: l.Public(), Proofs: l.Proof, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bad := []struct {
		name string
		mod  func(*Config)
	}{
		{"no proofs", func(c *Config) { c.Proofs = nil }},
		{"duplicate key", func(c *Config) {
			c.Witnesses = []policy.Witness{{Name: "a", Key: k1, URL: "http://127.0.0.1:1"}, {Name: "b", Key: k1, URL: "http://127.0.0.1:2"}}
		}},
		{"bad url", func(c *Config) { c.Witnesses = []policy.Witness{{Name: "a", Key: k1, URL: "ftp://x"}} }},
		{"bad state file", func(c *Config) {
			c.StateFile = filepath.Join(t.TempDir(), "state")
			os.WriteFile(c.StateFile, []byte("zz=1\n"), 0o644)
		}},
		{"bad state size", func(c *Config) {
			c.StateFile = filepath.Join(t.TempDir(), "state")
			os.WriteFile(c.StateFile, fmt.Appendf(nil, "%s=-1\n", k1.KeyHash()), 0o644)
		}},
	}
	for _, tt := range bad {
		cfg := base
		tt.mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	// Witnesses without a URL are skipped, not refused.
	cfg := base
	cfg.Witnesses = []policy.Witness{{Name: "a", Key: k1, URL: ""}, {Name: "b", Key: k2, URL: "http://127.0.0.1:1/"}}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.witnesses) != 1 || c.witnesses[0].Name != "b" {
		t.Errorf("witnesses %+v", c.witnesses)
	}
}

func TestConcurrentCosign(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(20)
	a := startWitness(t, "a", 10, l, witnessOpts{})
	b := startWitness(t, "b", 11, l, witnessOpts{})
	c, _ := newCollector(t, l, []policy.Witness{a.pw, b.pw}, collectorOpts{stateFile: filepath.Join(t.TempDir(), "state")})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { c.Cosign(t.Context(), l.HeadAt(uint64(10+i))) })
	}
	wg.Wait()
	// Whatever the interleaving, a final round converges.
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a, b)
}

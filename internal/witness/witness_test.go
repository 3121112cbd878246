package witness

import (
	"bytes"
	"cmp"
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

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/sigsumd/sigsumd/internal/metrics"
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
	// mldsa, if set, makes the witness cosign with ML-DSA-44 too, and the policy name its ML-DSA key.
	mldsa *mldsa44.PrivateKey
}

func startWitness(t *testing.T, name string, seed byte, l *witnesstest.Log, o witnessOpts) *testWitness {
	t.Helper()
	s := signer(t, seed)
	logs := o.logs
	if logs == nil {
		logs = []sigsum.PublicKey{l.Public()}
	}
	w, err := witnesstest.New(witnesstest.Config{Name: name, Signer: s, StateFile: o.stateFile, Logs: logs, Now: o.now, MLDSA: o.mldsa})
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
	if o.mldsa != nil {
		tw.pw.Key, tw.pw.MLDSA = sigsum.PublicKey{}, mldsaPublic(o.mldsa)
	}
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
	// minInterval is Config.MinInterval; zero here means no limit (most tests send rounds back to back).
	minInterval time.Duration
	proofs      func(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
}

func newCollector(t *testing.T, l *witnesstest.Log, ws []policy.Witness, o collectorOpts) (*Collector, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if o.proofs == nil {
		o.proofs = l.Proof
	}
	c, err := New(Config{
		Witnesses:   ws,
		LogKey:      l.Public(),
		Proofs:      o.proofs,
		StateFile:   o.stateFile,
		Timeout:     o.timeout,
		MinInterval: cmp.Or(o.minInterval, -1),
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the test's temporary directories go
	return c, logs
}

// wantCosigs checks that cs holds exactly one valid cosignature of sth by each of ws, each with the note line the
// witness signed under its own name.
func wantCosigs(t *testing.T, l *witnesstest.Log, sth sigsum.SignedTreeHead, cosigned []Cosigned, ws ...*testWitness) {
	t.Helper()
	if len(cosigned) != len(ws) {
		t.Fatalf("got %d cosignatures, want %d", len(cosigned), len(ws))
	}
	cs := Cosignatures(cosigned)
	pws := make([]policy.Witness, len(ws))
	byHash := make(map[sigsum.Hash]*testWitness)
	for i, w := range ws {
		pws[i] = w.pw
		byHash[w.pw.Key.KeyHash()] = w
	}
	if got := VerifyCosignatures(l.Public(), &sth.TreeHead, pws, cs); len(got) != len(ws) {
		t.Fatalf("%d of %d cosignatures verify", len(got), len(cs))
	}
	for _, c := range cosigned {
		w := byHash[c.KeyHash]
		if want := sigsum.CosignatureLine(w.Name(), w.pw.Key, &c.Cosignature); !bytes.Equal(c.NoteLine, want) {
			t.Errorf("note line %q, want the witness's own %q", c.NoteLine, want)
		}
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

// TestPolicyNamesAreLocal: a trust policy names witnesses as it likes (the reference server's tests call them
// "wit1"); the cosignature is found by the witness key, and the line kept is the one the witness signed under
// its own name.
func TestPolicyNamesAreLocal(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "witness.example.org/w1", 12, l, witnessOpts{})
	b := startWitness(t, "b.example/w", 13, l, witnessOpts{})
	a.pw.Name = "wit1"
	b.pw.Name = "b.example/w" // the same name as the witness's own: still fine
	c, logs := newCollector(t, l, []policy.Witness{a.pw, b.pw}, collectorOpts{})
	l.Append(3)
	sth := l.Head()
	cs := c.Cosign(t.Context(), sth)
	wantCosigs(t, l, sth, cs, a, b)
	for _, cs := range cs {
		if bytes.Contains(cs.NoteLine, []byte("wit1")) {
			t.Errorf("note line %q carries the policy's local name", cs.NoteLine)
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
		}, "no Ed25519 cosignature line"},
		{"key id of another name", func() []byte {
			// The line says "w" but its key id is the one for the name "not-w": not a line by this key.
			c := cosign(ws, sth.TreeHead, now)
			line := sigsum.CosignatureLine("not-w", ws.Public(), &c)
			return bytes.Replace(line, []byte(" not-w "), []byte(" w "), 1)
		}, "no Ed25519 cosignature line"},
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

// A round returns once its quorum is met and leaves a hung witness's request running, bounded by the timeout; Close
// ends it at once, saves what the witnesses answered, and later rounds send nothing.
func TestCloseEndsRequestsInFlight(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(3)
	hung := serve(t, "hung", signer(t, 40).Public(), func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices the client hanging up only once the body is read
		<-r.Context().Done()
	})
	good := startWitness(t, "good", 42, l, witnessOpts{})
	state := filepath.Join(t.TempDir(), "state")
	c, _ := newCollector(t, l, []policy.Witness{hung, good.pw}, collectorOpts{stateFile: state, timeout: time.Minute})
	one := func(cosigners map[sigsum.Hash]bool) bool { return cosigners[good.pw.Key.KeyHash()] }
	cs, asked := c.CosignUntil(t.Context(), l.Head(), one, 10*time.Millisecond)
	if asked != 2 {
		t.Errorf("asked %d witnesses, want 2", asked)
	}
	wantCosigs(t, l, l.Head(), cs, good)

	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v with a hung request in flight", d)
	}
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s=3\n", good.pw.Key.KeyHash()); string(data) != want {
		t.Errorf("state file after Close %q, want %q", data, want)
	}
	l.Append(1)
	before := good.Requests()
	if cs := c.Cosign(t.Context(), l.Head()); len(cs) != 0 || good.Requests() != before {
		t.Errorf("a closed collector sent a round: %d cosignatures, %d requests", len(cs), good.Requests()-before)
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

// A collector that replaces another (a policy reload) shares its witnesses' state: it does not read the file the
// old one may be writing, and a round the old one finishes afterwards is not lost.
func TestReplacingCollectorSharesState(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	a := startWitness(t, "a", 14, l, witnessOpts{})
	file := filepath.Join(t.TempDir(), "state")
	c1, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: file})
	l.Append(3)
	wantCosigs(t, l, l.Head(), c1.Cosign(t.Context(), l.Head()), a)
	if err := os.Remove(file); err != nil { // the new collector must not need it
		t.Fatal(err)
	}
	c2, err := New(Config{Witnesses: []policy.Witness{a.pw}, LogKey: l.Public(), Proofs: l.Proof, StateFile: file,
		Logger: slog.New(slog.DiscardHandler), Previous: c1, MinInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	kh := a.pw.Key.KeyHash()
	if got := c2.Size(kh); got != 3 {
		t.Fatalf("the replacing collector knows size %d, want 3", got)
	}
	l.Append(2) // the old collector's round still in flight
	wantCosigs(t, l, l.Head(), c1.Cosign(t.Context(), l.Head()), a)
	if got := c2.Size(kh); got != 5 {
		t.Fatalf("after the old collector's last round the new one knows size %d, want 5", got)
	}
	l.Append(1)
	wantCosigs(t, l, l.Head(), c2.Cosign(t.Context(), l.Head()), a)
	if a.Requests() != 3 {
		t.Errorf("%d requests, want 3: no 409 round after the reload", a.Requests())
	}
}

// A witness restarted with less than it had (its state lost: it holds nothing for this log now) answers 409 with
// its lower size; the collector re-sends from there, once, and is cosigned.
func TestWitnessRestartedLower(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	state := filepath.Join(t.TempDir(), "state")
	a := startWitness(t, "a", 15, l, witnessOpts{stateFile: filepath.Join(t.TempDir(), "witness-state")})
	c, _ := newCollector(t, l, []policy.Witness{a.pw}, collectorOpts{stateFile: state})
	l.Append(5)
	wantCosigs(t, l, l.Head(), c.Cosign(t.Context(), l.Head()), a)

	// The same witness key, restarted without its state (at the same address, as far as the policy knows).
	b := startWitness(t, "a", 15, l, witnessOpts{stateFile: filepath.Join(t.TempDir(), "fresh-state")})
	c2, logs := newCollector(t, l, []policy.Witness{b.pw}, collectorOpts{stateFile: state})
	if got := c2.Size(b.pw.Key.KeyHash()); got != 5 {
		t.Fatalf("the collector believes the witness holds %d, want 5", got)
	}
	l.Append(3)
	wantCosigs(t, l, l.Head(), c2.Cosign(t.Context(), l.Head()), b)
	if b.Requests() != 2 {
		t.Errorf("%d requests, want 2 (409 with size 0, then from 0)", b.Requests())
	}
	if s := logs.String(); s != "" {
		t.Errorf("a recovered 409 should not be logged:\n%s", s)
	}
}

// Per witness, the collector keeps the last cosigned size and time, the last error and the requests sent, and
// exports them as metrics.
func TestStatus(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	good := startWitness(t, "good", 16, l, witnessOpts{})
	bad := serve(t, "bad", signer(t, 17).Public(), func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "unknown log", http.StatusForbidden)
	})
	m := metrics.New("test")
	c, err := New(Config{Witnesses: []policy.Witness{good.pw, bad}, LogKey: l.Public(), Proofs: l.Proof,
		Logger: slog.New(slog.DiscardHandler), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	l.Append(4)
	c.Cosign(t.Context(), l.Head())
	st := c.Status()
	if len(st) != 2 || st[0].Name != "good" || st[0].CosignedSize != 4 || st[0].CosignedAt.IsZero() || st[0].LastError != "" ||
		st[0].Requests != 1 {
		t.Errorf("good witness: %+v", st[0])
	}
	if st[1].Name != "bad" || st[1].CosignedSize != 0 || !strings.Contains(st[1].LastError, "403") || st[1].ErrorAt.IsZero() {
		t.Errorf("bad witness: %+v", st[1])
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mm := range f.GetMetric() {
			for _, lp := range mm.GetLabel() {
				if lp.GetName() == "witness" {
					got[f.GetName()+"/"+lp.GetValue()] = mm.GetGauge().GetValue()
				}
			}
		}
	}
	for k, want := range map[string]float64{"sigsumd_witness_cosigned_size/good": 4, "sigsumd_witness_up/good": 1, "sigsumd_witness_up/bad": 0} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

// A witness is asked at most once every MinInterval, and never while its last request is still out, whatever the
// rounds: witness capacity is the ecosystem's scarcest resource. The pace is the shared state's, across reloads.
func TestMinInterval(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	a := startWitness(t, "a", 10, l, witnessOpts{now: clock})
	c, err := New(Config{Witnesses: []policy.Witness{a.pw}, LogKey: l.Public(), Proofs: l.Proof, Now: clock,
		MinInterval: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, step := range []struct {
		after    time.Duration
		requests int
	}{
		{0, 1},                // the first round asks
		{10 * time.Second, 1}, // too soon: skipped
		{50 * time.Second, 2}, // a minute after the first: asked
		{59 * time.Second, 2},
		{time.Second, 3},
	} {
		advance(step.after)
		l.Append(1)
		before := a.Requests()
		_, asked := c.CosignUntil(t.Context(), l.Head(), nil, 0)
		if got := a.Requests(); got != step.requests || asked != got-before {
			t.Fatalf("after %v more: %d requests, want %d; the round says it asked %d", step.after, got, step.requests, asked)
		}
	}

	// A hung witness is not asked again while its request is out, however long ago it was sent.
	release := make(chan struct{})
	var count atomic.Int32
	hung := serve(t, "hung", signer(t, 40).Public(), func(rw http.ResponseWriter, r *http.Request) {
		count.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	h, err := New(Config{Witnesses: []policy.Witness{hung}, LogKey: l.Public(), Proofs: l.Proof, Now: clock,
		MinInterval: time.Millisecond, Timeout: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	round := func() { // returns when its context ends; the request stays out
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		h.Cosign(ctx, l.Head())
	}
	for range 4 {
		round()
		advance(time.Second)
	}
	time.Sleep(100 * time.Millisecond)
	if n := count.Load(); n != 1 {
		t.Errorf("a hung witness got %d requests, want 1 while it is out", n)
	}
	close(release)
	h.Close()
}

func mldsaKey(seed byte) *mldsa44.PrivateKey {
	var s [mldsa44.SeedSize]byte
	s[0] = seed
	_, sk := mldsa44.NewKeyFromSeed(&s)
	return sk
}

func mldsaPublic(sk *mldsa44.PrivateKey) []byte {
	b, _ := sk.Public().(*mldsa44.PublicKey).MarshalBinary()
	return b
}

// A witness named in the policy by its ML-DSA-44 key: its subtree/v1 cosignature (C2SP tlog-cosignature) is found
// by that key among the lines it returns, verified, counted (by the SHA-256 of the key), and kept with its note line
// for the checkpoint, but not among the Ed25519 cosignatures a Sigsum v1 tree head carries. Another ML-DSA key, or
// a line that does not verify, gives none.
func TestMLDSACosignature(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(3)
	pq := startWitness(t, "pq.example/witness", 60, l, witnessOpts{mldsa: mldsaKey(1)})
	c, logs := newCollector(t, l, []policy.Witness{pq.pw}, collectorOpts{})
	for round := range 2 {
		cs := c.Cosign(t.Context(), l.Head())
		if len(cs) != 1 || !cs[0].PostQuantum || cs[0].KeyHash != sigsum.HashBytes(pq.pw.MLDSA) {
			t.Fatalf("round %d: %+v\n%s", round, cs, logs)
		}
		head := l.Head()
		mc, err := sigsum.ParseMLDSAWitnessCosignature(cs[0].NoteLine, pq.pw.MLDSA)
		if err != nil || mc.Name != "pq.example/witness" || !mc.Verify(pq.pw.MLDSA, sigsum.Origin(l.Public()), &head.TreeHead) {
			t.Fatalf("round %d: note line %q: %v", round, cs[0].NoteLine, err)
		}
		if v1 := Cosignatures(cs); len(v1) != 0 {
			t.Errorf("round %d: an ML-DSA cosignature among the v1 ones: %+v", round, v1)
		}
		l.Append(2)
	}

	other := pq.pw
	other.MLDSA = mldsaPublic(mldsaKey(2))
	c2, logs2 := newCollector(t, l, []policy.Witness{other}, collectorOpts{})
	if cs := c2.Cosign(t.Context(), l.Head()); len(cs) != 0 {
		t.Errorf("cosignatures for another ML-DSA key: %+v", cs)
	}
	if !strings.Contains(logs2.String(), "no ML-DSA-44 cosignature line") {
		t.Errorf("log: %s", logs2)
	}
	// A line whose signature was altered.
	forged := serve(t, "forged", sigsum.PublicKey{}, func(rw http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		pq.ServeHTTP(rec, r)
		body := rec.Body.String()
		for k, v := range rec.Header() {
			rw.Header()[k] = v
		}
		if rec.Code != http.StatusOK { // a 409 with the witness's size: as it is
			rw.WriteHeader(rec.Code)
			io.WriteString(rw, body)
			return
		}
		lines := strings.SplitAfter(body, "\n")
		last := lines[len(lines)-2] // the ML-DSA line; the body ends in a newline
		i := len(last) - 10
		flip := "A"
		if last[i] == 'A' {
			flip = "B"
		}
		rw.WriteHeader(rec.Code)
		io.WriteString(rw, strings.Replace(body, last, last[:i]+flip+last[i+1:], 1))
	})
	forged.MLDSA, forged.Key = pq.pw.MLDSA, sigsum.PublicKey{}
	c3, logs3 := newCollector(t, l, []policy.Witness{forged}, collectorOpts{})
	l.Append(1)
	if cs := c3.Cosign(t.Context(), l.Head()); len(cs) != 0 {
		t.Errorf("a forged ML-DSA cosignature was accepted: %+v", cs)
	}
	if !strings.Contains(logs3.String(), "ML-DSA-44 cosignature does not verify") {
		t.Errorf("log: %s", logs3)
	}
}

package primary

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// witnessed starts a primary on e whose heads need cosignatures from the given witness servers under the policy
// group line (e.g. "group g 2 w1 w2").
// The witnesses get one interval per rotation; tests call Rotate themselves, so a generous interval only keeps a
// loaded machine from failing them, except where the bound itself is tested.
const witnessTestInterval = 3 * time.Second

func (e *env) witnessed(group string, urls map[string]string, keys map[string]sigsum.PublicKey) *Primary {
	return e.witnessedEvery(witnessTestInterval, group, urls, keys)
}

func (e *env) witnessedEvery(interval time.Duration, group string, urls map[string]string, keys map[string]sigsum.PublicKey) *Primary {
	e.t.Helper()
	text := fmt.Sprintf("log %s\n", e.signer.Public())
	for _, name := range []string{"w1", "w2"} {
		if u, ok := urls[name]; ok {
			text += fmt.Sprintf("witness %s %s %s\n", name, keys[name], u)
		}
	}
	text += group + "\nquorum g\n"
	pol, err := policy.Parse(strings.NewReader(text))
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := witness.New(witness.Config{Witnesses: pol.Witnesses(), LogKey: e.signer.Public(), Proofs: e.log.ConsistencyProof,
		StateFile: filepath.Join(e.dir, "witness-state"), Timeout: 5 * time.Second, Logger: quietLogger(), MinInterval: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	// Before the data directory is removed: a hung witness's request ends, and the state file is written, here.
	e.t.Cleanup(func() { c.Close() })
	if _, err := os.Stat(e.sthFile()); os.IsNotExist(err) {
		if err := WriteStartupFile(e.sthFile(), StartupEmpty); err != nil {
			e.t.Fatal(err)
		}
	}
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Interval: interval,
		Timeout: 5 * time.Second, Logger: quietLogger(), Witnesses: c, Policy: pol,
		PublishedFile: filepath.Join(e.dir, "published")})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func newTestWitness(t *testing.T, name string, seed byte, logKey sigsum.PublicKey) (*witnesstest.Witness, *httptest.Server) {
	t.Helper()
	w, err := witnesstest.New(witnesstest.Config{Name: name, Signer: seedSigner(t, seed), Logs: []sigsum.PublicKey{logKey},
		StateFile: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	return w, srv
}

func TestWitnessPublication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "w1", 51, e.signer.Public())
	w2, s2 := newTestWitness(t, "w2", 52, e.signer.Public())
	urls := map[string]string{"w1": s1.URL, "w2": s2.URL}
	keys := map[string]sigsum.PublicKey{"w1": w1.Public(), "w2": w2.Public()}
	p := e.witnessed("group g 2 w1 w2", urls, keys)
	ctx := context.Background()

	e.addLeaves(3)
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	pub := p.Published()
	if pub.Size != 3 || len(pub.Cosignatures) != 2 {
		t.Fatalf("published size %d with %d cosignatures, want 3 with 2", pub.Size, len(pub.Cosignatures))
	}
	for _, c := range pub.Cosignatures {
		k := keys["w1"]
		if c.KeyHash == keys["w2"].KeyHash() {
			k = keys["w2"]
		}
		if !c.Verify(k, sigsum.Origin(e.signer.Public()), &pub.TreeHead) {
			t.Error("published cosignature does not verify")
		}
	}
	if sigsum.SortCosignatures(pub.Cosignatures); pub.Cosignatures[0].KeyHash != p.Published().Cosignatures[0].KeyHash {
		t.Error("cosignatures not in key hash order")
	}

	// One witness failing: signed moves, published stays.
	w2.SetFailure(http.StatusInternalServerError)
	e.addLeaves(2)
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Signed().Size != 5 || p.Published().Size != 3 {
		t.Fatalf("signed %d published %d, want 5 and 3", p.Signed().Size, p.Published().Size)
	}
	// The status page: both witnesses on the published head, w2's latest exchange failed.
	st := p.Status(context.Background(), time.Now())
	if len(st.Witnesses) != 2 || st.Published.Size != 3 || st.Published.Cosignatures != 2 || st.LocalSize != 5 {
		t.Fatalf("status: %+v", st)
	}
	for _, w := range st.Witnesses {
		failed := w.Name == "w2"
		if !w.InPublished || w.CosignedSize < 3 || (w.LastError != "") != failed || w.Requests == 0 {
			t.Errorf("status of %s: %+v", w.Name, w)
		}
	}

	// A witness that lost its state answers 409 with its size; the collector re-sends from there.
	w2.SetFailure(0)
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.Published(); got.Size != 5 || len(got.Cosignatures) != 2 {
		t.Fatalf("after the witness returned: published %d with %d cosignatures", got.Size, len(got.Cosignatures))
	}

	// A restart serves the published head with its cosignatures, even with both witnesses failing.
	w1.SetFailure(http.StatusInternalServerError)
	w2.SetFailure(http.StatusInternalServerError)
	before := checkpointOf(t, p)
	if n := strings.Count(before, "\n\u2014 "); n != 3 || !strings.Contains(before, "\u2014 w1 ") || !strings.Contains(before, "\u2014 w2 ") {
		t.Errorf("checkpoint with %d signature lines, want the log's and the witnesses' under their own names:\n%s", n, before)
	}
	again := e.witnessed("group g 2 w1 w2", urls, keys)
	if got := again.Published(); got.Size != 5 || len(got.Cosignatures) != 2 {
		t.Fatalf("after a restart: published %d with %d cosignatures, want 5 with 2", got.Size, len(got.Cosignatures))
	}
	if after := checkpointOf(t, again); after != before {
		t.Errorf("after a restart the checkpoint is\n%s\nwant, as before it,\n%s", after, before)
	}
}

func TestWitnessResyncAfterLostCollectorState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "w1", 51, e.signer.Public())
	urls := map[string]string{"w1": s1.URL}
	keys := map[string]sigsum.PublicKey{"w1": w1.Public()}
	p := e.witnessed("group g 1 w1", urls, keys)
	e.addLeaves(2)
	p.Rotate(context.Background())
	// The primary's witness state is lost: it sends old 0, gets 409 with the witness's size, re-sends with a proof.
	if err := os.Remove(filepath.Join(e.dir, "witness-state")); err != nil {
		t.Fatal(err)
	}
	e.addLeaves(2)
	p2 := e.witnessed("group g 1 w1", urls, keys)
	if err := p2.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p2.Published(); got.Size != 4 || len(got.Cosignatures) != 1 {
		t.Fatalf("published %d with %d cosignatures, want 4 with 1", got.Size, len(got.Cosignatures))
	}
}

func TestHungWitnessDoesNotStallRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "w1", 51, e.signer.Public())
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // a server notices a client hanging up only once the body is read
		<-r.Context().Done()
	}))
	t.Cleanup(hung.Close)
	urls := map[string]string{"w1": s1.URL, "w2": hung.URL}
	keys := map[string]sigsum.PublicKey{"w1": w1.Public(), "w2": seedSigner(t, 52).Public()}
	p := e.witnessedEvery(4*time.Second, "group g 1 w1 w2", urls, keys)
	e.addLeaves(1)
	start := time.Now()
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The interval is 4 s and the witness timeout 5 s: once w1 meets the quorum, the rotation waits a grace of at
	// most a second for the rest, not the interval, let alone the hung witness's timeout.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("rotation with a hung witness took %v", d)
	}
	if got := p.Published(); got.Size != 1 || len(got.Cosignatures) != 1 {
		t.Fatalf("published %d with %d cosignatures, want 1 with 1", got.Size, len(got.Cosignatures))
	}
}

// Witnesses are asked at once when the tree grows, and while it does not only every WitnessInterval, not every
// rotation: an idle log with a 100 ms interval does not ask ten times a second.
func TestWitnessPacing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "w1", 51, e.signer.Public())
	// Each witness round gets one rotation interval: 300 ms is room enough on a loaded CI machine, where a round
	// that ran out of time would be asked again and counted here.
	p := e.witnessedEvery(300*time.Millisecond, "group g 1 w1", map[string]string{"w1": s1.URL},
		map[string]sigsum.PublicKey{"w1": w1.Public()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	time.Sleep(2100 * time.Millisecond) // about 7 rotations of an idle log
	if n := w1.Requests(); n != 1 {
		t.Errorf("an idle log asked its witness %d times in 2.1 s, want once (witness-interval %v)", n, DefaultWitnessInterval)
	}
	e.addLeaves(1)
	deadline := time.Now().Add(5 * time.Second)
	for p.Published().Size != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the new leaf was not published with a cosignature: published %d", p.Published().Size)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := w1.Requests(); n != 2 {
		t.Errorf("the witness was asked %d times in all, want 2 (once more for the grown tree)", n)
	}
}

// checkpointOf returns what p's checkpoint endpoint serves.
func checkpointOf(t *testing.T, p *Primary) string {
	t.Helper()
	w := httptest.NewRecorder()
	p.PublicHandler("").ServeHTTP(w, httptest.NewRequest("GET", "/checkpoint", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("checkpoint: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// With a rotation interval below the witnesses' minimum interval, a growing log asks each witness at that pace,
// and the rotations in between wait quietly: no "lacks the witness quorum" warning for a round not sent.
func TestWitnessMinInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "w1", 51, e.signer.Public())
	pol, err := policy.Parse(strings.NewReader(fmt.Sprintf("log %s\nwitness w1 %s %s\nquorum w1\n", e.signer.Public(), w1.Public(), s1.URL)))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := witness.New(witness.Config{Witnesses: pol.Witnesses(), LogKey: e.signer.Public(), Proofs: e.log.ConsistencyProof,
		MinInterval: time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Interval: 200 * time.Millisecond,
		Timeout: 5 * time.Second, Logger: logger, Witnesses: c, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	start := time.Now()
	// A leaf every 200 ms for 2.4 s: the tree grows at every rotation, and a witness round (which gets one interval,
	// room enough on a loaded machine) fits every fifth.
	for range 12 {
		e.addLeaves(1)
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	<-done
	took := time.Since(start)
	if n, most := w1.Requests(), int(took/time.Second)+1; n > most || n < 2 {
		t.Errorf("%d requests to the witness in %v, want 2 to %d (one a second at most)", n, took, most)
	}
	if strings.Contains(logs.String(), "lacks the witness quorum") {
		t.Errorf("rounds not sent were logged as lacking the quorum:\n%s", logs.String())
	}
	if p.Published().Size == 0 || len(p.Published().Cosignatures) != 1 {
		t.Errorf("published %d with %d cosignatures", p.Published().Size, len(p.Published().Cosignatures))
	}
}

// A policy that needs an ML-DSA-44 witness (C2SP tlog-cosignature subtree/v1) as well as an Ed25519 one: the head
// is published once both cosign, get-tree-head carries the Ed25519 cosignature only (Sigsum v1 has no other), and
// the checkpoint carries both lines, under the witnesses' own names, also after a restart.
func TestMLDSAWitnessOnTheCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w1, s1 := newTestWitness(t, "ed.example/w", 51, e.signer.Public())
	var seed [mldsa44.SeedSize]byte
	seed[0] = 9
	pqPub, pqKey := mldsa44.NewKeyFromSeed(&seed)
	pq, err := witnesstest.New(witnesstest.Config{Name: "pq.example/w", Signer: seedSigner(t, 52), MLDSA: pqKey,
		Logs: []sigsum.PublicKey{e.signer.Public()}, StateFile: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	s2 := httptest.NewServer(pq)
	t.Cleanup(s2.Close)
	pqBytes, _ := pqPub.MarshalBinary()
	text := fmt.Sprintf("log %s\nwitness ed %s %s\nwitness pq %x %s\ngroup g all ed pq\nquorum g\n",
		e.signer.Public(), w1.Public(), s1.URL, pqBytes, s2.URL)
	start := func() *Primary {
		pol, err := policy.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		c, err := witness.New(witness.Config{Witnesses: pol.Witnesses(), LogKey: e.signer.Public(), Proofs: e.log.ConsistencyProof,
			StateFile: filepath.Join(e.dir, "witness-state"), Logger: quietLogger(), MinInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := os.Stat(e.sthFile()); os.IsNotExist(err) {
			WriteStartupFile(e.sthFile(), StartupEmpty)
		}
		p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Interval: time.Second,
			Timeout: 5 * time.Second, Logger: quietLogger(), Witnesses: c, Policy: pol, PublishedFile: filepath.Join(e.dir, "published")})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := start()
	e.addLeaves(3)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Published(); got.Size != 3 || len(got.Cosignatures) != 1 || got.Cosignatures[0].KeyHash != w1.Public().KeyHash() {
		t.Fatalf("published %d with %+v, want 3 with the Ed25519 cosignature only", got.Size, got.Cosignatures)
	}
	cp := checkpointOf(t, p)
	if n := strings.Count(cp, "\n\u2014 "); n != 3 || !strings.Contains(cp, "\u2014 pq.example/w ") || !strings.Contains(cp, "\u2014 ed.example/w ") {
		t.Fatalf("checkpoint with %d signature lines, want the log's, ed's and pq's:\n%s", n, cp)
	}
	i := strings.Index(cp, "\u2014 pq.example/w ")
	mc, err := sigsum.ParseMLDSAWitnessCosignature([]byte(cp[i:i+strings.Index(cp[i:], "\n")+1]), pqBytes)
	th := p.Published().TreeHead
	if err != nil || !mc.Verify(pqBytes, sigsum.Origin(e.signer.Public()), &th) {
		t.Fatalf("the checkpoint's ML-DSA line: %v", err)
	}
	if again := checkpointOf(t, start()); again != cp {
		t.Errorf("after a restart the checkpoint is\n%s\nwant\n%s", again, cp)
	}
	// A kept checkpoint too large to be one is not read whole, nor served: the log's own line stays.
	huge := []byte(cp + strings.Repeat("\u2014 junk AAAA\n", 10000))
	if err := os.WriteFile(filepath.Join(e.dir, "published.checkpoint"), huge, 0o644); err != nil {
		t.Fatal(err)
	}
	again := checkpointOf(t, start())
	if logLine := cp[:strings.Index(cp, "\u2014 ")]; !strings.HasPrefix(again, logLine) || strings.Contains(again, "junk") || strings.Contains(again, "pq.example/w") {
		t.Errorf("after a restart with a %d-byte kept checkpoint, the checkpoint is\n%s", len(huge), again)
	}
}

package primary

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		StateFile: filepath.Join(e.dir, "witness-state"), Timeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
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
	again := e.witnessed("group g 2 w1 w2", urls, keys)
	if got := again.Published(); got.Size != 5 || len(got.Cosignatures) != 2 {
		t.Fatalf("after a restart: published %d with %d cosignatures, want 5 with 2", got.Size, len(got.Cosignatures))
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
	p := e.witnessedEvery(time.Second, "group g 1 w1 w2", urls, keys)
	e.addLeaves(1)
	start := time.Now()
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The interval is 1s and the witness timeout 5s: the rotation must end with the interval, well before 5s.
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("rotation with a hung witness took %v", d)
	}
	if got := p.Published(); got.Size != 1 || len(got.Cosignatures) != 1 {
		t.Fatalf("published %d with %d cosignatures, want 1 with 1", got.Size, len(got.Cosignatures))
	}
}

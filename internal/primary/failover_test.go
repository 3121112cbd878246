package primary

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// secondaryTimeout is the timeout of the primaries in these tests, as in production: the bound a hung secondary
// used to cost every rotation.
const secondaryTimeout = 10 * time.Second

// newFollowingSecondary is a secondary that is always caught up: it signs the primary's local tree as it is.
func newFollowingSecondary(t *testing.T, e *env, seed byte) Secondary {
	t.Helper()
	signer := seedSigner(t, seed)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		th, err := e.log.TreeHead(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sth, err := th.Sign(signer)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(sth.MarshalASCII())
	}))
	t.Cleanup(srv.Close)
	return testSecondary(t, "following", srv.URL, signer.Public())
}

// stuckSecondary is a secondary that accepts connections and never answers in time: it hangs without a byte
// (drip false), or sends the headers and then one byte of its head a second (drip true).
type stuckSecondary struct {
	Secondary
	inflight atomic.Int32 // requests it holds
}

func newStuckSecondary(t *testing.T, e *env, seed byte, drip bool) *stuckSecondary {
	t.Helper()
	signer := seedSigner(t, seed)
	s := &stuckSecondary{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		if !drip {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		th, _ := e.log.TreeHead(r.Context())
		sth, _ := th.Sign(signer)
		w.WriteHeader(http.StatusOK)
		for _, b := range sth.MarshalASCII() {
			w.Write([]byte{b})
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-release:
				return
			case <-time.After(time.Second):
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for the handlers
	s.Secondary = testSecondary(t, "stuck", srv.URL, signer.Public())
	return s
}

func testSecondary(t *testing.T, name, url string, key sigsum.PublicKey) Secondary {
	t.Helper()
	c, err := client.New(client.Config{URL: url, Timeout: secondaryTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return Secondary{Name: name, Client: c, Key: key}
}

// startEvery starts a primary on e that rotates every interval, with the production timeout.
func (e *env) startEvery(interval time.Duration, secs []Secondary, quorum int) *Primary {
	e.t.Helper()
	_, noSTH := os.Stat(e.sthFile())
	if _, noStartup := os.Stat(StartupFile(e.sthFile())); os.IsNotExist(noSTH) && os.IsNotExist(noStartup) {
		if err := WriteStartupFile(e.sthFile(), StartupEmpty); err != nil {
			e.t.Fatal(err)
		}
	}
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Secondaries: secs,
		SecondaryQuorum: quorum, Interval: interval, Timeout: secondaryTimeout, Logger: quietLogger()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { // before the secondaries' servers close
		p.rotateMu.Lock()
		p.stopStragglers()
		p.rotateMu.Unlock()
	})
	return p
}

// run runs p's loop until the test ends.
func run(t *testing.T, p *Primary) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// queue queues one new leaf and returns its index once the tree has integrated it.
func (e *env) queue() uint64 {
	e.t.Helper()
	sub := seedSigner(e.t, 2)
	l, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte{byte(len(e.leaves)), byte(len(e.leaves) >> 8), 'q'}))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.log.QueueLeaf(context.Background(), &l); err != nil {
		e.t.Fatal(err)
	}
	e.leaves = append(e.leaves, l)
	return uint64(len(e.leaves) - 1)
}

// waitCommitted waits until p has signed a tree that holds leaf index, at most within, and returns how long that took.
func waitCommitted(t *testing.T, p *Primary, index uint64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for p.Signed().Size <= index {
		if time.Since(start) > within {
			t.Fatalf("leaf %d not committed within %v (signed size %d)", index, within, p.Signed().Size)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// With 1 of 2 secondaries required and one of them stuck, a leaf is committed within an interval and a rotation:
// the rotation does not wait for the stuck secondary (it used to wait the whole timeout, 10 s, for each).
func TestCommitLatencyWithStuckSecondary(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	for _, tc := range []struct {
		name string
		drip bool
	}{{"hung", false}, {"slow drip", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			stuck := newStuckSecondary(t, e, 12, tc.drip)
			p := e.startEvery(interval, []Secondary{newFollowingSecondary(t, e, 11), stuck.Secondary}, 1)
			run(t, p)
			var lat []time.Duration
			for range 4 {
				i := e.queue()
				lat = append(lat, waitCommitted(t, p, i, secondaryTimeout))
			}
			t.Logf("commit latency, 1 of 2 secondaries with one %s, interval %v: p50 %v, max %v (%d leaves)",
				tc.name, interval, percentile(lat, 0.5).Round(time.Millisecond), slices.Max(lat).Round(time.Millisecond), len(lat))
			// Correctness, not speed: a commit never waits for the stuck secondary's timeout.
			if m := slices.Max(lat); m >= secondaryTimeout/2 {
				t.Errorf("a commit took %v: the rotation waited for the stuck secondary", m)
			}
		})
	}
}

// A rotation with k of n secondaries required goes on as soon as k verified the tree: it neither waits for a
// secondary that hangs or drips its answer, nor leaves its request to the next rotation. With all required, the
// stuck one costs the rotation half an interval at most, not the timeout.
func TestRotateDoesNotWaitForStuckSecondary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		drip   bool
		quorum int
		// interval: with 1 of 2, long enough that the stuck request outlives any rotation on a loaded machine
		// (it gets the whole timeout); with all, 1 s, so that it gets half a second.
		interval time.Duration
	}{
		{"hung, 1 of 2", false, 1, time.Minute},
		{"slow drip, 1 of 2", true, 1, time.Minute},
		{"hung, all", false, 0, time.Second},
		{"slow drip, all", true, 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			stuck := newStuckSecondary(t, e, 12, tc.drip)
			p := e.startEvery(tc.interval, []Secondary{newFollowingSecondary(t, e, 11), stuck.Secondary}, tc.quorum)
			ctx := context.Background()
			var took []time.Duration
			for round := 1; round <= 3; round++ {
				e.addLeaves(1)
				start := time.Now()
				if err := p.Rotate(ctx); err != nil {
					t.Fatal(err)
				}
				took = append(took, time.Since(start))
				want := uint64(round)
				if tc.quorum == 0 {
					want = 0
				}
				if got := p.Signed().Size; got != want {
					t.Fatalf("round %d: signed size %d, want %d", round, got, want)
				}
				if s := p.stragglers; tc.quorum != 0 && (s == nil || isClosed(s.done)) {
					t.Fatalf("round %d: the rotation waited for the stuck secondary's request to end", round)
				}
			}
			t.Logf("rotation with one secondary %s: p50 %v, max %v", tc.name, percentile(took, 0.5).Round(time.Millisecond),
				slices.Max(took).Round(time.Millisecond))
			// Correctness, not speed: never the stuck secondary's timeout; with all required, its request's bound.
			if m := slices.Max(took); m >= secondaryTimeout/2 {
				t.Errorf("a rotation took %v", m)
			}
			reason := p.Degraded()
			if !strings.Contains(reason, "1 of 2 secondaries") || !strings.Contains(reason, "stuck (") {
				t.Errorf("Degraded() = %q, want the stuck secondary named", reason)
			}
			if tc.quorum == 0 && !strings.Contains(reason, "not committed") {
				t.Errorf("Degraded() = %q, want it to say leaves are not committed", reason)
			}
		})
	}
}

// The requests a rotation left out are cancelled by the next rotation and by the end of Run, not left to their
// timeout: nothing leaks, and nothing of one rotation runs into the next.
func TestStragglersAreCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stuck := newStuckSecondary(t, e, 12, false)
	// A long interval: each request to a secondary may take the whole timeout (10 s).
	p := e.startEvery(time.Hour, []Secondary{newFollowingSecondary(t, e, 11), stuck.Secondary}, 1)
	ctx := context.Background()
	waitInflight := func(want int32, why string) {
		t.Helper()
		for start := time.Now(); stuck.inflight.Load() != want; time.Sleep(2 * time.Millisecond) {
			if time.Since(start) > secondaryTimeout/2 {
				t.Fatalf("%s: %d requests held by the stuck secondary, want %d", why, stuck.inflight.Load(), want)
			}
		}
	}
	for round := 1; round <= 3; round++ {
		e.addLeaves(1)
		if err := p.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if p.Signed().Size != uint64(round) {
			t.Fatalf("round %d: signed %d", round, p.Signed().Size)
		}
		waitInflight(1, "one request out, the last rotation's")
	}
	// Rounds 1 and 2 ended with their stuck request cancelled by the next rotation.
	if reason := p.Degraded(); !strings.Contains(reason, "stuck ("+errNextRotation.Error()+")") {
		t.Errorf("Degraded() = %q", reason)
	}
	p.rotateMu.Lock()
	p.stopStragglers()
	p.rotateMu.Unlock()
	waitInflight(0, "after the stragglers were stopped")
	if reason := p.Degraded(); !strings.Contains(reason, "stuck (") || !strings.Contains(reason, errNextRotation.Error()) {
		t.Errorf("Degraded() = %q, want the stuck secondary named with %q", reason, errNextRotation)
	}

	// Run ends its last rotation's requests too.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	waitInflight(1, "Run's first rotation")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.stragglers != nil {
		t.Error("Run returned with requests out")
	}
	waitInflight(0, "after Run returned")
}

// laggingSecondary answers the first asks with a head behind the primary's, then catches up.
func newLaggingSecondary(t *testing.T, e *env, seed byte, behind int32) Secondary {
	t.Helper()
	signer := seedSigner(t, seed)
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(e.leaves) // the test does not grow the tree while the rotation asks
		if asked.Add(1) <= behind {
			n--
		}
		writeSignedHead(w, signer, e.head(n))
	}))
	t.Cleanup(srv.Close)
	return testSecondary(t, "lagging", srv.URL, signer.Public())
}

// writeSignedHead answers a get-secondary-tree-head with th, signed by signer.
func writeSignedHead(w http.ResponseWriter, signer sigsum.Signer, th sigsum.TreeHead) {
	sth, err := th.Sign(signer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(sth.MarshalASCII())
}

// A secondary a little behind is asked again within the rotation while another hangs: the rotation signs the
// whole tree once it has caught up, and does not wait for the hung one.
func TestRecheckWithHungSecondary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addLeaves(5)
	stuck := newStuckSecondary(t, e, 12, false)
	// A minute's interval: the rotation rechecks for a second.
	p := e.startEvery(time.Minute, []Secondary{newLaggingSecondary(t, e, 11, 2), stuck.Secondary}, 1)
	start := time.Now()
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Signed().TreeHead; got != e.head(5) {
		t.Fatalf("signed size %d, want 5: the lagging secondary was not asked again", got.Size)
	}
	if d := time.Since(start); d >= secondaryTimeout/2 {
		t.Errorf("rotation took %v", d)
	}
	t.Logf("rotation with a secondary asked three times and one hung: %v", time.Since(start).Round(time.Millisecond))
}

// A secondary still copying the last leaves is asked a second time with sigsum.WaitBeyondHeader, one below the
// local size (hold the answer until you hold the whole tree); its answer settles the rotation.
func TestRecheckAsksSecondaryToHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addLeaves(5)
	signer := seedSigner(t, 11)
	var mu sync.Mutex
	var asked []string // the header of each request, "" for none
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get(sigsum.WaitBeyondHeader)
		mu.Lock()
		asked = append(asked, v)
		mu.Unlock()
		n := len(e.leaves) - 1 // still copying the last leaf when asked plainly
		if v == strconv.Itoa(len(e.leaves)-1) {
			n = len(e.leaves) // a held answer: the leaf arrived meanwhile
		}
		writeSignedHead(w, signer, e.head(n))
	}))
	t.Cleanup(srv.Close)
	p := e.startEvery(time.Minute, []Secondary{testSecondary(t, "holding", srv.URL, signer.Public())}, 1)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Signed().TreeHead; got != e.head(5) {
		t.Fatalf("signed size %d, want 5", got.Size)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "4"}; !slices.Equal(asked, want) {
		t.Errorf("requests with headers %q, want %q", asked, want)
	}
}

// A held request that the end of the recheck window cuts short is not a failure of its own: a secondary that
// answers 503 at once and holds the held request keeps its 503 as the reason, logged once over three rotations.
func TestCutHoldIsNotAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addLeaves(2)
	var logs syncBuffer
	signer := seedSigner(t, 11)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(sigsum.WaitBeyondHeader) != "" {
			<-r.Context().Done() // held until the primary gives up on it
			return
		}
		http.Error(w, "catching up", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(),
		Secondaries: []Secondary{testSecondary(t, "holding", srv.URL, signer.Public())}, Interval: 400 * time.Millisecond,
		Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "does not count"); n != 1 {
		t.Errorf("3 failed rotations logged %d times, want once:\n%s", n, logs.String())
	}
	if reason := p.Degraded(); !strings.Contains(reason, "503") || strings.Contains(reason, "no answer") {
		t.Errorf("Degraded() = %q, want the secondary's 503", reason)
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// syncBuffer is a log destination safe for the rotation's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A secondary that fails every rotation is logged once when it starts failing and once when it counts again,
// with the count, not every rotation.
func TestSecondaryFailureLoggedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var logs syncBuffer
	WriteStartupFile(e.sthFile(), StartupEmpty)
	down := newFakeSecondary(t, 11) // 503 until set
	sec := down.secondary(t)
	sec.Name = "down"
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(),
		Secondaries: []Secondary{sec}, Interval: 2 * time.Second, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.addLeaves(2)
	ctx := context.Background()
	for range 3 {
		if err := p.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if p.Signed().Size != 0 {
		t.Fatalf("signed %d without the secondary", p.Signed().Size)
	}
	if n := strings.Count(logs.String(), "does not count"); n != 1 {
		t.Errorf("3 failed rotations logged %d times, want once:\n%s", n, logs.String())
	}
	if reason := p.Degraded(); !strings.Contains(reason, "down (get-secondary-tree-head: 503") {
		t.Errorf("Degraded() = %q", reason)
	}
	if st := p.Status(context.Background(), time.Now()).Secondaries; len(st) != 1 || !st[0].Asked || !strings.Contains(st[0].Error, "503") {
		t.Errorf("status of the secondary down: %+v", st)
	}
	down.set(t, e.head(2))
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Signed().Size != 2 {
		t.Fatalf("signed %d, want 2", p.Signed().Size)
	}
	if !strings.Contains(logs.String(), `msg="secondary counts again" secondary=down failed_rotations=3`) {
		t.Errorf("recovery not logged with its count:\n%s", logs.String())
	}
	if reason := p.Degraded(); reason != "" {
		t.Errorf("Degraded() = %q with the only secondary verified", reason)
	}
	if st := p.Status(context.Background(), time.Now()).Secondaries; len(st) != 1 || st[0].Error != "" || st[0].VerifiedSize != 2 ||
		st[0].Lag != 0 || st[0].VerifiedAt.IsZero() {
		t.Errorf("status of the secondary back: %+v", st)
	}
}

func TestFastRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		since    time.Duration
		interval time.Duration
		grown    bool
		want     bool
	}{
		{0, 30 * time.Second, false, true},
		{29 * time.Second, 30 * time.Second, false, true},
		{30 * time.Second, 30 * time.Second, false, false}, // one interval at most
		{2 * time.Second, 30 * time.Second, true, false},   // the first larger tree ends it
		{0, 30 * time.Second, true, false},
	} {
		if got := fastRotation(tc.since, tc.interval, tc.grown); got != tc.want {
			t.Errorf("fastRotation(%v, %v, %v) = %v, want %v", tc.since, tc.interval, tc.grown, got, tc.want)
		}
	}
}

// A promoted primary (startup=local-tree) with a long interval commits the first leaf submitted to it within
// seconds, not an interval later; once it has, rotations return to the interval.
func TestStartedPrimaryCommitsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addLeaves(3) // what the secondary held when it was promoted
	if err := WriteStartupFile(e.sthFile(), StartupLocalTree); err != nil {
		t.Fatal(err)
	}
	const interval = 30 * time.Second
	p := e.startEvery(interval, []Secondary{newFollowingSecondary(t, e, 11)}, 0)
	if p.Signed().TreeHead != e.head(3) {
		t.Fatalf("startup=local-tree signed %d", p.Signed().Size)
	}
	run(t, p)
	first := e.queue()
	d := waitCommitted(t, p, first, interval/2)
	t.Logf("first leaf after a start with interval %v committed in %v", interval, d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("first leaf after a start committed in %v, want a few seconds (interval %v)", d, interval)
	}
	// The first larger tree ends the fast rotations: a second leaf waits for the interval.
	second := e.queue()
	time.Sleep(2500 * time.Millisecond)
	if p.Signed().Size > second {
		t.Errorf("rotations still every second after the first commit")
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ interval, timeout, want time.Duration }{
		{30 * time.Second, 10 * time.Second, 10 * time.Second},                   // the defaults: the timeout
		{time.Second, 10 * time.Second, 500 * time.Millisecond},                  // half an interval
		{4 * time.Second, 10 * time.Second, 2 * time.Second},                     // half an interval
		{200 * time.Millisecond, 2 * time.Second, minRequestTimeout},             // never under the floor...
		{200 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}, // ...unless the timeout is
	} {
		p := &Primary{cfg: Config{Interval: tc.interval, Timeout: tc.timeout}}
		if got := p.requestTimeout(); got != tc.want {
			t.Errorf("interval %v, timeout %v: request timeout %v, want %v", tc.interval, tc.timeout, got, tc.want)
		}
	}
}

// A healthy primary tells its story at info level at a sane rate: a line for a larger published head, at most one
// every publishedLogEvery however fast it rotates, with the heads published since the last line.
func TestPublishedHeadsLoggedAtASaneRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var logs syncBuffer
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(),
		Interval: time.Second, Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		e.addLeaves(1)
		if err := p.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p.Published().Size != uint64(i+1) {
			t.Fatalf("published %d, want %d", p.Published().Size, i+1)
		}
	}
	if err := p.Rotate(context.Background()); err != nil { // nothing new: nothing to tell
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), `msg="published tree head"`); n != 1 {
		t.Errorf("5 heads published within a second logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="published tree head" size=1 cosignatures=0 heads_since_last_line=1`) {
		t.Errorf("first published head not logged with its size:\n%s", logs.String())
	}
}

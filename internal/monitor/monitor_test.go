package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

type harness struct {
	t       *testing.T
	log     *fakeLog
	a, b    *sigsum.Ed25519Signer // a is watched, b is not
	w1      *sigsum.Ed25519Signer
	state   string
	matches []Match
	now     time.Time
	quorum  string
	batch   uint64
	maxAge  time.Duration
	tiles   bool
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return &harness{t: t, log: newFakeLog(t, 1), a: testSigner(t, 2), b: testSigner(t, 3), w1: testSigner(t, 4),
		state: filepath.Join(t.TempDir(), "state.json"), now: time.Unix(1700000100, 0), quorum: "none"}
}

func (h *harness) monitor() *Monitor {
	h.t.Helper()
	c, err := client.New(client.Config{URL: h.log.srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	pol, err := policy.Parse(strings.NewReader(fmt.Sprintf("log %s\nwitness w1 %s\nquorum %s\n",
		h.log.key.Public(), h.w1.Public(), h.quorum)))
	if err != nil {
		h.t.Fatal(err)
	}
	m, err := New(Config{Client: c, LogKey: h.log.key.Public(), Policy: pol, Watch: []sigsum.PublicKey{h.a.Public()},
		StateFile: h.state, BatchSize: h.batch, MaxAge: h.maxAge, Tiles: h.tiles, OnLeaf: func(m Match) { h.matches = append(h.matches, m) },
		Now: func() time.Time { return h.now }})
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) once(m *Monitor) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Once(ctx)
}

// takeMatches returns the indices reported since the last call.
func (h *harness) takeMatches() []uint64 {
	var idx []uint64
	for _, m := range h.matches {
		if !m.SignatureOK || m.Key != h.a.Public() {
			h.t.Errorf("match %+v", m)
		}
		idx = append(idx, m.Index)
	}
	h.matches = nil
	return idx
}

func wantAlert(t *testing.T, err error, kind AlertKind, fatal bool) {
	t.Helper()
	var a *Alert
	if !errors.As(err, &a) || a.Kind != kind || a.Fatal != fatal {
		t.Fatalf("got %v, want a %s alert (fatal %v)", err, kind, fatal)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("alert has several lines: %q", err)
	}
}

func TestFollowAndResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	m := h.monitor()
	if err := h.once(m); err != nil { // empty log
		t.Fatal(err)
	}
	h.log.add(h.a, 2)
	h.log.add(h.b, 3)
	h.log.add(h.a, 1)
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[0 1 5]" {
		t.Errorf("matches %s, want [0 1 5]", got)
	}
	h.log.add(h.b, 1)
	h.log.add(h.a, 2)
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[7 8]" {
		t.Errorf("matches %s, want [7 8]", got)
	}

	// A new monitor resumes from the state file: nothing is reported twice.
	m = h.monitor()
	if s := m.State(); s.Head.Size != 9 || s.Next != 9 {
		t.Fatalf("resumed state size %d next %d", s.Head.Size, s.Next)
	}
	h.log.add(h.a, 1)
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[9]" {
		t.Errorf("matches after restart %s, want [9]", got)
	}
}

func TestBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.batch = 3
	h.log.add(h.b, 4)
	h.log.add(h.a, 1)
	h.log.add(h.b, 5)
	h.log.add(h.a, 1)
	m := h.monitor()
	for i := 0; i < 4; i++ {
		if err := h.once(m); err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
		if s := m.State(); s.Next != min(uint64(3*(i+1)), 11) {
			t.Fatalf("pass %d: next %d", i, s.Next)
		}
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[4 10]" {
		t.Errorf("matches %s, want [4 10]", got)
	}
	// A restart in the middle of a backlog resumes from the compact range in the state file.
	h.log.add(h.a, 5)
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	m = h.monitor()
	for i := 0; i < 2; i++ {
		if err := h.once(m); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[11 12 13 14 15]" {
		t.Errorf("matches %s, want [11 12 13 14 15]", got)
	}
}

// With Tiles the monitor reads whole entry bundles, never get-leaves, across bundles and batches, and leaves that
// do not hash to the signed root are as fatal as through get-leaves.
func TestTiles(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.tiles, h.batch = true, 200
	h.log.add(h.b, 255)
	h.log.add(h.a, 2) // indices 255, 256: the end of one bundle and the start of the next
	h.log.add(h.b, 40)
	m := h.monitor()
	for i := 0; m.State().Next < 297 || i == 0; i++ {
		if err := h.once(m); err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
		if i > 5 {
			t.Fatalf("stuck at %d", m.State().Next)
		}
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[255 256]" {
		t.Errorf("matches %s, want [255 256]", got)
	}
	h.log.set(func(l *fakeLog) {
		if l.requests["get-leaves"] != 0 || l.requests["tile"] == 0 {
			t.Errorf("requests %v: want tiles only", l.requests)
		}
	})
	h.log.add(h.a, 3)
	h.log.set(func(l *fakeLog) {
		l.leafHook = func(start int, ls []sigsum.Leaf) {
			if start <= 298 && 298 < start+len(ls) {
				ls[298-start].Checksum[0] ^= 1
			}
		}
	})
	wantAlert(t, h.once(m), AlertLeaves, true)
}

func TestForkedHistory(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.b, 5)
	m := h.monitor()
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	// The log rewrites leaf 2 and grows: its consistency proof cannot link the new head to the verified one.
	h.log.fork(2, h.b)
	h.log.add(h.a, 2)
	err := h.once(m)
	wantAlert(t, err, AlertInconsistent, true)
	if s := m.State(); s.Head.Size != 5 || s.Next != 5 {
		t.Errorf("state moved past the verified head: size %d next %d", s.Head.Size, s.Next)
	}
	if len(h.matches) != 0 {
		t.Errorf("reported leaves of a forged head: %v", h.takeMatches())
	}
	// Also after a restart: the state file keeps the verified head.
	wantAlert(t, h.once(h.monitor()), AlertInconsistent, true)
}

func TestSameSizeOtherRoot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.b, 3)
	m := h.monitor()
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	h.log.fork(0, h.b)
	wantAlert(t, h.once(m), AlertInconsistent, true)
}

func TestShrunk(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.b, 3)
	m := h.monitor()
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	h.log.set(func(l *fakeLog) { l.size = 2 })
	wantAlert(t, h.once(m), AlertInconsistent, true)
}

func TestBadSignature(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.b, 3)
	h.log.set(func(l *fakeLog) { l.tamper = func(c *sigsum.CosignedTreeHead) { c.Signature[3] ^= 1 } })
	wantAlert(t, h.once(h.monitor()), AlertSignature, true)
}

func TestLeavesNotInTree(t *testing.T) {
	t.Parallel()
	for _, batch := range []uint64{0, 2} { // the last batch checks the root; earlier ones a consistency proof
		h := newHarness(t)
		h.batch = batch
		h.log.add(h.a, 5)
		forged := h.b
		h.log.set(func(l *fakeLog) {
			l.leafHook = func(start int, ls []sigsum.Leaf) {
				if start == 0 {
					ls[1], _ = sigsum.SignLeaf(forged, sigsum.HashBytes([]byte("not in the tree")))
				}
			}
		})
		m := h.monitor()
		wantAlert(t, h.once(m), AlertLeaves, true)
		if len(h.matches) != 0 || m.State().Next != 0 {
			t.Errorf("batch %d: progress past unverified leaves: %v, next %d", batch, h.takeMatches(), m.State().Next)
		}
	}
}

func TestQuorumAndStale(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.quorum = "w1"
	h.maxAge = time.Hour
	h.log.add(h.a, 2)
	m := h.monitor()
	wantAlert(t, h.once(m), AlertQuorum, false)

	h.log.set(func(l *fakeLog) { l.witnesses = []*sigsum.Ed25519Signer{h.w1} })
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[0 1]" {
		t.Errorf("matches %s", got)
	}
	// The witness keeps cosigning at the same old time: the head turns stale, but the leaves still count.
	h.now = h.now.Add(2 * time.Hour)
	h.log.add(h.a, 1)
	wantAlert(t, h.once(m), AlertStale, false)
	if got := fmt.Sprint(h.takeMatches()); got != "[2]" {
		t.Errorf("matches %s", got)
	}
	// An unreachable log within max-age is reported as such, beyond it as stale.
	h.log.set(func(l *fakeLog) { l.cosignTime = uint64(h.now.Unix()); l.down = false })
	if err := h.once(m); err != nil {
		t.Fatal(err)
	}
	h.log.set(func(l *fakeLog) { l.down = true })
	h.now = h.now.Add(time.Minute)
	wantAlert(t, h.once(m), AlertUnreachable, false)
	h.now = h.now.Add(2 * time.Hour)
	wantAlert(t, h.once(m), AlertStale, false)
}

func TestRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.a, 1)
	h.log.set(func(l *fakeLog) { l.down = true })
	m := h.monitor()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var alerts []AlertKind
	err := m.Run(ctx, 10*time.Millisecond, func(a *Alert) {
		alerts = append(alerts, a.Kind)
		if len(alerts) < 2 {
			return
		}
		// The log comes back, serves its genuine head once, then a forged head of the same size.
		h.log.set(func(l *fakeLog) {
			l.down = false
			served := 0
			l.tamper = func(c *sigsum.CosignedTreeHead) {
				if served++; served > 1 {
					c.RootHash[0] ^= 1
					sth, err := c.TreeHead.Sign(l.key)
					if err != nil {
						t.Error(err)
					}
					c.SignedTreeHead = sth
				}
			}
		})
	})
	wantAlert(t, err, AlertInconsistent, true)
	if fmt.Sprint(alerts) != "[unreachable unreachable]" {
		t.Errorf("alerts before the fatal one: %v", alerts)
	}
	if got := fmt.Sprint(h.takeMatches()); got != "[0]" {
		t.Errorf("matches %s", got)
	}
	if ctx.Err() != nil {
		t.Errorf("Run ended by the timeout, not the alert")
	}
}

func TestStateFileErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.log.add(h.a, 3)
	if err := h.once(h.monitor()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(h.state)
	if err != nil {
		t.Fatal(err)
	}
	other := newFakeLog(t, 9)
	for _, c := range []struct{ name, content, want string }{
		{"not json", "x", "invalid character"},
		{"other log", strings.Replace(string(good), h.log.key.Public().KeyHash().String(), other.key.Public().KeyHash().String(), 1), "belongs to log"},
		{"bad next", strings.Replace(string(good), `"next_index": 3`, `"next_index": 4`, 1), "beyond size"},
		{"bad root", strings.Replace(string(good), `"size": 3`, `"size": 2`, 1), "not signed by the log"},
	} {
		if err := os.WriteFile(h.state, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		c2, _ := client.New(client.Config{URL: h.log.srv.URL})
		pol, _ := policy.Parse(strings.NewReader(fmt.Sprintf("log %s\nquorum none\n", h.log.key.Public())))
		_, err := New(Config{Client: c2, LogKey: h.log.key.Public(), Policy: pol, StateFile: h.state})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

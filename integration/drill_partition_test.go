package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// provedChecker polls, straight and not through any proxy, the primary's published head and every secondary's
// own signed head, and checks that the primary never publishes past what every secondary proved it holds.
type provedChecker struct {
	t       *testing.T
	primary *client.Client
	logKey  sigsum.PublicKey
	secs    []*client.Client
	keys    []sigsum.PublicKey
	mu      sync.Mutex
	checks  int
	errs    []string
	stopc   chan struct{}
	done    chan struct{}
}

func checkProved(t *testing.T, p *node, logKey sigsum.PublicKey, secs []*node) *provedChecker {
	t.Helper()
	c := &provedChecker{t: t, logKey: logKey, stopc: make(chan struct{}), done: make(chan struct{})}
	var err error
	if c.primary, err = client.New(client.Config{URL: p.publicURL(), Timeout: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		sc, err := client.New(client.Config{URL: s.internalURL(), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.secs = append(c.secs, sc)
		c.keys = append(c.keys, s.publicKey())
	}
	go c.run()
	t.Cleanup(c.stop)
	return c
}

func (c *provedChecker) run() {
	defer close(c.done)
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stopc:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.once(ctx)
		cancel()
	}
}

// once reads the published head first, then the secondaries' heads: a secondary only grows, so a head it serves
// later is at least what it had proved when the primary published.
func (c *provedChecker) once(ctx context.Context) {
	pub, err := c.primary.GetTreeHead(ctx)
	if err != nil {
		return
	}
	for i, sc := range c.secs {
		sth, err := sc.GetSecondaryTreeHead(ctx)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.checks++
		switch {
		case !sth.Verify(c.keys[i]):
			c.errs = append(c.errs, fmt.Sprintf("secondary %d serves a head that does not verify with its key", i))
		case pub.Size > sth.Size:
			c.errs = append(c.errs, fmt.Sprintf("published size %d, but secondary %d holds only %d", pub.Size, i, sth.Size))
		case pub.Size == sth.Size && pub.RootHash != sth.RootHash:
			c.errs = append(c.errs, fmt.Sprintf("published root at size %d differs from secondary %d's", pub.Size, i))
		}
		c.mu.Unlock()
	}
}

func (c *provedChecker) stop() {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
	}
	<-c.done
}

// resources returns the primary's goroutines (go_goroutines on its internal /metrics) and open file descriptors.
func resources(t *testing.T, p *node) (goroutines, fds int) {
	t.Helper()
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	// A scrape can meet a keep-alive connection the server just closed: try again on a fresh one.
	for i := 0; ; i++ {
		rsp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Get(p.internalURL() + "/metrics")
		if err != nil {
			if i < 3 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rsp.Body)
		rsp.Body.Close()
		m := regexp.MustCompile(`(?m)^go_goroutines (\d+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no go_goroutines on the primary's /metrics")
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n, len(ents)
	}
}

// settledResources samples resources a few times, a moment apart, and returns the smallest figures: transient
// request goroutines come and go, a leak stays.
func settledResources(t *testing.T, p *node) (goroutines, fds int) {
	t.Helper()
	goroutines, fds = 1<<30, 1<<30
	for i := 0; i < 5; i++ {
		g, f := resources(t, p)
		goroutines, fds = min(goroutines, g), min(fds, f)
		time.Sleep(200 * time.Millisecond)
	}
	return goroutines, fds
}

// TestDrillPartition puts fault-injecting proxies on every path between the primary and its peers: the primary
// asking each secondary for its head, each secondary pulling leaves from the primary, and the primary sending
// checkpoints to its witness. Each fault (refuse, hold, long delay, cut mid-response, short delay) runs for a few
// rotations under load, then the paths heal. The primary must never publish past what the secondaries proved
// (checked against their own heads, read straight), must recover when the paths heal, and must not leak
// goroutines or connections across a cycle.
//
// Cycles: SIGSUMD_DRILL_CYCLES (default 1).
func TestDrillPartition(t *testing.T) {
	t.Parallel()
	cycles := drillCycles(t)
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "200ms", "-timeout", "2s")
	logKey := p.publicKey()

	// The witness, behind a proxy, required by the policy.
	w := newWitness(t, "w1", filepath.Join(dir, "w1"), filepath.Join(p.dir, "key.pub"))
	witProxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", w.port))
	witURL := strings.Replace(witProxy.url(), "https://", "http://", 1) // the witness speaks plain HTTP
	policy := fmt.Sprintf("log %s\nwitness w1 %s %s\ngroup g 1 w1\nquorum g\n", logKey, w.key, witURL)
	policyFile := filepath.Join(p.dir, "trust-policy")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p.extra = append(p.extra, "-policy-file", policyFile)

	// Two secondaries, each pulling through its own proxy and asked through another.
	var secs []*node
	var pull, ask []*faultProxy
	conf, err := os.OpenFile(p.configFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		pp := startProxy(t, fmt.Sprintf("127.0.0.1:%d", p.internal))
		s := newSecondary(t, filepath.Join(dir, fmt.Sprintf("secondary%d", i+1)), p)
		s.extra = []string{"-interval", "100ms", "-timeout", "2s", "-primary-url", pp.url()}
		ap := startProxy(t, fmt.Sprintf("127.0.0.1:%d", s.internal))
		fmt.Fprintf(conf, "\n[[primary.secondaries]]\nurl = %q\npubkey-file = %q\n", ap.url(), filepath.Join(s.dir, "key.pub"))
		secs, pull, ask = append(secs, s), append(pull, pp), append(ask, ap)
	}
	conf.Close()
	w.start()
	for _, s := range secs {
		s.start()
	}
	p.start()
	tailOnFailure(t, append([]*node{p}, secs...)...)

	proved := checkProved(t, p, logKey, secs)
	heads := recordHeads(t, p.publicURL(), logKey, 30*time.Millisecond)
	load := startLoad(t, p.publicURL(), 2, 121, 60*time.Millisecond)
	c := p.client()
	waitFor(t, "leaves acknowledged and a cosigned head published", 60*time.Second, func() bool {
		return load.ackedCount() >= 5 && treeHead(t, c, logKey).Size >= 5
	})
	g0, f0 := settledResources(t, p)

	all := append(append(append([]*faultProxy{}, pull...), ask...), witProxy)
	type fault struct {
		mode  faultMode
		delay time.Duration
	}
	faults := []fault{{faultRefuse, 0}, {faultHold, 0}, {faultDelay, 3 * time.Second}, {faultCut, 0}, {faultDelay, 150 * time.Millisecond}}
	var gPeak, fPeak int
	var recoveries []time.Duration
	for cycle := 0; cycle < cycles; cycle++ {
		for _, f := range faults {
			// One secondary cannot be asked, the other cannot pull, the witness cannot be reached.
			for _, px := range []*faultProxy{ask[0], pull[1], witProxy} {
				px.set(f.mode, f.delay)
			}
			// A cosignature that arrived just before the fault may still be published: start looking a rotation later.
			time.Sleep(500 * time.Millisecond)
			pubBefore := treeHead(t, c, logKey)
			time.Sleep(2500 * time.Millisecond) // several rotations, longer than the primary's timeout
			g, fd := resources(t, p)
			gPeak, fPeak = max(gPeak, g), max(fPeak, fd)
			if f.mode != faultDelay || f.delay > 2*time.Second {
				// A hard fault: nothing new can be proved by every secondary or cosigned, so nothing is published.
				if got := treeHead(t, c, logKey); got.Size != pubBefore.Size {
					t.Errorf("%v: the published head moved from %d to %d during a partition", f.mode, pubBefore.Size, got.Size)
				}
			}
			healed := time.Now()
			for _, px := range all {
				px.set(faultPass, 0)
			}
			// Recovery: a leaf acknowledged after the heal, and a published head that covers it.
			acked := load.ackedCount()
			waitFor(t, fmt.Sprintf("recovery after %v", f.mode), 60*time.Second, func() bool { return load.ackedCount() > acked+2 })
			waitFor(t, fmt.Sprintf("publication after %v", f.mode), 60*time.Second, func() bool {
				return treeHead(t, c, logKey).Size > pubBefore.Size
			})
			recoveries = append(recoveries, time.Since(healed))
		}
	}
	g1, f1 := settledResources(t, p)
	if open := load.finish(60 * time.Second); open > 0 {
		t.Errorf("%d submitted leaves not acknowledged after the paths healed", open)
	}
	waitPublished(t, p)
	heads.stop()
	proved.stop()
	a := auditLog(t, c, logKey, load.ackedLeaves(), heads)

	proved.mu.Lock()
	checks, violations := proved.checks, proved.errs
	proved.mu.Unlock()
	for _, v := range violations {
		t.Errorf("published past what a secondary proved: %s", v)
	}
	var names []string
	for _, f := range faults {
		if f.mode == faultDelay {
			names = append(names, fmt.Sprintf("delay %v", f.delay))
		} else {
			names = append(names, f.mode.String())
		}
	}
	var slowest time.Duration
	for _, r := range recoveries {
		slowest = max(slowest, r)
	}
	fmt.Printf("partition drill: %d cycles x %d faults (%s) on 5 paths: published-vs-proved checks %d, violations %d; "+
		"slowest recovery %v; primary goroutines %d before, %d at peak, %d after; fds %d before, %d at peak, %d after; "+
		"leaves acknowledged %d, lost %d, heads checked %d, forks %d\n",
		cycles, len(faults), strings.Join(names, ", "), checks, len(violations), slowest.Round(time.Millisecond),
		g0, gPeak, g1, f0, fPeak, f1, a.acked, a.lost, a.checked, a.forks)
	if checks == 0 {
		t.Error("the published-vs-proved check never ran")
	}
	// No leak: after the cycle the primary holds about what it held before (a few keep-alive connections and
	// their goroutines may differ).
	if g1 > g0+12 {
		t.Errorf("goroutine leak: %d before the partition cycles, %d after", g0, g1)
	}
	if f1 > f0+6 {
		t.Errorf("file descriptor leak: %d before the partition cycles, %d after", f0, f1)
	}
}

func (n *node) clientInternal(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{URL: n.internalURL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

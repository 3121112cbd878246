package integration

// Shared pieces of the reliability drills (drill_*_test.go): their length, a multi-submitter load, a recorder of
// every published tree head, and the final audit of a log against both.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// drillSeconds is how long the timed drills (the crash drill) put load on the log: SIGSUMD_DRILL_SECONDS, or a
// default short enough for `make test`. `make drills` runs them longer.
func drillSeconds(t *testing.T) time.Duration {
	return drillEnv(t, "SIGSUMD_DRILL_SECONDS", 12, 3600) * time.Second
}

// drillCycles is how many partition cycles the partition drill runs: SIGSUMD_DRILL_CYCLES, default 1.
func drillCycles(t *testing.T) int {
	return int(drillEnv(t, "SIGSUMD_DRILL_CYCLES", 1, 100))
}

func drillEnv(t *testing.T, name string, def, max int64) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return time.Duration(def)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > max {
		t.Fatalf("%s=%q: want an integer from 1 to %d", name, v, max)
	}
	return time.Duration(n)
}

// drillLoad is several submitters, each adding a new leaf every tick and resubmitting every leaf of its own until
// it answers 200 (as Sigsum clients do). It records every leaf that ever got 200.
type drillLoad struct {
	c      *client.Client
	mu     sync.Mutex
	acked  map[sigsum.Leaf]bool
	tries  int // add-leaf requests sent
	fails  int // requests that got no answer or an error status
	adding chan struct{}
	abort  chan struct{}
	wg     sync.WaitGroup
	open   []int // per submitter: leaves not yet acknowledged
}

// startLoad runs n submitters (keys from seeds base, base+1, ...) against the log at url. Each keeps at most
// maxPending unacknowledged leaves: while the log is down the load does not grow without bound.
func startLoad(t *testing.T, url string, n int, base byte, every time.Duration) *drillLoad {
	t.Helper()
	c, err := client.New(client.Config{URL: url, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l := &drillLoad{c: c, acked: map[sigsum.Leaf]bool{}, adding: make(chan struct{}), abort: make(chan struct{}),
		open: make([]int, n)}
	for i := 0; i < n; i++ {
		signer, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{base + byte(i)}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Add(1)
		go l.run(i, fmt.Sprintf("%s submitter %d", t.Name(), i), signer, every)
	}
	t.Cleanup(l.stop)
	return l
}

const maxPending = 20

func (l *drillLoad) run(idx int, tag string, signer sigsum.Signer, every time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var pending []submitted
	adding := l.adding
	for n := 0; ; {
		select {
		case <-l.abort:
			return
		case <-adding:
			adding = nil // closed: resubmit what is pending, add nothing new
		case <-tick.C:
		}
		if adding != nil && len(pending) < maxPending {
			msg := sigsum.HashBytes([]byte(fmt.Sprintf("%s leaf %d", tag, n)))
			n++
			leaf, err := sigsum.SignLeaf(signer, msg)
			if err == nil {
				pending = append(pending, submitted{&sigsum.AddLeafRequest{Message: msg, Signature: leaf.Signature,
					PublicKey: signer.Public()}, leaf})
			}
		}
		var still []submitted
		for _, p := range pending {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			committed, err := l.c.AddLeaf(ctx, p.req, nil)
			cancel()
			l.mu.Lock()
			l.tries++
			if err != nil {
				l.fails++
			}
			if committed {
				l.acked[p.leaf] = true
			}
			l.mu.Unlock()
			if !committed {
				still = append(still, p)
			}
		}
		pending = still
		l.mu.Lock()
		l.open[idx] = len(pending)
		l.mu.Unlock()
		if adding == nil && len(pending) == 0 {
			return
		}
	}
}

// finish stops adding leaves and waits up to timeout until every submitted leaf is acknowledged; it returns how
// many were not.
func (l *drillLoad) finish(timeout time.Duration) int {
	select {
	case <-l.adding:
	default:
		close(l.adding)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		l.stop()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	open := 0
	for _, n := range l.open {
		open += n
	}
	return open
}

func (l *drillLoad) stop() {
	select {
	case <-l.abort:
	default:
		close(l.abort)
	}
	l.wg.Wait()
}

func (l *drillLoad) ackedLeaves() map[sigsum.Leaf]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[sigsum.Leaf]bool, len(l.acked))
	for k := range l.acked {
		out[k] = true
	}
	return out
}

func (l *drillLoad) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// headRecorder polls get-tree-head and keeps every distinct tree head the log ever published, checking each
// signature and that no two heads of one size differ.
type headRecorder struct {
	logKey sigsum.PublicKey
	mu     sync.Mutex
	heads  map[uint64]sigsum.TreeHead // size → first head seen at that size
	forks  []string
	bad    []string // heads whose signature does not verify
	polls  int
	stopc  chan struct{}
	done   chan struct{}
}

func recordHeads(t *testing.T, url string, logKey sigsum.PublicKey, every time.Duration) *headRecorder {
	t.Helper()
	c, err := client.New(client.Config{URL: url, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := &headRecorder{logKey: logKey, heads: map[uint64]sigsum.TreeHead{}, stopc: make(chan struct{}),
		done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-h.stopc:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cth, err := c.GetTreeHead(ctx)
			cancel()
			if err == nil {
				h.add(cth)
			}
		}
	}()
	t.Cleanup(h.stop)
	return h
}

// add records a head seen by any means (the poller, or a test reading get-tree-head itself).
func (h *headRecorder) add(cth sigsum.CosignedTreeHead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.polls++
	if !cth.Verify(h.logKey) {
		h.bad = append(h.bad, fmt.Sprintf("size %d root %x", cth.Size, cth.RootHash[:4]))
		return
	}
	if old, ok := h.heads[cth.Size]; ok {
		if old.RootHash != cth.RootHash {
			h.forks = append(h.forks, fmt.Sprintf("size %d: root %x and root %x", cth.Size, old.RootHash[:4], cth.RootHash[:4]))
		}
		return
	}
	h.heads[cth.Size] = cth.TreeHead
}

func (h *headRecorder) stop() {
	select {
	case <-h.stopc:
	default:
		close(h.stopc)
	}
	<-h.done
}

func (h *headRecorder) all() []sigsum.TreeHead {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]sigsum.TreeHead, 0, len(h.heads))
	for _, th := range h.heads {
		out = append(out, th)
	}
	return out
}

// audit is the outcome of checking a log against what its clients saw.
type audit struct {
	final   sigsum.TreeHead
	leaves  int // in the final log
	acked   int // leaves that ever got 200
	lost    int // of those, missing from the final log
	checked int // recorded heads checked against the final one
	forks   int // recorded heads inconsistent with the final one, or two roots for one size
}

// auditLog reads the whole published log and checks: every acknowledged leaf is in it, no leaf twice, the root is
// the root of its leaves, and every recorded head is consistent with the final head (verified consistency
// proofs; equal roots at equal sizes; none larger). It fails the test on any loss or fork.
func auditLog(t *testing.T, c *client.Client, logKey sigsum.PublicKey, acked map[sigsum.Leaf]bool, h *headRecorder) audit {
	t.Helper()
	ctx := context.Background()
	cth := treeHead(t, c, logKey)
	h.add(cth)
	a := audit{final: cth.TreeHead, acked: len(acked)}
	leaves := allLeaves(t, c, cth.Size)
	a.leaves = len(leaves)
	seen := make(map[sigsum.Leaf]bool, len(leaves))
	hashes := make([]sigsum.Hash, len(leaves))
	for i, l := range leaves {
		if seen[l] {
			t.Errorf("leaf at index %d appears twice in the log", i)
		}
		seen[l] = true
		hashes[i] = l.Hash()
	}
	if sigsum.RootHash(hashes) != cth.RootHash {
		t.Errorf("the final root is not the root of the final leaves")
	}
	for l := range acked {
		if !seen[l] {
			a.lost++
		}
	}
	h.mu.Lock()
	a.forks = len(h.forks)
	for _, f := range h.forks {
		t.Errorf("fork: two published heads of one size: %s", f)
	}
	for _, b := range h.bad {
		t.Errorf("published head with a bad signature: %s", b)
	}
	h.mu.Unlock()
	for _, th := range h.all() {
		a.checked++
		switch {
		case th.Size > cth.Size:
			a.forks++
			t.Errorf("a head of size %d was published; the final head has only %d", th.Size, cth.Size)
		case th.Size == cth.Size:
			if th.RootHash != cth.RootHash {
				a.forks++
				t.Errorf("a head of the final size %d with another root was published", th.Size)
			}
		case th.Size == 0:
			if th.RootHash != sigsum.RootHash(nil) {
				a.forks++
				t.Errorf("a head of size 0 with a non-empty root was published")
			}
		default:
			proof, err := c.GetConsistencyProof(ctx, th.Size, cth.Size)
			if err == nil {
				err = proof.Verify(&th, &cth.TreeHead)
			}
			if err != nil {
				a.forks++
				t.Errorf("recorded head of size %d is not consistent with the final head of size %d: %v", th.Size, cth.Size, err)
			}
		}
	}
	if a.lost > 0 {
		t.Errorf("%d of %d acknowledged leaves are missing from the final log", a.lost, a.acked)
	}
	return a
}

// rawDo sends one request with a body and headers of the caller's choice and returns status, body and headers.
func rawDo(t *testing.T, method, url string, body []byte, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	c := &http.Client{Timeout: 20 * time.Second}
	rsp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(rsp.Body, 1<<20))
	return rsp.StatusCode, string(b), rsp.Header
}

// waitPublished waits until the primary publishes everything it signed (witness cosignatures can lag behind the
// commitment that add-leaf's 200 reports), so that an audit of the published log sees every acknowledged leaf.
func waitPublished(t *testing.T, p *node) {
	t.Helper()
	waitFor(t, "the published head to reach the signed one", 60*time.Second, func() bool {
		m := scrape(t, p)
		signed, ok1 := m["sigsumd_signed_tree_size"]
		published, ok2 := m["sigsumd_published_tree_size"]
		return ok1 && ok2 && signed == published
	})
	time.Sleep(100 * time.Millisecond) // one more poll of the head recorder
}

// tailOnFailure logs the end of each node's log when the test fails, before the nodes are stopped.
func tailOnFailure(t *testing.T, nodes ...*node) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			t.Logf("%s %s log, last lines (alive %v):\n%s", n.role, n.dir, n.alive(), n.tail())
		}
	})
}

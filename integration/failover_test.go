package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// trickle submits a new leaf every tick to whichever primary is current, resubmits every leaf until it answers
// 200 (as Sigsum clients do), and records when each got its 200.
type trickle struct {
	t       *testing.T
	sub     *submitter
	target  atomic.Pointer[client.Client]
	mu      sync.Mutex
	pending []submitted
	done    map[sigsum.Leaf]time.Time // leaf → when it first got 200
	added   map[sigsum.Leaf]time.Time // leaf → when it was first submitted
	stop    chan struct{}             // no new leaves; finish committing the pending ones
	abort   chan struct{}             // give up at once
	stopped chan struct{}
}

func startTrickle(t *testing.T, c *client.Client, every time.Duration) *trickle {
	tr := &trickle{t: t, sub: newSubmitter(t, 21), done: map[sigsum.Leaf]time.Time{}, added: map[sigsum.Leaf]time.Time{},
		stop: make(chan struct{}), abort: make(chan struct{}), stopped: make(chan struct{})}
	tr.target.Store(c)
	go tr.run(every)
	return tr
}

func (tr *trickle) run(every time.Duration) {
	defer close(tr.stopped)
	tick := time.NewTicker(every)
	defer tick.Stop()
	adding := true
	for {
		select {
		case <-tr.abort:
			return
		case <-tr.stop:
			adding = false
			tr.stop = nil // keep resubmitting until every leaf is committed
		case <-tick.C:
		}
		c := tr.target.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tr.mu.Lock()
		if adding {
			req, leaf := tr.sub.next(tr.t)
			tr.pending = append(tr.pending, submitted{req, leaf})
			tr.added[leaf] = time.Now()
		}
		var still []submitted
		for _, p := range tr.pending {
			committed, err := c.AddLeaf(ctx, p.req, nil)
			if err == nil && committed {
				tr.done[p.leaf] = time.Now()
				continue
			}
			still = append(still, p)
		}
		tr.pending = still
		finished := !adding && len(still) == 0
		tr.mu.Unlock()
		cancel()
		if finished {
			return
		}
	}
}

// firstNewCommit returns how long after t the first leaf submitted after t got its 200.
func (tr *trickle) firstNewCommit(t time.Time) (time.Duration, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var best time.Duration
	found := false
	for l, at := range tr.done {
		if tr.added[l].After(t) && (!found || at.Sub(t) < best) {
			best, found = at.Sub(t), true
		}
	}
	return best, found
}

// committed returns the leaves that got 200 so far.
func (tr *trickle) committed() map[sigsum.Leaf]time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[sigsum.Leaf]time.Time, len(tr.done))
	for l, at := range tr.done {
		out[l] = at
	}
	return out
}

// allLeaves reads the whole published log.
func allLeaves(t *testing.T, c *client.Client, size uint64) []sigsum.Leaf {
	t.Helper()
	var out []sigsum.Leaf
	for start := uint64(0); start < size; {
		leaves, err := c.GetLeaves(context.Background(), start, size)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, leaves...)
		start += uint64(len(leaves))
	}
	return out
}

var sizeLine = regexp.MustCompile(`(?m)^size=(\d+)$`)

func storedSize(t *testing.T, n *node) uint64 {
	t.Helper()
	m := sizeLine.FindStringSubmatch(ctl(t, "status", "-role", "secondary", "-config", n.configFile()))
	if m == nil {
		t.Fatalf("no size in sigsumctl status of %s", n.dir)
	}
	size, _ := strconv.ParseUint(m[1], 10, 64)
	return size
}

// TestFailoverDrill kills the primary under load, promotes a secondary and checks that nothing committed is lost.
func TestFailoverDrill(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 2)
	cl.start()
	old := cl.primary
	oldClient := old.client()
	tr := startTrickle(t, oldClient, 30*time.Millisecond)
	defer func() {
		close(tr.abort)
		<-tr.stopped
	}()
	waitFor(t, "leaves committed on the old primary", 30*time.Second, func() bool { return len(tr.committed()) >= 20 })

	// What the old primary published last, and the leaves it published, at their indices.
	lastOld := treeHead(t, oldClient, cl.logKey)
	oldLeaves := allLeaves(t, oldClient, lastOld.Size)
	publishedFile := filepath.Join(t.TempDir(), "published")
	if err := os.WriteFile(publishedFile, lastOld.MarshalASCII(), 0o644); err != nil {
		t.Fatal(err)
	}
	old.kill()
	killedAt := time.Now()
	committedBefore := tr.committed()

	// Promote the secondary that holds the most. The other one runs again while promote asks it for its tree.
	for _, s := range cl.secondaries {
		s.stop()
	}
	chosen, other := cl.secondaries[0], cl.secondaries[1]
	if storedSize(t, other) > storedSize(t, chosen) {
		chosen, other = other, chosen
	}
	other.start()
	out := ctl(t, "promote", "-config", chosen.configFile(), "-key-file", filepath.Join(old.dir, "key"),
		"-published", publishedFile, "-secondary", other.internalURL()+","+filepath.Join(other.dir, "key.pub"))
	t.Logf("sigsumctl promote:\n%s", out)
	for _, want := range []string{"recorded head", "-published " + publishedFile, "secondary " + other.internalURL(),
		"sigsumd -role primary -config " + filepath.Join(chosen.dir, "sigsumd-primary.toml")} {
		if !strings.Contains(out, want) {
			t.Errorf("promote's output does not mention %q", want)
		}
	}

	// The promoted node becomes the primary with the configuration promote wrote, the other secondary re-pointed
	// and a fresh one.
	np := &node{t: t, role: "primary", dir: chosen.dir, public: chosen.public, internal: chosen.internal,
		conf: filepath.Join(chosen.dir, "sigsumd-primary.toml"), extra: []string{"-interval", "300ms"},
		logPub: filepath.Join(old.dir, "key.pub")}
	t.Cleanup(np.kill)
	other.stop()
	other.extra = []string{"-interval", "100ms", "-primary-url", np.internalURL(), "-primary-public-url", np.publicURL()}
	fresh := newSecondary(t, filepath.Join(t.TempDir(), "fresh"), np)
	np.addSecondaries(fresh)
	np.start()
	newClient := np.client()
	firstNew := treeHead(t, newClient, cl.logKey)
	other.start()
	fresh.start()
	tr.target.Store(newClient)

	var firstCommitNew time.Duration
	waitFor(t, "an add-leaf 200 on the new primary", 60*time.Second, func() bool {
		for _, at := range tr.committed() {
			if at.After(killedAt) {
				firstCommitNew = at.Sub(killedAt)
				return true
			}
		}
		return false
	})
	var firstFresh time.Duration
	waitFor(t, "an add-leaf 200 for a leaf first submitted after the kill", 60*time.Second, func() bool {
		var ok bool
		firstFresh, ok = tr.firstNewCommit(killedAt)
		return ok
	})
	// Printed, not only logged: CI output keeps the figure.
	fmt.Printf("failover drill: SIGKILL -> first add-leaf 200 on the promoted primary %v; for a leaf submitted after the kill %v\n",
		firstCommitNew.Round(time.Millisecond), firstFresh.Round(time.Millisecond))

	time.Sleep(time.Second) // submissions continue
	close(tr.stop)
	select {
	case <-tr.stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("leaves submitted around the failover were not all committed")
	}

	// The new primary's first head extends the old primary's last one.
	if firstNew.Size < lastOld.Size {
		t.Fatalf("new primary's first head has %d leaves, the old primary published %d", firstNew.Size, lastOld.Size)
	}
	if firstNew.Size > lastOld.Size {
		p, err := newClient.GetConsistencyProof(context.Background(), lastOld.Size, firstNew.Size)
		if err != nil || p.Verify(&lastOld.TreeHead, &firstNew.TreeHead) != nil {
			t.Fatalf("first new head is not consistent with the last old one: %v", err)
		}
	} else if firstNew.RootHash != lastOld.RootHash {
		t.Fatal("first new head has the old size but another root")
	}

	final := treeHead(t, newClient, cl.logKey)
	leaves := allLeaves(t, newClient, final.Size)
	index := map[sigsum.Leaf]int{}
	for i, l := range leaves {
		if _, dup := index[l]; dup {
			t.Fatalf("leaf at index %d appears twice", i)
		}
		index[l] = i
	}
	for i, l := range oldLeaves {
		if index[l] != i {
			t.Fatalf("leaf %d of the old log is at index %d in the new one", i, index[l])
		}
	}
	all := tr.committed()
	for l := range all {
		if _, ok := index[l]; !ok {
			t.Fatalf("a leaf that got 200 is missing from the new log")
		}
	}
	if len(all) <= len(committedBefore) {
		t.Fatalf("no submissions committed after the failover (%d before, %d after)", len(committedBefore), len(all))
	}
	t.Logf("drill: %d leaves committed before the kill, %d in all; old published %d, new first %d, final %d",
		len(committedBefore), len(all), lastOld.Size, firstNew.Size, final.Size)
}

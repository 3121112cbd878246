package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// opsLoad is a steady add-leaf load from several workers, each with its own submitter key: every worker adds a
// new leaf and resubmits its pending ones in a loop, as Sigsum clients do, through downtime (errors are retried).
type opsLoad struct {
	t       *testing.T
	c       *client.Client
	mu      sync.Mutex
	tried   []submitted               // every leaf ever sent, in order
	done    map[sigsum.Leaf]time.Time // leaf → when it first got 200
	errors  int
	stop    chan struct{} // no new leaves: commit the pending ones, then return
	abort   chan struct{}
	wg      sync.WaitGroup
	stopped bool
}

func startOpsLoad(t *testing.T, c *client.Client, subs []*submitter, every time.Duration) *opsLoad {
	l := &opsLoad{t: t, c: c, done: map[sigsum.Leaf]time.Time{}, stop: make(chan struct{}), abort: make(chan struct{})}
	for _, s := range subs {
		l.wg.Add(1)
		go l.worker(s, every)
	}
	t.Cleanup(func() {
		select {
		case <-l.abort:
		default:
			close(l.abort)
		}
		l.wg.Wait()
	})
	return l
}

func (l *opsLoad) worker(s *submitter, every time.Duration) {
	defer l.wg.Done()
	var pending []submitted
	adding := true
	stop := l.stop
	for {
		select {
		case <-l.abort:
			return
		case <-stop:
			adding, stop = false, nil
		case <-time.After(every):
		}
		if adding {
			l.mu.Lock()
			req, leaf := s.next(l.t)
			l.tried = append(l.tried, submitted{req, leaf})
			l.mu.Unlock()
			pending = append(pending, submitted{req, leaf})
		}
		var still []submitted
		for _, p := range pending {
			committed, err := l.c.AddLeaf(context.Background(), p.req, nil)
			l.mu.Lock()
			switch {
			case err != nil:
				l.errors++
			case committed:
				l.done[p.leaf] = time.Now()
			}
			l.mu.Unlock()
			if err != nil || !committed {
				still = append(still, p)
			}
		}
		pending = still
		if !adding && len(pending) == 0 {
			return
		}
	}
}

// committed returns the leaves that got 200 so far.
func (l *opsLoad) committed() map[sigsum.Leaf]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[sigsum.Leaf]bool{}
	for leaf := range l.done {
		out[leaf] = true
	}
	return out
}

// finish stops adding leaves and waits until every leaf sent got 200; it returns them all.
func (l *opsLoad) finish(timeout time.Duration) []submitted {
	l.t.Helper()
	close(l.stop)
	finished := make(chan struct{})
	go func() { l.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(timeout):
		close(l.abort)
		l.t.Fatalf("leaves still not committed %v after the load stopped", timeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]submitted(nil), l.tried...)
}

// checkStateFiles checks every state file a stopped primary left in dir: no temporary file of an interrupted
// atomic write, and each known file parses (the sth file and the published head verify with the log key). It
// returns the sth file's head and the published head.
func checkStateFiles(t *testing.T, dir string, logKey sigsum.PublicKey) (sth sigsum.SignedTreeHead, published sigsum.CosignedTreeHead) {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind (an atomic write was cut short)", path)
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state files after shutdown: %s", strings.Join(names, " "))

	if sth, err = primary.ReadSTHFile(filepath.Join(dir, "sth"), logKey); err != nil {
		t.Errorf("sth file: %v", err)
	}
	if _, err := os.Stat(primary.StartupFile(filepath.Join(dir, "sth"))); err == nil {
		t.Error("the startup file is still there after the first start")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tree-id")); err != nil || !regexp.MustCompile(`^tree-id=[1-9][0-9]*\n`).Match(b) {
		t.Errorf("tree-id file %q: %v", b, err)
	}
	if published, err = witness.LoadPublished(filepath.Join(dir, "published-tree-head"), logKey); err != nil {
		t.Errorf("published-tree-head: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "witness-state")); err != nil ||
		!regexp.MustCompile(`^([0-9a-f]{64}=(0|[1-9][0-9]*)\n)+$`).Match(b) {
		t.Errorf("witness-state %q: %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "rate-limit-state")); err != nil || !json.Valid(b) {
		t.Errorf("rate-limit-state %q: %v", b, err)
	}
	if published.Size > sth.Size {
		t.Errorf("published size %d beyond the signed size %d", published.Size, sth.Size)
	}
	return sth, published
}

// TestOpsShutdownUnderLoad stops a primary with SIGTERM while four submitters keep adding leaves: it exits
// cleanly, leaves every state file whole (no temporary file, each parses and verifies), restarts from its sth
// file, and every leaf that got 200 before the stop is in the log afterwards.
func TestOpsShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g any w1", "w1")
	p := cl.primary
	subs := []*submitter{newSubmitter(t, 71), newSubmitter(t, 72), newSubmitter(t, 73), newSubmitter(t, 74)}
	var limits strings.Builder
	for _, s := range subs {
		fmt.Fprintf(&limits, "key %s 100000\n", s.signer.Public().KeyHash())
	}
	limitsFile := filepath.Join(t.TempDir(), "rate-limits")
	if err := os.WriteFile(limitsFile, []byte(limits.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p.extra = append(p.extra, "-rate-limit-file", limitsFile)
	ws[0].start()
	cl.start()

	load := startOpsLoad(t, opsClient(t, p, 3*time.Second), subs, 20*time.Millisecond)
	waitFor(t, "20 leaves committed under load", 60*time.Second, func() bool { return len(load.committed()) >= 20 })

	t0 := time.Now()
	code := p.stopAndExitCode()
	took := time.Since(t0)
	before := load.committed()
	t.Logf("SIGTERM under load: exit code %d after %v; %d leaves had 200", code, took, len(before))
	if code != 0 {
		t.Errorf("primary exited with code %d on SIGTERM:\n%s", code, p.tail())
	}
	if !strings.Contains(p.tail(), "msg=stopped") {
		t.Errorf("no clean \"stopped\" line at the end of the log:\n%s", p.tail())
	}
	sth, published := checkStateFiles(t, p.dir, cl.logKey)
	t.Logf("sth file size %d, published size %d", sth.Size, published.Size)
	if uint64(len(before)) > sth.Size {
		t.Errorf("%d leaves got 200 but the sth file holds only %d", len(before), sth.Size)
	}

	// The load keeps knocking while the primary is down; it comes back from its sth file.
	time.Sleep(500 * time.Millisecond)
	p.start()
	c := p.client()
	cth := treeHead(t, c, cl.logKey)
	if cth.Size < published.Size {
		t.Fatalf("restarted primary serves size %d, below the published %d it stopped with", cth.Size, published.Size)
	}
	time.Sleep(time.Second)
	all := load.finish(90 * time.Second)
	t.Logf("%d leaves sent, %d request errors while the primary was down", len(all), load.errors)
	waitFor(t, "every leaf published", 60*time.Second, func() bool {
		return treeHead(t, c, cl.logKey).Size == uint64(len(all))
	})
	final := checkLog(t, c, cl.logKey, all, []sigsum.TreeHead{sth.TreeHead, published.TreeHead})
	inLog := map[sigsum.Leaf]bool{}
	for _, l := range allLeaves(t, c, final.Size) {
		inLog[l] = true
	}
	for leaf := range before {
		if !inLog[leaf] {
			t.Errorf("leaf %x got 200 before the shutdown but is not in the log", leaf.Checksum[:4])
		}
	}
	after, err := primary.ReadSTHFile(filepath.Join(p.dir, "sth"), cl.logKey)
	if err != nil || after.Size < sth.Size {
		t.Errorf("sth file after the restart: size %d (was %d), %v", after.Size, sth.Size, err)
	}
}

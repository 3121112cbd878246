package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The disk drill needs a data directory that can really fill up or turn read-only under a process running as root
// (tests run as root here and in CI, so file modes stop nothing): the primary's data directory is a small tmpfs
// mounted for the test, filled with a filler file, and later bind-mounted read-only onto itself. A read-only bind
// mount keeps the files a process already has open writable (SQLite keeps its database, WAL and shm open), but
// no file can be created or renamed there: the sth file cannot be replaced. Mounting needs CAP_SYS_ADMIN: as
// another user the drill is skipped, as root a failure to mount fails it.

func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the disk drill mounts a tmpfs: it needs root (CAP_SYS_ADMIN); CI runs as root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v (the disk drill needs mount(2), as root)", dir, err)
	}
	t.Cleanup(func() { unmountAll(dir) })
}

// unmountAll removes every mount stacked on dir (the read-only bind, the tmpfs).
func unmountAll(dir string) {
	for i := 0; i < 4; i++ {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return
		}
	}
}

func readOnlyBind(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting %s: %v", dir, err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		syscall.Unmount(dir, 0)
		t.Fatalf("remounting %s read-only: %v", dir, err)
	}
}

// filler fills a file system and keeps it full.
type filler struct {
	f      *os.File
	buf    []byte
	filled int64
}

func fill(t *testing.T, dir string) *filler {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	fl := &filler{f: f, buf: make([]byte, 64<<10)}
	fl.top()
	if fl.filled == 0 {
		t.Fatal("could not write any filler")
	}
	return fl
}

// top writes until the file system is full (bounded: the tmpfs is small).
func (fl *filler) top() {
	for i := 0; i < 100000; i++ {
		n, err := fl.f.Write(fl.buf)
		fl.filled += int64(n)
		if err != nil {
			small := fl.buf[:512]
			for j := 0; j < 256; j++ { // the last pages
				n, err := fl.f.Write(small)
				fl.filled += int64(n)
				if err != nil {
					break
				}
			}
			return
		}
	}
}

func (fl *filler) free() {
	fl.f.Close()
	os.Remove(fl.f.Name())
}

// diskAnswers tallies add-leaf answers for new leaves during a disk fault.
type diskAnswers struct {
	codes   map[int]int
	reasons map[string]bool
	leaves  []submitted
	first   []string // per leaf: its first answer
}

// probeAddLeaf submits new leaves by s every 150ms for d and checks each answer: 202 (queued), or 5xx with a
// one-line reason; never 200 for a leaf nobody submitted before, never a 4xx.
func probeAddLeaf(t *testing.T, p *node, s *submitter, d time.Duration) diskAnswers {
	t.Helper()
	a := diskAnswers{codes: map[int]int{}, reasons: map[string]bool{}}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(150 * time.Millisecond) {
		req, leaf := s.next(t)
		code, body, _ := rawDo(t, http.MethodPost, p.publicURL()+"/add-leaf", req.MarshalASCII(), nil)
		a.codes[code]++
		a.leaves = append(a.leaves, submitted{req, leaf})
		a.first = append(a.first, fmt.Sprintf("%d %q", code, body))
		switch {
		case code == http.StatusAccepted:
		case code >= 500 && code <= 599:
			if body == "" || !strings.HasSuffix(body, "\n") || strings.Count(body, "\n") != 1 {
				t.Errorf("add-leaf %d with a full or read-only disk: reason %q is not one line", code, body)
			}
			a.reasons[fmt.Sprintf("%d %s", code, strings.TrimSpace(body))] = true
		default:
			t.Errorf("add-leaf of a new leaf with a full or read-only disk: %d %q; want 202 or 5xx with a reason", code, body)
		}
	}
	return a
}

func (a diskAnswers) String() string {
	var parts []string
	for code, n := range a.codes {
		parts = append(parts, fmt.Sprintf("%d x%d", code, n))
	}
	sort.Strings(parts)
	var rs []string
	for r := range a.reasons {
		rs = append(rs, fmt.Sprintf("%q", r))
	}
	sort.Strings(rs)
	return strings.Join(parts, ", ") + " " + strings.Join(rs, " ")
}

// alive reports whether the node's process is still running.
func (n *node) alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// TestDrillDisk runs a primary on a small tmpfs under load, fills the disk, frees it, makes the data directory
// read-only, makes it writable again, and finally SIGKILLs and restarts the primary. While the disk is in
// trouble add-leaf answers 202 or 5xx with a reason and publishes nothing it could not store; when space returns
// the node recovers by itself; nothing acknowledged is ever lost.
func TestDrillDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pdir := filepath.Join(dir, "primary")
	mountTmpfs(t, pdir, "24m")
	p := newNode(t, "primary", pdir, "-interval", "200ms")
	s := newSecondary(t, filepath.Join(dir, "secondary"), p)
	p.addSecondaries(s)
	tailOnFailure(t, p, s)
	s.start()
	p.start()
	logKey := p.publicKey()
	c := p.client()
	heads := recordHeads(t, p.publicURL(), logKey, 30*time.Millisecond)
	load := startLoad(t, p.publicURL(), 2, 141, 80*time.Millisecond)
	waitFor(t, "acknowledged leaves", 60*time.Second, func() bool { return load.ackedCount() >= 10 })
	probe := newSubmitter(t, 149)
	var probed []submitted
	var firsts []string

	type phase struct {
		name          string
		start, finish func()
	}
	var fl *filler
	var recovered []string
	for _, ph := range []phase{
		{"full", func() { fl = fill(t, pdir) }, func() { fl.free() }},
		{"read-only", func() { readOnlyBind(t, pdir) }, func() {
			if err := syscall.Unmount(pdir, syscall.MNT_DETACH); err != nil {
				t.Fatalf("unmounting the read-only bind: %v", err)
			}
		}},
	} {
		ph.start()
		time.Sleep(600 * time.Millisecond) // what was in flight settles
		pubBefore := treeHead(t, c, logKey)
		if fl != nil && ph.name == "full" {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // keep the disk full: SQLite may free pages as it checkpoints
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
						fl.top()
					}
				}
			}()
			ans := probeAddLeaf(t, p, probe, 3*time.Second)
			// While add-leaf answers 503 for want of space, /readyz says so: a load balancer stops sending leaves.
			if ans.codes[http.StatusServiceUnavailable] > 0 {
				if code, body := getStatus(t, p.internalURL()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "storage full") {
					t.Errorf("full disk: /readyz %d %q, want 503 storage full", code, body)
				}
			}
			close(stop)
			<-done
			probed, firsts = append(probed, ans.leaves...), append(firsts, ans.first...)
			recovered = append(recovered, fmt.Sprintf("%s (%d bytes of filler): %s", ph.name, fl.filled, ans))
		} else {
			ans := probeAddLeaf(t, p, probe, 3*time.Second)
			probed, firsts = append(probed, ans.leaves...), append(firsts, ans.first...)
			recovered = append(recovered, fmt.Sprintf("%s: %s", ph.name, ans))
		}
		if got := treeHead(t, c, logKey); got.Size != pubBefore.Size {
			t.Errorf("%s disk: the published head moved from %d to %d while the sth file could not be written",
				ph.name, pubBefore.Size, got.Size)
		}
		if !p.alive() {
			t.Errorf("%s disk: the primary exited:\n%s", ph.name, p.tail())
			p.kill()
		}
		acked := load.ackedCount()
		healed := time.Now()
		ph.finish()
		if !p.alive() {
			p.kill()
			p.start()
		}
		waitFor(t, "recovery after a "+ph.name+" disk", 60*time.Second, func() bool { return load.ackedCount() > acked+5 })
		waitFor(t, "/readyz after a "+ph.name+" disk", 60*time.Second, func() bool {
			code, _ := getStatus(t, p.internalURL()+"/readyz")
			return code == http.StatusOK
		})
		recovered[len(recovered)-1] += fmt.Sprintf("; recovered %v after the disk healed", time.Since(healed).Round(time.Millisecond))
		// A failure that repeats with every request is logged once, then with a count: not once per add-leaf.
		if n := strings.Count(p.tail(), `msg="backend failure"`); n > 5 {
			t.Errorf("%s disk: %d backend failure lines among the log's last lines, want the failure logged once with a count", ph.name, n)
		}
	}

	// Every probe leaf (202 or 5xx during the trouble) is committed once the disk is healthy again.
	var stuck []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		stuck = nil
		for i, l := range probed {
			committed, err := c.AddLeaf(context.Background(), l.req, nil)
			if err != nil || !committed {
				stuck = append(stuck, fmt.Sprintf("leaf %s (first answer %s): now %v, %v", l.leaf.Hash().String()[:8], firsts[i], committed, err))
			}
		}
		if len(stuck) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(stuck) > 0 {
		t.Fatalf("%d probe leaves not committed 60s after the disk recovered:\n%s", len(stuck), strings.Join(stuck, "\n"))
	}
	if open := load.finish(60 * time.Second); open > 0 {
		t.Errorf("%d leaves not acknowledged after the disk recovered", open)
	}
	acked := load.ackedLeaves()
	for _, l := range probed {
		acked[l.leaf] = true
	}
	// Durability: what was acknowledged survives a SIGKILL after the trouble.
	p.kill()
	p.start()
	waitPublished(t, p)
	heads.stop()
	a := auditLog(t, c, logKey, acked, heads)
	fmt.Printf("disk drill: %s; leaves acknowledged %d, lost %d, heads checked %d, forks %d\n",
		strings.Join(recovered, "; "), a.acked, a.lost, a.checked, a.forks)
}

package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// witnessProc is a sigsum-testwitness process with its own key and state.
type witnessProc struct {
	t     *testing.T
	name  string
	dir   string
	port  int
	key   sigsum.PublicKey
	cmd   *exec.Cmd
	done  chan struct{}
	logFn string
}

func newWitness(t *testing.T, name, dir string, logKeyFile string) *witnessProc {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	ctl(t, "keygen", "-o", filepath.Join(dir, "key"))
	pub, err := key.ReadPublicKeyFile(filepath.Join(dir, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	w := &witnessProc{t: t, name: name, dir: dir, port: freePort(t), key: pub, logFn: logKeyFile}
	t.Cleanup(w.stop)
	return w
}

func (w *witnessProc) url() string { return fmt.Sprintf("http://127.0.0.1:%d", w.port) }

func (w *witnessProc) start() {
	w.t.Helper()
	logf, err := os.OpenFile(filepath.Join(w.dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.cmd = exec.Command(filepath.Join(binDir, "sigsum-testwitness"), "-listen", fmt.Sprintf("127.0.0.1:%d", w.port),
		"-key-file", filepath.Join(w.dir, "key"), "-name", w.name, "-log-key-file", w.logFn,
		"-state-file", filepath.Join(w.dir, "state"))
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(w.cmd, w.done)
	waitFor(w.t, "witness "+w.name+" listening", 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", w.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (w *witnessProc) stop() {
	if w.cmd == nil {
		return
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
	w.cmd = nil
}

// witnessCluster is a primary with one secondary and witnesses under a policy.
func witnessCluster(t *testing.T, group string, names ...string) (*cluster, []*witnessProc) {
	t.Helper()
	cl := newCluster(t, 1)
	logKeyFile := filepath.Join(cl.primary.dir, "key.pub")
	var ws []*witnessProc
	policy := fmt.Sprintf("log %s\n", cl.logKey)
	for _, n := range names {
		w := newWitness(t, n, filepath.Join(t.TempDir(), n), logKeyFile)
		ws = append(ws, w)
		policy += fmt.Sprintf("witness %s %s %s\n", n, w.key, w.url())
	}
	policy += group + "\nquorum g\n"
	policyFile := filepath.Join(cl.primary.dir, "trust-policy")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cl.primary.extra = append(cl.primary.extra, "-policy-file", policyFile)
	return cl, ws
}

// checkCosigned verifies every cosignature of cth and returns the set of witnesses that cosigned.
func checkCosigned(t *testing.T, cth sigsum.CosignedTreeHead, logKey sigsum.PublicKey, ws []*witnessProc) map[string]bool {
	t.Helper()
	by := map[sigsum.Hash]*witnessProc{}
	for _, w := range ws {
		by[w.key.KeyHash()] = w
	}
	got := map[string]bool{}
	for _, c := range cth.Cosignatures {
		w, ok := by[c.KeyHash]
		if !ok || !c.Verify(w.key, sigsum.Origin(logKey), &cth.TreeHead) {
			t.Fatalf("published cosignature by %x does not verify", c.KeyHash[:4])
		}
		got[w.name] = true
	}
	return got
}

func TestWitnessQuorum(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 2 w1 w2", "w1", "w2")
	for _, w := range ws {
		w.start()
	}
	cl.start()
	c := cl.primary.client()
	sub := newSubmitter(t, 31)

	first := submit(t, c, sub, 2)
	allCommitted(t, c, first, 60*time.Second)
	var cth sigsum.CosignedTreeHead
	waitFor(t, "a head of 2 leaves cosigned by both witnesses", 30*time.Second, func() bool {
		cth = treeHead(t, c, cl.logKey)
		return cth.Size == 2 && len(checkCosigned(t, cth, cl.logKey, ws)) == 2
	})

	// With one witness down, new leaves are committed (200) but the published head stays where both cosigned.
	ws[1].stop()
	second := submit(t, c, sub, 2)
	allCommitted(t, c, append(first, second...), 60*time.Second)
	time.Sleep(1500 * time.Millisecond)
	if got := treeHead(t, c, cl.logKey); got.Size != 2 || len(checkCosigned(t, got, cl.logKey, ws)) != 2 {
		t.Fatalf("with a witness down the published head moved to %d (%d cosignatures)", got.Size, len(got.Cosignatures))
	}

	// A restarted primary serves the published head with its cosignatures, not bare.
	ws[0].stop()
	cl.primary.stop()
	cl.primary.start()
	if got := treeHead(t, c, cl.logKey); got.Size != 2 || len(checkCosigned(t, got, cl.logKey, ws)) != 2 {
		t.Fatalf("after a restart get-tree-head serves size %d with %d cosignatures, want 2 with 2", got.Size, len(got.Cosignatures))
	}

	// Witnesses back (each from its own state): publication resumes.
	ws[0].start()
	ws[1].start()
	waitFor(t, "publication to resume at 4 leaves", 30*time.Second, func() bool {
		cth = treeHead(t, c, cl.logKey)
		return cth.Size == 4 && len(checkCosigned(t, cth, cl.logKey, ws)) == 2
	})
	checkLog(t, c, cl.logKey, append(first, second...), nil)
}

func TestWitnessOneOfTwo(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1 w2", "w1", "w2")
	ws[0].start() // w2 never runs
	cl.start()
	c := cl.primary.client()
	leaves := submit(t, c, newSubmitter(t, 32), 3)
	allCommitted(t, c, leaves, 60*time.Second)
	waitFor(t, "a head of 3 leaves cosigned by w1", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		got := checkCosigned(t, cth, cl.logKey, ws)
		return cth.Size == 3 && got["w1"] && !got["w2"]
	})
}

// Promote asks witnesses too (C2SP tlog-witness monitor retrieval): a secondary that recorded no published head and
// holds none of the log's leaves, with the old primary gone, is refused because a witness shows the checkpoint of
// the log it cosigned, naming that witness; without the witness nothing shows how far the log went.
func TestPromoteAsksWitnesses(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1", "w1")
	p := cl.primary
	// bare follows no published head and cannot reach the primary: it holds nothing.
	bare := &node{t: t, role: "secondary", dir: filepath.Join(t.TempDir(), "bare"), public: freePort(t), internal: freePort(t)}
	ctl(t, "init", "-role", "secondary", "-data-dir", bare.dir, "-primary-url", fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		"-log-public-key", filepath.Join(p.dir, "key.pub"))
	ws[0].start()
	cl.start()
	c := p.client()
	leaves := submit(t, c, newSubmitter(t, 91), 3)
	allCommitted(t, c, leaves, 60*time.Second)
	waitFor(t, "a head of 3 leaves cosigned by w1", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		return cth.Size == 3 && checkCosigned(t, cth, cl.logKey, ws)["w1"]
	})
	p.kill()
	args := []string{"promote", "-config", bare.configFile(), "-key-file", filepath.Join(p.dir, "key"),
		"-log-public-key", filepath.Join(p.dir, "key.pub")}
	ctlFails(t, "no source showed", args...)
	ctlFails(t, fmt.Sprintf("witness %s shows a published head of size 3: the local tree has only 0 leaves", ws[0].url()),
		append(args, "-witness", ws[0].url())...)
}

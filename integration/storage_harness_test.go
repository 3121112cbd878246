package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
)

var storageLine = regexp.MustCompile(`(?m)^#storage = .*$`)

// newNodeOn is newNode on another backend than the default SQLite store: backend is a top-level configuration
// line, `storage = "mysql:..."` or `trillian-rpc-server = "host:port"`. The SQLite tree that sigsumctl init made
// is dropped and init runs again on the configured backend (for an external Trillian the node makes its tree at
// its first start).
func newNodeOn(t *testing.T, role, dir, backend string, extra ...string) *node {
	t.Helper()
	n := newNode(t, role, dir, extra...)
	conf, err := os.ReadFile(n.configFile())
	if err != nil {
		t.Fatal(err)
	}
	if !storageLine.Match(conf) {
		t.Fatalf("%s has no #storage line to replace", n.configFile())
	}
	conf = storageLine.ReplaceAll(conf, []byte(strings.ReplaceAll(backend, "$", "$$")))
	if err := os.WriteFile(n.configFile(), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "trillian.db*"))
	for _, f := range append(old, filepath.Join(dir, "tree-id")) {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	ctl(t, "init", "-role", role, "-data-dir", dir)
	return n
}

// storageBackend is the configuration line of an embedded store.
func storageBackend(storage string) string { return fmt.Sprintf("storage = %q", storage) }

// rpcBackend is the configuration line of an external Trillian.
func rpcBackend(addr string) string { return fmt.Sprintf("trillian-rpc-server = %q", addr) }

// submitParallel submits n new leaves from workers concurrent submitters and returns them with the time it took
// until every one was accepted (202, or 200 for none).
func submitParallel(t *testing.T, c *client.Client, seed byte, workers, n int) ([]submitted, time.Duration) {
	t.Helper()
	var (
		mu   sync.Mutex
		out  []submitted
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < workers; w++ {
		sub := newSubmitter(t, seed+byte(w))
		count := n / workers
		if w < n%workers {
			count++
		}
		reqs := make([]submitted, count)
		for i := range reqs {
			req, leaf := sub.next(t)
			reqs[i] = submitted{req, leaf}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range reqs {
				if _, err := c.AddLeaf(context.Background(), r.req, nil); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("add-leaf: %v", errs[0])
	}
	return out, took
}

// trillianBinaries builds Trillian's own log server and log signer (v1.8.0, the version go.mod requires) once per
// test binary, in module mode outside this module, and returns their directory.
var trillianBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sigsumd-trillian-bin")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/google/trillian").Output()
	if err != nil {
		return "", fmt.Errorf("trillian version: %w", err)
	}
	v := strings.TrimSpace(string(out))
	cmd := exec.Command("go", "install",
		"github.com/google/trillian/cmd/trillian_log_server@"+v, "github.com/google/trillian/cmd/trillian_log_signer@"+v)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	cmd.Dir = os.TempDir() // outside this module
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building trillian_log_server and trillian_log_signer %s: %w\n%s", v, err, b)
	}
	return dir, nil
})

// externalTrillian is a trillian_log_server and trillian_log_signer pair on one database, run as a reference
// deployment runs them.
type externalTrillian struct {
	t      *testing.T
	dsn    string // go-sql-driver DSN
	rpc    string // the log server's host:port
	procs  []*exec.Cmd
	logDir string
}

// startExternalTrillian runs Trillian's log server and signer on loopback against the MySQL DSN.
func startExternalTrillian(t *testing.T, dsn string) *externalTrillian {
	t.Helper()
	bin, err := trillianBinaries()
	if err != nil {
		t.Fatal(err)
	}
	x := &externalTrillian{t: t, dsn: dsn, rpc: fmt.Sprintf("127.0.0.1:%d", freePort(t)), logDir: t.TempDir()}
	common := []string{"-storage_system=mysql", "-mysql_uri=" + dsn, "-quota_system=noop", "-http_endpoint="}
	x.run(filepath.Join(bin, "trillian_log_server"), append(common, "-rpc_endpoint="+x.rpc)...)
	x.run(filepath.Join(bin, "trillian_log_signer"), append(common, "-rpc_endpoint="+fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-force_master", "-election_system=noop", "-sequencer_interval=20ms")...)
	t.Cleanup(x.stop)
	return x
}

func (x *externalTrillian) run(bin string, args ...string) {
	x.t.Helper()
	logf, err := os.Create(filepath.Join(x.logDir, filepath.Base(bin)+".log"))
	if err != nil {
		x.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		x.t.Fatal(err)
	}
	x.procs = append(x.procs, cmd)
}

// stop ends the server and signer (SIGTERM, then waits).
func (x *externalTrillian) stop() {
	for _, p := range x.procs {
		p.Process.Signal(os.Interrupt)
	}
	for _, p := range x.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	x.procs = nil
}

// logs returns the end of the Trillian processes' logs, for failure messages.
func (x *externalTrillian) logs() string {
	var b strings.Builder
	for _, name := range []string{"trillian_log_server", "trillian_log_signer"} {
		c, _ := os.ReadFile(filepath.Join(x.logDir, name+".log"))
		if len(c) > 2000 {
			c = c[len(c)-2000:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", name, c)
	}
	return b.String()
}

// execCtl runs sigsumctl and returns its output and error (ctl fails the test on an error instead).
func execCtl(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "sigsumctl"), args...).CombinedOutput()
	return string(out), err
}

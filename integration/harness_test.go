// Package integration runs real sigsumd processes on loopback: a primary, its secondaries, and the tools that
// operate them.
package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/nodetls"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// binDir holds the sigsumd and sigsumctl binaries built once for the package's tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sigsumd-integration-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/sigsumd", "../cmd/sigsumctl", "../cmd/sigsum-testwitness")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	// The nodes' internal listeners are TLS with self-signed node certificates (nodetls): the operator's endpoints
	// there (/metrics, /readyz) and start probes are read like curl -k. Replication clients pin keys (nodeClient).
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Ports for the nodes' listeners come from a range below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, 32768 and up by default), and each is handed out once per test binary.
// A port taken from the ephemeral range with Listen(":0") and closed again can be taken, before the node binds it,
// by an outgoing connection of a parallel test (the drills open thousands) or by a killed node of another test
// that restarts on the port it had: the new node then fails to bind, or its start probe reaches someone else.
const (
	portLow  = 21000
	portHigh = 32000
)

var ports struct {
	sync.Mutex
	next   int
	handed map[int]bool
}

// freePort returns a loopback port outside the ephemeral range that no other test of this binary was given and
// that nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.handed == nil {
		ports.handed = map[int]bool{}
		ports.next = portLow + os.Getpid()%(portHigh-portLow) // parallel test binaries start apart
	}
	for i := 0; i < portHigh-portLow; i++ {
		p := ports.next
		ports.next++
		if ports.next >= portHigh {
			ports.next = portLow
		}
		if ports.handed[p] || p == 25672 { // 25672: RabbitMQ's distribution port on CI machines
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		ports.handed[p] = true
		return p
	}
	t.Fatalf("no free loopback port in %d-%d", portLow, portHigh)
	return 0
}

func ctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "sigsumctl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sigsumctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// node is one sigsumd process and its data directory.
type node struct {
	t        *testing.T
	role     string
	dir      string
	public   int
	internal int
	extra    []string // more flags
	conf     string   // configuration file, if not <dir>/sigsumd.toml
	insecure bool     // the internal API is plain HTTP (insecure-internal-http), not mutual TLS
	logPub   string   // a primary's log public key file, if not <dir>/key.pub (a promoted secondary)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func (n *node) internalURL() string {
	scheme := "https"
	if n.insecure {
		scheme = "http"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, n.internal)
}
func (n *node) publicURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.public) }
func (n *node) configFile() string {
	if n.conf != "" {
		return n.conf
	}
	return filepath.Join(n.dir, "sigsumd.toml")
}
func (n *node) logFile() string { return filepath.Join(n.dir, "log") }

func (n *node) publicKey() sigsum.PublicKey {
	n.t.Helper()
	pub, err := key.ReadPublicKeyFile(filepath.Join(n.dir, "key.pub"))
	if err != nil {
		n.t.Fatal(err)
	}
	return pub
}

// newNode initialises a node's data directory with sigsumctl init.
func newNode(t *testing.T, role, dir string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, role: role, dir: dir, public: freePort(t), internal: freePort(t), extra: extra}
	ctl(t, "init", "-role", role, "-data-dir", dir)
	t.Cleanup(n.kill)
	return n
}

// newSecondary initialises a secondary of primary p, following p's published head (sigsumctl init -log-url
// -log-public-key), pulling every 100 ms.
func newSecondary(t *testing.T, dir string, p *node) *node {
	t.Helper()
	n := &node{t: t, role: "secondary", dir: dir, public: freePort(t), internal: freePort(t),
		extra: []string{"-interval", "100ms", "-primary-url", p.internalURL()}}
	logPub := p.logPub
	if logPub == "" {
		logPub = filepath.Join(p.dir, "key.pub")
	}
	ctl(t, "init", "-role", "secondary", "-data-dir", dir, "-primary-url", p.internalURL(),
		"-log-url", p.publicURL(), "-log-public-key", logPub)
	t.Cleanup(n.kill)
	return n
}

// trust gives secondary s the primary's node key (the log's key), as sigsumctl init -log-public-key does: its
// internal client accepts only a primary that proves it.
func trust(t *testing.T, s *node, logKey sigsum.PublicKey) {
	t.Helper()
	path := filepath.Join(s.dir, "log.pub")
	os.Remove(path)
	if err := key.WritePublicKeyFile(path, logKey, "log"); err != nil {
		t.Fatal(err)
	}
}

// loadNodeSigner reads n's node key (<dir>/key).
func loadNodeSigner(t *testing.T, n *node) sigsum.Signer {
	t.Helper()
	priv, err := key.ReadPrivateKeyFile(filepath.Join(n.dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sigsum.NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// nodeCert is n's internal TLS certificate, made from its node key as sigsumd makes it.
func nodeCert(t *testing.T, n *node) *tls.Certificate {
	t.Helper()
	c, err := nodetls.Certificate(loadNodeSigner(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// nodeClientHTTP is an HTTP client that authenticates as node as and accepts only n's node key.
func nodeClientHTTP(t *testing.T, as, n *node) *http.Client {
	t.Helper()
	return nodetls.HTTPClient(nodeCert(t, as), n.publicKey())
}

// startNodeServer serves h over the internal TLS of a node whose key s holds.
func startNodeServer(t *testing.T, s sigsum.Signer, h http.Handler) *httptest.Server {
	t.Helper()
	c, err := nodetls.Certificate(s)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = nodetls.ServerConfig(c)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// addSecondaries appends secondaries to a primary's configuration.
func (n *node) addSecondaries(secs ...*node) {
	f, err := os.OpenFile(n.configFile(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	for _, s := range secs {
		fmt.Fprintf(f, "\n[[primary.secondaries]]\nurl = %q\npubkey-file = %q\n", s.internalURL(), filepath.Join(s.dir, "key.pub"))
	}
}

// args are the node's command line.
func (n *node) args() []string {
	args := []string{"-role", n.role, "-config", n.configFile(),
		"-external-endpoint", fmt.Sprintf("127.0.0.1:%d", n.public),
		"-internal-endpoint", fmt.Sprintf("127.0.0.1:%d", n.internal),
		"-sequencer-interval", "20ms", "-log-level", "debug"}
	return append(args, n.extra...)
}

// start runs the node and waits until its listeners answer.
func (n *node) start() {
	n.t.Helper()
	n.startWithEnv()
}

// startWithEnv is start with env (KEY=VALUE each) added to the process's environment.
func (n *node) startWithEnv(env ...string) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		n.t.Fatalf("%s already running", n.dir)
	}
	logf, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "sigsumd"), n.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd, n.log, n.done = cmd, logf, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(n.done)

	probe := n.internalURL() + "/get-leaves/0/1"
	if n.role == "secondary" {
		probe = n.internalURL() + "/get-secondary-tree-head"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-n.done:
			n.t.Fatalf("%s exited at start:\n%s", n.role, n.tail())
		default:
		}
		if rsp, err := http.Get(probe); err == nil {
			rsp.Body.Close()
			// The public listener is bound before the internal one serves; a node that lost it exits.
			if rsp, err := http.Get(n.publicURL() + "/"); err == nil {
				rsp.Body.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s did not start listening:\n%s", n.role, n.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the node with sig and waits for it.
func (n *node) stopWith(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
		n.t.Errorf("%s did not stop on %v", n.dir, sig)
	}
	n.log.Close()
	n.cmd = nil
	if b, _ := os.ReadFile(n.logFile()); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		n.t.Errorf("%s: the race detector found a data race:\n%s", n.dir, n.tail())
	}
}

func (n *node) stop() { n.stopWith(syscall.SIGTERM) }
func (n *node) kill() { n.stopWith(syscall.SIGKILL) }

// tail returns the end of the node's log, for failure messages.
func (n *node) tail() string {
	b, _ := os.ReadFile(n.logFile())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (n *node) client() *client.Client {
	c, err := client.New(client.Config{URL: n.publicURL(), Timeout: 10 * time.Second})
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// submitter makes signed add-leaf requests.
type submitter struct {
	signer sigsum.Signer
	n      int
}

func newSubmitter(t *testing.T, seed byte) *submitter {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return &submitter{signer: s}
}

func (s *submitter) next(t *testing.T) (*sigsum.AddLeafRequest, sigsum.Leaf) {
	t.Helper()
	msg := sigsum.HashBytes([]byte(fmt.Sprintf("%s %d", t.Name(), s.n)))
	s.n++
	leaf, err := sigsum.SignLeaf(s.signer, msg)
	if err != nil {
		t.Fatal(err)
	}
	return &sigsum.AddLeafRequest{Message: msg, Signature: leaf.Signature, PublicKey: s.signer.Public()}, leaf
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func treeHead(t *testing.T, c *client.Client, logKey sigsum.PublicKey) sigsum.CosignedTreeHead {
	t.Helper()
	cth, err := c.GetTreeHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !cth.Verify(logKey) {
		t.Fatalf("tree head of size %d does not verify with the log key", cth.Size)
	}
	return cth
}

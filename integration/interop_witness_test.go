package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"

	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestInteropWitnesses runs witness software nobody here wrote against a real primary with one secondary (issue
// #23): the reference witness (sigsum-go's sigsum-witness) under the local policy name wit1, and litewitness
// (torchwood) both at a direct URL and through litebastion, its reverse proxy. Each time sigsumctl submit must
// return a proof whose cosignatures meet the policy, the reference verifier (sigsum-go's sigsum-verify) and
// sigsumctl verify must accept that proof under the same policy, and the published head must carry every witness's
// valid cosignature. It logs how long submit takes to return a cosigned proof with one and with two witnesses.
//
// Opt-in (SIGSUMD_TEST_INTEROP=1): it builds the third-party binaries from the Go module proxy (cached in the user's
// cache directory, see interop_build_test.go).
func TestInteropWitnesses(t *testing.T) {
	if os.Getenv("SIGSUMD_TEST_INTEROP") != "1" {
		t.Log("not run: set SIGSUMD_TEST_INTEROP=1 to build litewitness, litebastion, sigsum-witness and sigsum-verify " +
			"from the Go module proxy and run them against sigsumd")
		return
	}
	tw := buildThirdParty(t, torchwoodModule, "cmd/litewitness", "cmd/witnessctl", "cmd/litebastion")
	sg := buildThirdParty(t, sigsumGoModule, "cmd/sigsum-witness", "cmd/sigsum-verify")

	t.Run("reference witness as wit1", func(t *testing.T) {
		cl := newCluster(t, 1, "-interval", interopInterval.String())
		w := startSigsumWitness(t, sg, cl)
		policy := fmt.Sprintf("log %s %s\nwitness wit1 %s %s\nquorum wit1\n", cl.logKey, cl.primary.publicURL(), w.key, w.url)
		pol := startInteropCluster(t, cl, policy)
		checkInteropSubmit(t, cl, sg, pol, []*extWitness{w})
	})

	t.Run("litewitness direct and through litebastion", func(t *testing.T) {
		cl := newCluster(t, 1, "-interval", interopInterval.String())
		direct := startLitewitness(t, tw, cl, "direct", nil)
		b := startBastion(t)
		bastioned := startLitewitness(t, tw, cl, "bastioned", b)
		policy := fmt.Sprintf("log %s %s\nwitness lw-direct %s %s\nwitness lw-bastion %s %s\ngroup both all lw-direct lw-bastion\nquorum both\n",
			cl.logKey, cl.primary.publicURL(), direct.key, direct.url, bastioned.key, bastioned.url)
		// The bastion's certificate is self-signed: the primary trusts it through Go's system pool, which reads
		// SSL_CERT_FILE (crypto/x509 on Linux). sigsumd itself needs nothing for a witness behind a bastion.
		pol := startInteropCluster(t, cl, policy, "SSL_CERT_FILE="+b.cert)
		if !strings.HasPrefix(bastioned.url, "https://127.0.0.1:") {
			t.Fatalf("bastion URL %s", bastioned.url)
		}
		checkInteropSubmit(t, cl, sg, pol, []*extWitness{direct, bastioned})
	})

	t.Run("litewitness through the built-in bastion", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cert, key, _ := selfSigned(t, t.TempDir())
		cl := newCluster(t, 1, "-interval", interopInterval.String(), "-bastion-endpoint", addr,
			"-bastion-cert-file", cert, "-bastion-key-file", key)
		w := newLitewitness(t, tw, cl, "builtin")
		// No URL: the witness connects to the primary's bastion, and is reached over that connection.
		policy := fmt.Sprintf("log %s %s\nwitness lw-builtin %s\nquorum lw-builtin\n", cl.logKey, cl.primary.publicURL(), w.key)
		pol := startInteropCluster(t, cl, policy)
		w.dial(t, addr, cert)
		checkInteropSubmit(t, cl, sg, pol, []*extWitness{&w.extWitness})
	})
}

// extWitness is a third-party witness: its policy URL, its key, and its process.
type extWitness struct {
	name string // a name for messages; the policy's name is the policy's business
	url  string
	key  sigsum.PublicKey
	proc *extProc
	// size, if set, reads the size of the log's latest head the witness itself recorded.
	size func(t *testing.T) uint64
}

// extProc is a third-party process logging to a file in its directory.
type extProc struct {
	t    *testing.T
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc runs bin with args in dir (its working directory), with env added to the environment, until the test
// ends.
func startProc(t *testing.T, name, dir, bin string, env []string, args ...string) *extProc {
	t.Helper()
	p := &extProc{t: t, name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *extProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *extProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail is the end of the process's log, for failure messages.
func (p *extProc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// waitUp polls ok until it holds, failing with the process's log if it exits or 30 s pass.
func (p *extProc) waitUp(what string, ok func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if p.exited() {
			p.t.Fatalf("%s exited before %s:\n%s", p.name, what, p.tail())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (%s):\n%s", what, p.name, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answers200 reports whether GET url answers 200 through hc.
func answers200(hc *http.Client, url string) bool {
	rsp, err := hc.Get(url)
	if err != nil {
		return false
	}
	rsp.Body.Close()
	return rsp.StatusCode == http.StatusOK
}

// startSigsumWitness runs the reference witness (sigsum-witness) for cl's log, with a key made by sigsumctl keygen.
func startSigsumWitness(t *testing.T, bin string, cl *cluster) *extWitness {
	t.Helper()
	dir := t.TempDir()
	ctl(t, "keygen", "-o", filepath.Join(dir, "key"))
	pub, err := key.ReadPublicKeyFile(filepath.Join(dir, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, "sigsum-witness", dir, filepath.Join(bin, "sigsum-witness"), nil,
		"--signing-key", filepath.Join(dir, "key"), "--log-key", filepath.Join(cl.primary.dir, "key.pub"),
		"--state-file", filepath.Join(dir, "state"), addr)
	p.waitUp("sigsum-witness listening", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &extWitness{name: "sigsum-witness", url: "http://" + addr, key: pub, proc: p}
}

// startAgent runs an ssh-agent holding priv and returns its socket: OpenSSH's ssh-agent when it is installed,
// else an in-memory keyring served on a Unix socket (serveAgent).
func startAgent(t *testing.T, priv ed25519.PrivateKey) string {
	t.Helper()
	path, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Logf("interop: no ssh-agent on PATH, litewitness signs through an in-memory agent")
		kr := agent.NewKeyring()
		if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
		return serveAgent(t, kr)
	}
	dir, err := os.MkdirTemp("", "agent") // short: a Unix socket path is limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	p := startProc(t, "ssh-agent", dir, path, nil, "-D", "-a", sock)
	var conn net.Conn
	p.waitUp("ssh-agent listening", func() bool {
		conn, err = net.Dial("unix", sock)
		return err == nil
	})
	defer conn.Close()
	if err := agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatalf("adding the witness key to ssh-agent: %v", err)
	}
	return sock
}

// bastion is a litebastion process: its address and the certificate (self-signed, for 127.0.0.1) it serves.
type bastion struct {
	addr     string
	dir      string
	cert     string // PEM file of the certificate, which is its own root
	backends string // file of allowed witness key hashes
	proc     *extProc
	client   *http.Client // trusts cert
}

// startBastion runs litebastion on loopback with a fresh self-signed certificate (its -testcert mode reads
// localhost.pem and localhost-key.pem from its working directory).
func startBastion(t *testing.T) *bastion {
	t.Helper()
	b := &bastion{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), dir: t.TempDir()}
	certPEM, keyPEM := selfSignedLoopbackCert(t)
	b.cert = writeFile(t, b.dir, "localhost.pem", string(certPEM))
	writeFile(t, b.dir, "localhost-key.pem", string(keyPEM))
	b.backends = writeFile(t, b.dir, "backends", "")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	b.client = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return b
}

// run starts the bastion, accepting the witnesses whose key hashes are given.
func (b *bastion) run(t *testing.T, bin string, allowed ...sigsum.Hash) {
	t.Helper()
	var lines []string
	for _, h := range allowed {
		lines = append(lines, h.String())
	}
	writeFile(t, b.dir, "backends", strings.Join(lines, "\n")+"\n")
	b.proc = startProc(t, "litebastion", b.dir, filepath.Join(bin, "litebastion"), nil,
		"-listen", b.addr, "-testcert", "-backends", b.backends)
	b.proc.waitUp("litebastion listening", func() bool {
		c, err := tls.Dial("tcp", b.addr, &tls.Config{RootCAs: b.client.Transport.(*http.Transport).TLSClientConfig.RootCAs})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// selfSignedLoopbackCert makes a self-signed ECDSA certificate for 127.0.0.1 that is its own CA.
func selfSignedLoopbackCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "sigsumd interop test bastion"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// litewitness is a litewitness for a cluster's log, its key in an ssh-agent, not started yet.
type litewitness struct {
	extWitness
	bin, dir string
	args     []string
}

// newLitewitness prepares a litewitness for cl's log: its key in an ssh-agent, the log added with witnessctl
// add-sigsum-log.
func newLitewitness(t *testing.T, bin string, cl *cluster, name string) *litewitness {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var pub sigsum.PublicKey
	copy(pub[:], priv.Public().(ed25519.PublicKey))
	kh := pub.KeyHash()
	sock := startAgent(t, priv)
	db := filepath.Join(dir, "litewitness.db")
	if out, err := exec.Command(filepath.Join(bin, "witnessctl"), "add-sigsum-log", "-db", db, "-key", cl.logKey.String()).CombinedOutput(); err != nil {
		t.Fatalf("witnessctl add-sigsum-log: %v\n%s", err, out)
	}
	return &litewitness{bin: bin, dir: dir,
		args: []string{"-db", db, "-name", "interop.sigsumd.test/" + name, "-key", kh.String(), "-ssh-agent", sock},
		extWitness: extWitness{name: "litewitness " + name, key: pub, size: func(t *testing.T) uint64 {
			return litewitnessSize(t, filepath.Join(bin, "witnessctl"), db, sigsum.Origin(cl.logKey))
		}}}
}

// dial starts the litewitness dialling out to the bastion at addr, whose certificate is in certFile (with -testcert
// litewitness trusts rootCA.pem from its working directory).
func (w *litewitness) dial(t *testing.T, addr, certFile string) {
	t.Helper()
	cert, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.dir, "rootCA.pem", string(cert))
	w.proc = startProc(t, "litewitness", w.dir, filepath.Join(w.bin, "litewitness"), nil, append(w.args, "-bastion", addr, "-testcert")...)
}

// startLitewitness runs litewitness for cl's log, its key in an ssh-agent: listening on loopback, or, with b, dialling
// out to the bastion, which then serves it at https://<bastion>/<hex key hash>.
func startLitewitness(t *testing.T, bin string, cl *cluster, name string, b *bastion) *extWitness {
	t.Helper()
	w := newLitewitness(t, bin, cl, name)
	if b == nil {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		w.url = "http://" + addr
		w.proc = startProc(t, "litewitness", w.dir, filepath.Join(bin, "litewitness"), nil, append(w.args, "-listen", addr)...)
		w.proc.waitUp("litewitness listening", func() bool { return answers200(http.DefaultClient, w.url+"/") })
		return &w.extWitness
	}
	kh := w.key.KeyHash()
	b.run(t, bin, kh)
	w.url = fmt.Sprintf("https://%s/%s", b.addr, kh)
	w.dial(t, b.addr, b.cert)
	w.proc.waitUp("litewitness reachable through litebastion", func() bool {
		if b.proc.exited() {
			t.Fatalf("litebastion exited:\n%s", b.proc.tail())
		}
		return answers200(b.client, w.url+"/")
	})
	return &w.extWitness
}

// litewitnessSize reads, with witnessctl list-logs, the size litewitness's database holds for the log origin.
func litewitnessSize(t *testing.T, witnessctl, db, origin string) uint64 {
	t.Helper()
	out, err := exec.Command(witnessctl, "list-logs", "-db", db).Output()
	if err != nil {
		t.Fatalf("witnessctl list-logs: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var l struct {
			Origin string `json:"origin"`
			Size   uint64 `json:"size"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("witnessctl list-logs line %q: %v", line, err)
		}
		if l.Origin == origin {
			return l.Size
		}
	}
	t.Fatalf("witnessctl list-logs does not list %s:\n%s", origin, out)
	return 0
}

// startInteropCluster writes the primary's trust policy and starts the cluster, the primary with env added to its
// environment. It returns the policy file, which the clients use too.
func startInteropCluster(t *testing.T, cl *cluster, policy string, env ...string) string {
	t.Helper()
	pol := writeFile(t, cl.primary.dir, "trust-policy", policy)
	cl.primary.extra = append(cl.primary.extra, "-policy-file", pol)
	for _, s := range cl.secondaries {
		s.start()
	}
	cl.primary.startWithEnv(env...)
	return pol
}

// checkInteropSubmit submits leaves with sigsumctl submit under the policy, timing each until it returns with a
// cosigned proof; verifies the proofs with the reference sigsum-verify (sg) and with sigsumctl verify; and checks
// that the published head carries a valid cosignature of every witness.
// The primary's rotation interval (newCluster's) and sigsumctl submit's poll interval bound the latency measured.
const (
	interopInterval = 300 * time.Millisecond
	interopPoll     = 100 * time.Millisecond
)

func checkInteropSubmit(t *testing.T, cl *cluster, sg, pol string, ws []*extWitness) {
	t.Helper()
	dir := t.TempDir()
	sub := filepath.Join(dir, "submitter")
	ctl(t, "keygen", "-o", sub)
	const runs = 3
	var files []string
	var took []time.Duration
	for i := 0; i < runs; i++ {
		f := writeFile(t, dir, fmt.Sprintf("release-%d.txt", i), fmt.Sprintf("%s release %d\n", t.Name(), i))
		cmd := exec.Command(filepath.Join(binDir, "sigsumctl"), "submit", "-key-file", sub, "-policy", pol,
			"-timeout", "90s", "-cosign-timeout", "60s", "-poll", interopPoll.String(), f)
		// A race-built sigsumctl sleeps a second at exit (GORACE atexit_sleep_ms, default 1000): not the log's time.
		cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			var logs string
			for _, w := range ws {
				logs += fmt.Sprintf("--- %s:\n%s\n", w.name, w.proc.tail())
			}
			t.Fatalf("sigsumctl submit: %v\n%s\n--- primary:\n%s\n%s", err, out, cl.primary.tail(), logs)
		}
		took = append(took, time.Since(start))
		files = append(files, f)
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	plural := "es"
	if len(ws) == 1 {
		plural = ""
	}
	t.Logf("interop: submit -> cosigned proof with %d witness%s: %v (median of %d runs %v; primary -interval %s, sigsumctl -poll %s)",
		len(ws), plural, sorted[runs/2].Round(time.Millisecond), runs, roundAll(took), interopInterval, interopPoll)

	// The reference verifier accepts every proof under the same policy, and rejects a proof for other data.
	verify := filepath.Join(sg, "sigsum-verify")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(verify, "-k", sub+".pub", "-p", pol, f+".proof")
		cmd.Stdin = bytes.NewReader(data)
		if out, err := cmd.CombinedOutput(); err != nil {
			proof, _ := os.ReadFile(f + ".proof")
			t.Fatalf("sigsum-verify %s.proof: %v\n%s\nproof:\n%s", filepath.Base(f), err, out, proof)
		}
	}
	cmd := exec.Command(verify, "-k", sub+".pub", "-p", pol, files[0]+".proof")
	cmd.Stdin = strings.NewReader("not the submitted data\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("sigsum-verify accepted a proof for other data:\n%s", out)
	}
	out := ctl(t, append([]string{"verify", "-key-file", sub + ".pub", "-policy", pol}, files...)...)
	if strings.Count(out, ": ok: leaf index") != runs {
		t.Fatalf("sigsumctl verify:\n%s", out)
	}

	// The published head of all the leaves carries every witness's cosignature, each valid.
	c := cl.primary.client()
	var cth sigsum.CosignedTreeHead
	waitFor(t, fmt.Sprintf("a published head of %d leaves cosigned by every witness", runs), 30*time.Second, func() bool {
		cth = treeHead(t, c, cl.logKey)
		got := map[sigsum.Hash]bool{}
		for _, cs := range cth.Cosignatures {
			for _, w := range ws {
				if cs.KeyHash == w.key.KeyHash() {
					if !cs.Verify(w.key, sigsum.Origin(cl.logKey), &cth.TreeHead) {
						t.Fatalf("published cosignature of %s does not verify", w.name)
					}
					got[cs.KeyHash] = true
				}
			}
		}
		return cth.Size == runs && len(got) == len(ws)
	})
	// The witnesses' own records followed the log (1, 2, then 3 leaves: consistency proofs each time).
	for _, w := range ws {
		if w.size == nil {
			continue
		}
		if got := w.size(t); got != runs {
			t.Fatalf("%s records size %d for the log, want %d", w.name, got, runs)
		}
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

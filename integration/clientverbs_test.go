package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/proof"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// ctlExit runs sigsumctl and returns its stdout, stderr and exit code; it fails the test only if it cannot run.
func ctlExit(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "sigsumctl"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("sigsumctl %s: %v", strings.Join(args, " "), err)
	return "", "", 0
}

// ctlFails runs sigsumctl, which must fail with a one-line reason on stderr containing want.
func ctlFails(t *testing.T, want string, args ...string) {
	t.Helper()
	stdout, stderr, code := ctlExit(t, args...)
	if code == 0 {
		t.Fatalf("sigsumctl %s succeeded, want failure %q:\n%s", strings.Join(args, " "), want, stdout)
	}
	if !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("sigsumctl %s: stderr %q, want one line containing %q", strings.Join(args, " "), stderr, want)
	}
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// leafChecksum is the checksum of the leaf for data: H(H(data)).
func leafChecksum(data string) string {
	m := sha256.Sum256([]byte(data))
	c := sha256.Sum256(m[:])
	return hex.EncodeToString(c[:])
}

// monitorLeaves parses the checksums of monitor's leaf lines, which must all have valid signatures.
func monitorLeaves(t *testing.T, stdout string) []string {
	t.Helper()
	var sums []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if l == "" {
			continue
		}
		var idx int
		var kh, sum, sig string
		if _, err := fmt.Sscanf(l, "leaf index=%d key_hash=%s checksum=%s signature=%s", &idx, &kh, &sum, &sig); err != nil || sig != "ok" {
			t.Fatalf("monitor line %q: %v", l, err)
		}
		sums = append(sums, sum)
	}
	slices.Sort(sums)
	return sums
}

func sortedChecksums(data ...string) []string {
	var sums []string
	for _, d := range data {
		sums = append(sums, leafChecksum(d))
	}
	slices.Sort(sums)
	return sums
}

// TestClientVerbs runs submit → proof → verify, the tampering checks and monitor against a real primary with one
// secondary and a policy with quorum none.
func TestClientVerbs(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 1)
	cl.start()
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	ctl(t, "keygen", "-o", alice)
	ctl(t, "keygen", "-o", bob)
	pol := writeFile(t, dir, "policy", fmt.Sprintf("log %s %s\nquorum none\n", cl.logKey, cl.primary.publicURL()))
	submitArgs := func(keyFile string, args ...string) []string {
		return append([]string{"submit", "-key-file", keyFile, "-policy", pol, "-timeout", "90s", "-poll", "200ms"}, args...)
	}

	// One submission first: the tree of size 1 has an empty inclusion proof.
	first := writeFile(t, dir, "first.txt", "the very first release\n")
	ctl(t, submitArgs(alice, first)...)
	p1, err := os.ReadFile(first + ".proof")
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := proof.Parse(p1); err != nil || pr.TreeHead.Size != 1 || bytes.Contains(p1, []byte("leaf_index")) {
		t.Fatalf("size 1 proof (%v):\n%s", err, p1)
	}

	// A batch of files in one run.
	data := map[string]string{"a.txt": "release a\n", "b.txt": "release b\n", "c.bin": "\x00\x01binary\xff"}
	var files []string
	for name, content := range data {
		files = append(files, writeFile(t, dir, name, content))
	}
	slices.Sort(files)
	out := ctl(t, submitArgs(alice, files...)...)
	for _, f := range files {
		if !strings.Contains(out, f+".proof: leaf index") {
			t.Errorf("submit output does not mention %s.proof:\n%s", f, out)
		}
	}
	verifyArgs := func(keyFile, policy string, more ...string) []string {
		return append([]string{"verify", "-key-file", keyFile + ".pub", "-policy", policy}, more...)
	}
	out = ctl(t, verifyArgs(alice, pol, append(files, first)...)...)
	if strings.Count(out, ": ok: leaf index") != 4 {
		t.Errorf("verify output:\n%s", out)
	}
	// The proofs are in the Sigsum format: version 2, the log's key hash, the leaf without checksum.
	pa, err := os.ReadFile(files[0] + ".proof")
	if err != nil {
		t.Fatal(err)
	}
	alicePub, err := key.ReadPublicKeyFile(alice + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	wantHead := fmt.Sprintf("version=2\nlog=%s\nleaf=%s ", cl.logKey.KeyHash(), alicePub.KeyHash())
	if !strings.HasPrefix(string(pa), wantHead) || !bytes.Contains(pa, []byte("\n\nsize=")) || !bytes.Contains(pa, []byte("\n\nleaf_index=")) {
		t.Errorf("proof of %s:\n%s", files[0], pa)
	}

	// -raw-hash: the file holds the message (SHA-256 of the data) in hex; the proof then also verifies the data.
	rawData := writeFile(t, dir, "raw.txt", "released by its checksum\n")
	sum := sha256.Sum256([]byte("released by its checksum\n"))
	rawFile := writeFile(t, dir, "raw.sha256", hex.EncodeToString(sum[:])+"\n")
	ctl(t, submitArgs(alice, "-raw-hash", rawFile)...)
	ctl(t, append(verifyArgs(alice, pol), "-raw-hash", rawFile)...)
	ctl(t, append(verifyArgs(alice, pol), "-proof", rawFile+".proof", rawData)...)

	t.Run("tampering", func(t *testing.T) {
		target := files[0]
		// Other data.
		other := writeFile(t, dir, "other.txt", "not what was logged\n")
		ctlFails(t, "leaf signature does not verify", append(verifyArgs(alice, pol), "-proof", target+".proof", other)...)
		// Another submitter's key.
		ctlFails(t, "leaf key is not a trusted submitter key", verifyArgs(bob, pol, target)...)
		// Tampered proofs.
		for _, c := range []struct {
			name   string
			tamper func(p *proof.Proof)
			want   string
		}{
			{"root hash", func(p *proof.Proof) { p.TreeHead.RootHash[0] ^= 1 }, "log signature on tree head does not verify"},
			{"log signature", func(p *proof.Proof) { p.TreeHead.Signature[7] ^= 1 }, "log signature on tree head does not verify"},
			{"size", func(p *proof.Proof) { p.TreeHead.Size++ }, "log signature on tree head does not verify"},
			{"leaf signature", func(p *proof.Proof) { p.Signature[0] ^= 1 }, "leaf signature does not verify"},
			{"leaf index", func(p *proof.Proof) { p.Inclusion.LeafIndex = (p.Inclusion.LeafIndex + 1) % p.TreeHead.Size },
				"inclusion proof does not verify"},
			{"node hash", func(p *proof.Proof) { p.Inclusion.Path[0][3] ^= 1 }, "inclusion proof does not verify"},
		} {
			pr, err := proof.Parse(pa)
			if err != nil {
				t.Fatal(err)
			}
			c.tamper(pr)
			bad := writeFile(t, dir, "bad-"+strings.ReplaceAll(c.name, " ", "-")+".proof", string(pr.MarshalASCII()))
			ctlFails(t, c.want, append(verifyArgs(alice, pol), "-proof", bad, target)...)
		}
		bad := writeFile(t, dir, "bad-version.proof", strings.Replace(string(pa), "version=2", "version=7", 1))
		ctlFails(t, "unsupported version 7", append(verifyArgs(alice, pol), "-proof", bad, target)...)
		// Policies the proof does not satisfy: another log; a witness quorum.
		otherLog := writeFile(t, dir, "policy-other-log", fmt.Sprintf("log %s\nquorum none\n", bytes.Repeat([]byte("ab"), 32)))
		ctlFails(t, "log is not in the policy", verifyArgs(alice, otherLog, target)...)
		w := sigsum.PublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey))
		withWitness := writeFile(t, dir, "policy-witness", fmt.Sprintf("log %s\nwitness w1 %s\nquorum w1\n", cl.logKey, w))
		ctlFails(t, "witness cosignatures do not satisfy the policy's quorum", verifyArgs(alice, withWitness, target)...)
		// A proof for no file at all.
		ctlFails(t, "no such file", verifyArgs(alice, pol, filepath.Join(dir, "missing"))...)
	})

	t.Run("monitor", func(t *testing.T) {
		// Bob logs too; monitor watching Alice reports exactly Alice's leaves.
		bobFile := writeFile(t, dir, "bob.txt", "bob's release\n")
		ctl(t, submitArgs(bob, bobFile)...)
		state := filepath.Join(dir, "monitor-state")
		monitorArgs := []string{"monitor", "-policy", pol, "-watch-key", alice + ".pub", "-state", state, "-once", "-batch", "2"}
		// The -raw-hash submission signed H(raw.txt), so its leaf has the same checksum as raw.txt's would.
		aliceSums := sortedChecksums("the very first release\n", data["a.txt"], data["b.txt"], data["c.bin"],
			"released by its checksum\n")
		stdout, stderr, code := ctlExit(t, monitorArgs...)
		if code != 0 {
			t.Fatalf("monitor: exit %d: %s", code, stderr)
		}
		if got := monitorLeaves(t, stdout); !slices.Equal(got, aliceSums) {
			t.Errorf("monitor reported %v, want Alice's %v", got, aliceSums)
		}
		// Restarted, it reports only what is new; watching both keys shows Bob's new leaf too.
		more := writeFile(t, dir, "more.txt", "alice again\n")
		bobMore := writeFile(t, dir, "bob-more.txt", "bob again\n")
		ctl(t, submitArgs(alice, more)...)
		ctl(t, submitArgs(bob, bobMore)...)
		stdout, stderr, code = ctlExit(t, append(monitorArgs, "-watch-key", bob+".pub")...)
		if code != 0 {
			t.Fatalf("monitor: exit %d: %s", code, stderr)
		}
		if got, want := monitorLeaves(t, stdout), sortedChecksums("alice again\n", "bob again\n"); !slices.Equal(got, want) {
			t.Errorf("monitor after restart reported %v, want %v", got, want)
		}
	})
}

// forgingLog is a fake Sigsum log (an httptest server) that signs whatever history it holds with a test log key,
// so a test can make it serve a head that forks from one it served before.
type forgingLog struct {
	t      *testing.T
	key    *sigsum.Ed25519Signer
	srv    *httptest.Server
	mu     sync.Mutex
	leaves []sigsum.Leaf
}

func newForgingLog(t *testing.T) *forgingLog {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{42}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	l := &forgingLog{t: t, key: s}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *forgingLog) add(s sigsum.Signer, what string) {
	leaf, err := sigsum.SignLeaf(s, sigsum.HashBytes([]byte(what)))
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaves = append(l.leaves, leaf)
}

// rewrite replaces leaf i of the history: every root from then on changes.
func (l *forgingLog) rewrite(i int, s sigsum.Signer) {
	leaf, err := sigsum.SignLeaf(s, sigsum.HashBytes([]byte("forged")))
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaves[i] = leaf
}

func hashesOf(ls []sigsum.Leaf) []sigsum.Hash {
	hs := make([]sigsum.Hash, len(ls))
	for i := range ls {
		hs[i] = ls[i].Hash()
	}
	return hs
}

// subproof is RFC 6962 §2.1.2 SUBPROOF(m, D[n], complete).
func subproof(hs []sigsum.Hash, m int, complete bool) []sigsum.Hash {
	n := len(hs)
	if m == n {
		if complete {
			return nil
		}
		return []sigsum.Hash{sigsum.RootHash(hs)}
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	if m <= k {
		return append(subproof(hs[:k], m, complete), sigsum.RootHash(hs[k:]))
	}
	return append(subproof(hs[k:], m-k, false), sigsum.RootHash(hs[:k]))
}

func (l *forgingLog) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	num := func(i int) int {
		if i >= len(parts) {
			return -1
		}
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return -1
		}
		return n
	}
	size := len(l.leaves)
	switch parts[0] {
	case "get-tree-head":
		th := sigsum.TreeHead{Size: uint64(size), RootHash: sigsum.RootHash(hashesOf(l.leaves))}
		sth, err := th.Sign(l.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cth := sigsum.CosignedTreeHead{SignedTreeHead: sth}
		w.Write(cth.MarshalASCII())
	case "get-consistency-proof":
		old, new := num(1), num(2)
		if old <= 0 || new <= old || new > size {
			http.Error(w, "bad sizes", http.StatusBadRequest)
			return
		}
		p := sigsum.ConsistencyProof{Path: subproof(hashesOf(l.leaves[:new]), old, true)}
		w.Write(p.MarshalASCII())
	case "get-leaves":
		start, end := num(1), num(2)
		if start < 0 || end <= start || start >= size {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		w.Write(sigsum.MarshalLeavesASCII(l.leaves[start:min(end, size, start+3)]))
	default:
		http.NotFound(w, r)
	}
}

// TestMonitorForgedHistory points sigsumctl monitor at a fake log that rewrites its history: the monitor must
// report the inconsistency, exit non-zero, and keep flagging it after a restart from its state file.
func TestMonitorForgedHistory(t *testing.T) {
	t.Parallel()
	fl := newForgingLog(t)
	dir := t.TempDir()
	ctl(t, "keygen", "-o", filepath.Join(dir, "alice"))
	priv, err := key.ReadPrivateKeyFile(filepath.Join(dir, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	alice, err := sigsum.NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		fl.add(mallory, fmt.Sprint("mallory ", i))
	}
	fl.add(alice, "alice 0")
	pol := writeFile(t, dir, "policy", fmt.Sprintf("log %s %s\nquorum none\n", fl.key.Public(), fl.srv.URL))
	state := filepath.Join(dir, "state")
	args := []string{"monitor", "-policy", pol, "-watch-key", filepath.Join(dir, "alice.pub"), "-state", state}

	stdout, stderr, code := ctlExit(t, append(args, "-once")...)
	if code != 0 || len(monitorLeaves(t, stdout)) != 1 {
		t.Fatalf("first pass: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Same size, other root.
	fl.rewrite(1, mallory)
	ctlFails(t, "inconsistent: tree head of size 6 has root", append(args, "-once")...)
	// Grown on top of the rewritten history: the consistency proof cannot link it to the verified head.
	fl.add(alice, "alice 1")
	ctlFails(t, "is not consistent with the verified head of size 6", append(args, "-once")...)
	// Without -once the monitor also stops on it, with exit status 1, and reports nothing from the forged head.
	stdout, stderr, code = ctlExit(t, append(args, "-interval", "100ms")...)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "inconsistent") {
		t.Fatalf("continuous monitor: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestClientVerbsWitness submits to a primary whose heads are cosigned by a test witness, under a policy whose
// quorum needs that witness: the proof carries its cosignature, verify and monitor accept it, and a policy that
// also needs a witness that never cosigned rejects it.
func TestClientVerbsWitness(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g any w1", "w1")
	ws[0].start()
	cl.start()
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice")
	ctl(t, "keygen", "-o", alice)
	pol := writeFile(t, dir, "policy", fmt.Sprintf("log %s %s\nwitness w1 %s\ngroup g any w1\nquorum g\n",
		cl.logKey, cl.primary.publicURL(), ws[0].key))
	var files []string
	for i := 0; i < 3; i++ {
		files = append(files, writeFile(t, dir, fmt.Sprintf("f%d", i), fmt.Sprintf("cosigned release %d\n", i)))
	}
	ctl(t, append([]string{"submit", "-key-file", alice, "-policy", pol, "-timeout", "90s", "-poll", "200ms"}, files...)...)
	b, err := os.ReadFile(files[0] + ".proof")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := proof.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.TreeHead.Cosignatures) == 0 || pr.TreeHead.Cosignatures[0].KeyHash != ws[0].key.KeyHash() {
		t.Fatalf("proof has no cosignature by w1:\n%s", b)
	}
	out := ctl(t, append([]string{"verify", "-key-file", alice + ".pub", "-policy", pol}, files...)...)
	if strings.Count(out, ": ok:") != 3 {
		t.Errorf("verify:\n%s", out)
	}
	w2 := sigsum.PublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey))
	strict := writeFile(t, dir, "policy-strict", fmt.Sprintf("log %s\nwitness w1 %s\nwitness w2 %s\ngroup g all w1 w2\nquorum g\n",
		cl.logKey, ws[0].key, w2))
	ctlFails(t, `witness cosignatures do not satisfy the policy's quorum "g": 1 valid`,
		"verify", "-key-file", alice+".pub", "-policy", strict, files[0])

	stdout, stderr, code := ctlExit(t, "monitor", "-policy", pol, "-watch-key", alice+".pub", "-once", "-max-age", "1h")
	if code != 0 {
		t.Fatalf("monitor: exit %d: %s", code, stderr)
	}
	if got, want := monitorLeaves(t, stdout), sortedChecksums("cosigned release 0\n", "cosigned release 1\n", "cosigned release 2\n"); !slices.Equal(got, want) {
		t.Errorf("monitor reported %v, want %v", got, want)
	}
	// A monitor whose policy needs a witness that never cosigns sees no usable head and says so.
	ctlFails(t, "alert quorum", "monitor", "-policy", strict, "-log-url", cl.primary.publicURL(), "-once")
}

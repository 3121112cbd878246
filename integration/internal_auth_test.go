package integration

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestForgedPrimaryStoresNothing: a secondary takes leaves only from a primary that proves the log's key. A fake
// primary on loopback with any other key, serving leaves that look fine, gets nothing stored: the secondary's
// tree stays empty and it says why.
func TestForgedPrimaryStoresNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "200ms")
	s := newSecondary(t, filepath.Join(dir, "secondary"), p)
	sub := newSubmitter(t, 61)
	var forged []sigsum.Leaf
	for i := 0; i < 5; i++ {
		_, l := sub.next(t)
		forged = append(forged, l)
	}
	impostor := newSubmitter(t, 62).signer // not the log's key
	var served atomic.Int32
	fake := startNodeServer(t, impostor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write(sigsum.MarshalLeavesASCII(forged))
	}))
	s.extra = []string{"-interval", "100ms", "-primary-url", fake.URL}
	s.start()
	time.Sleep(2 * time.Second) // many replication attempts
	sth, err := s.clientInternal(t).GetSecondaryTreeHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if sth.Size != 0 || served.Load() != 0 {
		t.Fatalf("the secondary holds %d leaves (%d get-leaves answered by the impostor), want none", sth.Size, served.Load())
	}
	if log := s.tail(); !strings.Contains(log, "not the configured") {
		t.Errorf("the secondary does not say it refused the impostor:\n%s", log)
	}
}

// TestPlainInternalHTTP: with insecure-internal-http on every node (to pair with reference-implementation nodes,
// which speak plain HTTP between them), a log replicates and commits as before, and each node warns at start.
func TestPlainInternalHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "300ms", "-insecure-internal-http")
	p.insecure = true
	s := &node{t: t, role: "secondary", dir: filepath.Join(dir, "secondary"), public: freePort(t), internal: freePort(t),
		insecure: true}
	ctl(t, "init", "-role", "secondary", "-data-dir", s.dir, "-primary-url", p.internalURL(), "-insecure-internal-http")
	t.Cleanup(s.kill)
	s.extra = []string{"-interval", "100ms"}
	p.addSecondaries(s)
	s.start()
	p.start()
	if !strings.HasPrefix(s.internalURL(), "http://") {
		t.Fatalf("internal URL %s", s.internalURL())
	}
	c := p.client()
	leaves := submit(t, c, newSubmitter(t, 63), 3)
	allCommitted(t, c, leaves, 60*time.Second)
	checkLog(t, c, p.publicKey(), leaves, nil)
	for _, n := range []*node{p, s} {
		if !strings.Contains(n.tail(), "insecure-internal-http") {
			t.Errorf("%s does not warn about plain internal HTTP:\n%s", n.role, n.tail())
		}
	}
}

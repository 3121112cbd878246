package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/engine/dbtest"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestStorageMySQL runs a primary and a secondary on MariaDB/MySQL (each its own database), then promotes the
// secondary and runs on with a fresh secondary. Opt-in: SIGSUMD_TEST_MYSQL.
func TestStorageMySQL(t *testing.T) {
	t.Parallel()
	testSQLCluster(t, func(t testing.TB) string { s, _ := dbtest.MySQL(t); return s })
}

// TestStoragePostgreSQL is TestStorageMySQL on PostgreSQL. Opt-in: SIGSUMD_TEST_POSTGRES.
func TestStoragePostgreSQL(t *testing.T) {
	t.Parallel()
	testSQLCluster(t, func(t testing.TB) string { s, _ := dbtest.Postgres(t); return s })
}

func testSQLCluster(t *testing.T, scratch func(testing.TB) string) {
	dir := t.TempDir()
	p := newNodeOn(t, "primary", filepath.Join(dir, "primary"), storageBackend(scratch(t)), "-interval", "300ms")
	s := newNodeOn(t, "secondary", filepath.Join(dir, "secondary"), storageBackend(scratch(t)),
		"-interval", "100ms", "-primary-url", p.internalURL())
	trust(t, s, p.publicKey())
	p.addSecondaries(s)
	s.start()
	p.start()
	logKey := p.publicKey()
	c := p.client()
	sub := newSubmitter(t, 41)
	first := submit(t, c, sub, 20)
	allCommitted(t, c, first, 60*time.Second)
	head := checkLog(t, c, logKey, first, nil)
	// Committed leaves come back 200 and stay single entries.
	allCommitted(t, c, first[:3], 10*time.Second)

	// Fail over: the primary is gone; the secondary (stopped) is promoted, which needs its store's count of stored
	// but unintegrated leaves.
	cth := treeHead(t, c, logKey)
	published := filepath.Join(t.TempDir(), "published")
	if err := os.WriteFile(published, cth.MarshalASCII(), 0o644); err != nil {
		t.Fatal(err)
	}
	p.kill()
	s.stop()
	out := ctl(t, "promote", "-config", s.configFile(), "-key-file", filepath.Join(p.dir, "key"),
		"-log-public-key", filepath.Join(p.dir, "key.pub"), "-published", published)
	t.Logf("sigsumctl promote:\n%s", out)
	np := &node{t: t, role: "primary", dir: s.dir, public: freePort(t), internal: freePort(t),
		conf: filepath.Join(s.dir, "sigsumd-primary.toml"), extra: []string{"-interval", "300ms"}}
	t.Cleanup(np.kill)
	fresh := newNodeOn(t, "secondary", filepath.Join(dir, "fresh"), storageBackend(scratch(t)),
		"-interval", "100ms", "-primary-url", np.internalURL())
	trust(t, fresh, logKey)
	np.addSecondaries(fresh)
	fresh.start()
	np.start()
	nc := np.client()
	more := submit(t, nc, sub, 10)
	allCommitted(t, nc, append(first, more...), 60*time.Second)
	checkLog(t, nc, logKey, append(first, more...), []sigsum.TreeHead{head})
}

// TestStorageThroughput prints add-leaf and replication throughput of a primary and one secondary on SQLite and,
// when the environment names them, on MariaDB and PostgreSQL. Figures, not pass/fail: this machine is shared.
func TestStorageThroughput(t *testing.T) {
	stores := map[string]func(testing.TB) string{
		"sqlite": nil,
		"mysql":  func(t testing.TB) string { s, _ := dbtest.MySQL(t); return s },
		"postgresql": func(t testing.TB) string {
			s, _ := dbtest.Postgres(t)
			return s
		},
	}
	n, workers := 400, 8
	if raceEnabled {
		n = 100 // race-built binaries are ten times slower; the figures then only show the path works
	}
	for _, name := range []string{"sqlite", "mysql", "postgresql"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mk := func(role, sub string, extra ...string) *node {
				if stores[name] == nil {
					return newNode(t, role, filepath.Join(dir, sub), extra...)
				}
				return newNodeOn(t, role, filepath.Join(dir, sub), storageBackend(stores[name](t)), extra...)
			}
			p := mk("primary", "primary", "-interval", "200ms")
			s := mk("secondary", "secondary", "-interval", "50ms", "-primary-url", p.internalURL())
			trust(t, s, p.publicKey())
			p.addSecondaries(s)
			s.start()
			p.start()
			c := p.client()
			sc := s.clientInternal(t)
			start := time.Now()
			leaves, accepted := submitParallel(t, c, 60, workers, n)
			var replicated time.Duration
			waitFor(t, "the secondary to hold every leaf", 5*time.Minute, func() bool {
				sth, err := sc.GetSecondaryTreeHead(context.Background())
				if err == nil && sth.Size >= uint64(n) {
					replicated = time.Since(start)
					return true
				}
				return false
			})
			var committed time.Duration
			waitFor(t, "a signed head with every leaf", 5*time.Minute, func() bool {
				cth, err := c.GetTreeHead(context.Background())
				if err == nil && cth.Size >= uint64(n) {
					committed = time.Since(start)
					return true
				}
				return false
			})
			allCommitted(t, c, leaves, time.Minute)
			rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
			fmt.Printf("storage throughput %-10s (race=%v, %d leaves, %d clients): add-leaf %.0f leaves/s; replicated to the secondary %.0f leaves/s; committed %.0f leaves/s\n",
				name, raceEnabled, n, workers, rate(accepted), rate(replicated), rate(committed))
		})
	}
}

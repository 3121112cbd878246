package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scrape reads a node's /metrics into series → value.
func scrape(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	rsp, err := http.Get(n.internalURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(rsp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	rsp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, string(b)
}

func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1", "w1")
	ws[0].start()
	cl.start()
	p, s := cl.primary, cl.secondaries[0]
	c := p.client()
	leaves := submit(t, c, newSubmitter(t, 71), 3)
	allCommitted(t, c, leaves, 60*time.Second)
	waitFor(t, "a published head of 3", 30*time.Second, func() bool { return treeHead(t, c, cl.logKey).Size == 3 })
	getStatus(t, p.publicURL()+"/get-leaves/0/3")

	m := scrape(t, p)
	logID := cl.logKey.KeyHash().String()
	for series, check := range map[string]func(float64) bool{
		`sigsum_log_go_http_requests_total{endpoint="add-leaf"}`:                                     func(v float64) bool { return v >= 3 },
		`sigsum_log_go_http_responses_total{endpoint="add-leaf",status="202"}`:                       func(v float64) bool { return v >= 3 },
		`sigsum_log_go_http_responses_total{endpoint="add-leaf",status="200"}`:                       func(v float64) bool { return v >= 3 },
		`sigsum_log_go_http_req{endpoint="get-leaves",logid="` + logID + `"}`:                        func(v float64) bool { return v >= 1 },
		`sigsum_log_go_http_requests_total{endpoint="get-leaves"}`:                                   func(v float64) bool { return v >= 1 },
		`sigsum_log_go_witness_checkpoint_requests_total{retried="false",status="200",witness="w1"}`: func(v float64) bool { return v >= 1 },
		`sigsum_log_go_witness_quorum_total{success="true"}`:                                         func(v float64) bool { return v >= 1 },
		`sigsumd_published_tree_size`:                                                                func(v float64) bool { return v == 3 },
		`sigsumd_signed_tree_size`:                                                                   func(v float64) bool { return v == 3 },
		fmt.Sprintf(`sigsumd_secondary_verified_size{secondary=%q}`, s.internalURL()):                func(v float64) bool { return v == 3 },
		fmt.Sprintf(`sigsumd_secondary_lag_leaves{secondary=%q}`, s.internalURL()):                   func(v float64) bool { return v == 0 },
		`sigsumd_published_tree_head_age_seconds`:                                                    func(v float64) bool { return v >= 0 && v < 60 },
		`sigsumd_rotation_duration_seconds_count`:                                                    func(v float64) bool { return v >= 1 },
		`trillian_sequencer_sequenced{logid="` + treeID(t, p) + `"}`:                                 func(v float64) bool { return v >= 3 },
		`go_goroutines`: func(v float64) bool { return v > 0 },
	} {
		v, ok := m[series]
		if !ok {
			t.Errorf("primary /metrics lacks %s", series)
			continue
		}
		if !check(v) {
			t.Errorf("primary %s = %v, not sensible", series, v)
		}
	}
	sm := scrape(t, s)
	if v := sm["sigsumd_replica_tree_size"]; v != 3 {
		t.Errorf("secondary sigsumd_replica_tree_size = %v, want 3", v)
	}
	if v := sm["sigsumd_replicated_leaves_total"]; v != 3 {
		t.Errorf("secondary sigsumd_replicated_leaves_total = %v, want 3", v)
	}

	for _, n := range []*node{p, s} {
		if code, body := getStatus(t, n.internalURL()+"/livez"); code != 200 {
			t.Errorf("%s /livez: %d %q", n.role, code, body)
		}
		if code, body := getStatus(t, n.internalURL()+"/readyz"); code != 200 {
			t.Errorf("%s /readyz: %d %q", n.role, code, body)
		}
		if code, _ := getStatus(t, n.internalURL()+"/debug/pprof/"); code != 404 {
			t.Errorf("%s pprof answered %d with pprof off", n.role, code)
		}
	}
}

func treeID(t *testing.T, n *node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "tree-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(strings.TrimPrefix(string(b), "tree-id="))
}

// TestReloadPolicy swaps the trust policy with SIGHUP; a broken policy file is refused and the old one kept.
func TestReloadPolicy(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1", "w1", "w2")
	ws[0].start()
	ws[1].start()
	cl.start()
	p := cl.primary
	c := p.client()
	sub := newSubmitter(t, 72)
	first := submit(t, c, sub, 1)
	allCommitted(t, c, first, 60*time.Second)
	waitFor(t, "a head cosigned by w1", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		return cth.Size == 1 && checkCosigned(t, cth, cl.logKey, ws)["w1"]
	})

	policyFile := filepath.Join(p.dir, "trust-policy")
	old, _ := os.ReadFile(policyFile)
	hup := func() {
		p.mu.Lock()
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.mu.Unlock()
	}
	// A broken file: refused, the old policy stays.
	os.WriteFile(policyFile, []byte("quorum nothing-defined\n"), 0o644)
	hup()
	waitFor(t, "the refused reload in the log", 20*time.Second, func() bool {
		return strings.Contains(p.tail(), "reload refused")
	})
	// The swap: w2 is now the one that counts.
	os.WriteFile(policyFile, []byte(strings.Replace(string(old), "group g 1 w1", "group g 1 w2", 1)), 0o644)
	hup()
	waitFor(t, "the reload in the log", 20*time.Second, func() bool {
		return strings.Contains(p.tail(), "reloaded configuration")
	})
	ws[0].stop() // w1 gone: under the old policy nothing more would be published
	second := submit(t, c, sub, 1)
	allCommitted(t, c, append(first, second...), 60*time.Second)
	waitFor(t, "a head of 2 cosigned by w2", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		return cth.Size == 2 && checkCosigned(t, cth, cl.logKey, ws)["w2"]
	})
}

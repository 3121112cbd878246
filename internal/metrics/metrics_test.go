package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestEndpoint(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]string{
		"GET /get-tree-head":                     "get-tree-head",
		"GET /a/b/get-leaves/{start}/{end}":      "get-leaves",
		"POST /log/add-leaf":                     "add-leaf",
		"GET /get-inclusion-proof/{size}/{hash}": "get-inclusion-proof",
		"GET /{$}":                               "info",
		"GET /pfx/{$}":                           "info",
		"":                                       "unknown",
		"GET /get-secondary-tree-head":           "get-secondary-tree-head",
		"GET /prefix/get-consistency-proof/{old}/{new}": "get-consistency-proof",
	} {
		if got := endpoint(pattern); got != want {
			t.Errorf("endpoint(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestInstrumentAndScrape(t *testing.T) {
	t.Parallel()
	m := New("abc")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log/get-tree-head", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("x")) })
	mux.HandleFunc("POST /log/add-leaf", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := m.Instrument(mux)
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/log/get-tree-head", nil),
		httptest.NewRequest("GET", "/log/get-tree-head", nil),
		httptest.NewRequest("POST", "/log/add-leaf", nil),
		httptest.NewRequest("GET", "/log/add-leaf", nil), // 405
		httptest.NewRequest("GET", "/nope/12345", nil),   // 404: no raw path becomes a label
	} {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	m.Published(42)
	m.Signed(43)
	m.Secondary("s1", 40, 43)
	m.WitnessRequest("w1", "200", false, time.Millisecond)
	m.WitnessQuorum(true, time.Millisecond)
	m.RateLimited(429)
	out := scrape(t, m)
	for _, want := range []string{
		`sigsum_log_go_http_req{endpoint="get-tree-head",logid="abc"} 2`,
		`sigsum_log_go_http_rsp{endpoint="add-leaf",logid="abc",status="202"} 1`,
		`sigsum_log_go_http_requests_total{endpoint="get-tree-head"} 2`,
		`sigsum_log_go_http_responses_total{endpoint="unknown",status="405"} 1`,
		`sigsum_log_go_http_responses_total{endpoint="unknown",status="404"} 1`,
		`sigsum_log_go_http_request_duration_seconds_count{endpoint="get-tree-head",status="200"} 2`,
		`sigsum_log_go_http_latency_count{endpoint="add-leaf",logid="abc",status="202"} 1`,
		`sigsum_log_go_witness_checkpoint_requests_total{retried="false",status="200",witness="w1"} 1`,
		`sigsum_log_go_witness_quorum_total{success="true"} 1`,
		`sigsumd_published_tree_size 42`,
		`sigsumd_signed_tree_size 43`,
		`sigsumd_secondary_verified_size{secondary="s1"} 40`,
		`sigsumd_secondary_lag_leaves{secondary="s1"} 3`,
		`sigsumd_rate_limit_rejections_total{status="429"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(out, "12345") {
		t.Error("a raw request path became a label value")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.Published(1)
	m.Signed(1)
	m.Secondary("s", 1, 2)
	m.Rotation(time.Second)
	m.WitnessRequest("w", "200", true, time.Second)
	m.WitnessQuorum(false, 0)
	m.Replicated(1, time.Second)
	m.ReplicaSize(1)
	m.RateLimited(429)
	m.LeafQueued()
	m.LeafResubmitted()
	m.Storage("x", time.Second)
	h := http.NotFoundHandler()
	if got := m.Instrument(h); got == nil {
		t.Error("nil metrics must pass the handler through")
	}
}

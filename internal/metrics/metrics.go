// Package metrics holds a node's Prometheus metrics: the reference Sigsum log server's names (dashboards depend on
// them) and sigsumd's own, on a registry of the node's, served on the internal listener at /metrics.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prefix starts every metric name, as in the reference server.
const Prefix = "sigsum_log_go_"

// Our own metrics start with this.
const ownPrefix = "sigsumd_"

// buckets spans 1 ms to 10 s, thresholds about 10^(1/4) apart (the reference's).
var buckets = []float64{1e-3, 2e-3, 3e-3, 6e-3, 10e-3, 20e-3, 30e-3, 60e-3, 0.1, 0.2, 0.3, 0.6, 1, 2, 3, 6, 10}

// Metrics is one node's set. A nil *Metrics is valid and records nothing, so roles and tests need no checks.
type Metrics struct {
	reg *prometheus.Registry

	// The reference server's HTTP metrics, in both generations of its names.
	httpReq, httpRsp                  *prometheus.CounterVec
	httpLatency                       *prometheus.HistogramVec
	requestsTotal, responsesTotal     *prometheus.CounterVec
	requestDuration                   *prometheus.HistogramVec
	witnessRequests                   *prometheus.CounterVec
	witnessDuration                   *prometheus.HistogramVec
	witnessQuorum                     *prometheus.CounterVec
	witnessQuorumDuration             prometheus.Histogram
	witnessSize, witnessTime          *prometheus.GaugeVec
	witnessUp                         *prometheus.GaugeVec
	publishedSize, signedSize         prometheus.Gauge
	publishedTimestamp                prometheus.Gauge
	secondarySize, secondaryLag       *prometheus.GaugeVec
	rotationDuration                  prometheus.Observer
	replicationBatch                  prometheus.Observer
	replicatedLeaves                  prometheus.Counter
	replicaSize                       prometheus.Gauge
	rateLimitRejections               *prometheus.CounterVec
	leavesAccepted, leavesResubmitted prometheus.Counter
	storageLatency                    *prometheus.HistogramVec
	logID                             string
	publishedAt                       atomic.Int64 // unix nanoseconds; 0 before a head is published
	publishedCheckedAt                atomic.Int64 // secondary: unix nanoseconds of the last confirmation of the log's head
}

// New returns a node's metrics. logID labels the reference's first-generation HTTP metrics (the log's key hash).
func New(logID string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), logID: logID}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(h)
		return h
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(g)
		return g
	}

	m.httpReq = counter(Prefix+"http_req", "number of http requests", "logid", "endpoint")
	m.httpRsp = counter(Prefix+"http_rsp", "number of http responses", "logid", "endpoint", "status")
	m.httpLatency = histogram(Prefix+"http_latency", "http request-response latency", "logid", "endpoint", "status")
	m.requestsTotal = counter(Prefix+"http_requests_total", "number of http requests", "endpoint")
	m.responsesTotal = counter(Prefix+"http_responses_total", "number of http responses", "endpoint", "status")
	m.requestDuration = histogram(Prefix+"http_request_duration_seconds", "http request-response durations", "endpoint", "status")
	m.witnessRequests = counter(Prefix+"witness_checkpoint_requests_total", "number of witness add-checkpoint requests", "witness", "status", "retried")
	m.witnessDuration = histogram(Prefix+"witness_checkpoint_request_duration_seconds", "witness add-checkpoint request durations on success", "witness")
	m.witnessQuorum = counter(Prefix+"witness_quorum_total", "number of witness quorum attempts", "success")
	m.witnessQuorumDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: Prefix + "witness_quorum_duration_seconds",
		Help: "duration to reach witness quorum", Buckets: buckets})
	m.reg.MustRegister(m.witnessQuorumDuration)
	m.witnessSize = gaugeVec(ownPrefix+"witness_cosigned_size", "tree size a witness last cosigned", "witness")
	m.witnessTime = gaugeVec(ownPrefix+"witness_cosigned_timestamp_seconds", "timestamp of a witness's last cosignature (unix time)", "witness")
	m.witnessUp = gaugeVec(ownPrefix+"witness_up", "1 if a witness's last add-checkpoint exchange gave a valid cosignature, else 0", "witness")

	m.publishedSize = gauge(ownPrefix+"published_tree_size", "size of the tree head get-tree-head serves")
	m.publishedTimestamp = gauge(ownPrefix+"published_tree_head_timestamp_seconds", "when the served tree head was published (unix time)")
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: ownPrefix + "published_tree_head_age_seconds",
		Help: "age of the served tree head"}, m.publishedAge))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: ownPrefix + "secondary_published_head_checked_age_seconds",
		Help: "secondary: seconds since it last fetched and verified the log's published head (0 before it ever did)"},
		func() float64 { return sinceNanos(m.publishedCheckedAt.Load()) }))
	m.signedSize = gauge(ownPrefix+"signed_tree_size", "size of the latest signed (committed) tree head")
	m.secondarySize = gaugeVec(ownPrefix+"secondary_verified_size", "tree size a secondary last proved it holds", "secondary")
	m.secondaryLag = gaugeVec(ownPrefix+"secondary_lag_leaves", "leaves the primary holds beyond a secondary's verified size", "secondary")
	m.rotationDuration = histogram(ownPrefix+"rotation_duration_seconds", "duration of one rotation: secondaries, signing, witnesses").WithLabelValues()
	m.replicationBatch = histogram(ownPrefix+"replication_batch_duration_seconds", "secondary: duration of one replicated batch, fetch to storage").WithLabelValues()
	m.replicatedLeaves = counter(ownPrefix+"replicated_leaves_total", "secondary: leaves copied from the primary").WithLabelValues()
	m.replicaSize = gauge(ownPrefix+"replica_tree_size", "secondary: integrated size of the replica")
	m.rateLimitRejections = counter(ownPrefix+"rate_limit_rejections_total", "add-leaf requests refused by the rate limiter", "status")
	m.leavesAccepted = counter(ownPrefix+"leaves_queued_total", "new leaves queued").WithLabelValues()
	m.leavesResubmitted = counter(ownPrefix+"leaves_resubmitted_total", "add-leaf requests for leaves the log had already").WithLabelValues()
	m.storageLatency = histogram(ownPrefix+"storage_operation_duration_seconds", "latency of durable writes: queue_leaf (a leaf into storage, fsync included), sth_file_write", "operation")
	return m
}

// Registry returns the registry, for Trillian's metrics and tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format: the node's own, and the process-wide default
// registry's (the Go runtime, the process, and Trillian's metrics, which Trillian registers there).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the underlying writer (for read deadlines and flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Instrument counts requests and responses of mux by endpoint (the route's name, never the raw path, so label
// values stay few) and status.
func (m *Metrics) Instrument(mux http.Handler) http.Handler {
	if m == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		ep := endpoint(r.Pattern)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		code := strconv.Itoa(sw.status)
		d := time.Since(start).Seconds()
		m.httpReq.WithLabelValues(m.logID, ep).Inc()
		m.httpRsp.WithLabelValues(m.logID, ep, code).Inc()
		m.httpLatency.WithLabelValues(m.logID, ep, code).Observe(d)
		m.requestsTotal.WithLabelValues(ep).Inc()
		m.responsesTotal.WithLabelValues(ep, code).Inc()
		m.requestDuration.WithLabelValues(ep, code).Observe(d)
	})
}

// endpoint names a route from its ServeMux pattern ("GET /prefix/get-leaves/{start}/{end}" → "get-leaves").
func endpoint(pattern string) string {
	if pattern == "" {
		return "unknown"
	}
	if _, p, ok := strings.Cut(pattern, " "); ok {
		pattern = p
	}
	if strings.HasSuffix(pattern, "/{$}") {
		return "info"
	}
	name := "unknown"
	for _, seg := range strings.Split(pattern, "/") {
		if seg == "" || strings.HasPrefix(seg, "{") {
			continue
		}
		name = seg // the last fixed segment: the endpoint after any prefix
	}
	return name
}

// publishedAge is the age of the served head; 0 before one is published.
func (m *Metrics) publishedAge() float64 { return sinceNanos(m.publishedAt.Load()) }

// sinceNanos is the seconds since a unix-nanosecond time, 0 for the zero time.
func sinceNanos(at int64) float64 {
	if at == 0 {
		return 0
	}
	return time.Since(time.Unix(0, at)).Seconds()
}

// PublishedChecked records, on a secondary, that it fetched and verified the log's published head just now.
func (m *Metrics) PublishedChecked() {
	if m != nil {
		m.publishedCheckedAt.Store(time.Now().UnixNano())
	}
}

// Published records that a head of size is now served.
func (m *Metrics) Published(size uint64) {
	if m == nil {
		return
	}
	now := time.Now()
	m.publishedAt.Store(now.UnixNano())
	m.publishedSize.Set(float64(size))
	m.publishedTimestamp.Set(float64(now.Unix()))
}

// Signed records the size of the latest signed head.
func (m *Metrics) Signed(size uint64) {
	if m != nil {
		m.signedSize.Set(float64(size))
	}
}

// Secondary records what a secondary proved in a rotation (size 0 if it proved nothing) against own, the
// primary's size.
func (m *Metrics) Secondary(name string, size, own uint64) {
	if m == nil {
		return
	}
	m.secondarySize.WithLabelValues(name).Set(float64(size))
	m.secondaryLag.WithLabelValues(name).Set(float64(own - min(size, own)))
}

// Rotation records how long one rotation took.
func (m *Metrics) Rotation(d time.Duration) {
	if m != nil {
		m.rotationDuration.Observe(d.Seconds())
	}
}

// WitnessRequest records one add-checkpoint exchange: status is the HTTP status or "other", retried whether it
// followed a 409; d is recorded for successes only, as the reference does.
func (m *Metrics) WitnessRequest(witness, status string, retried bool, d time.Duration) {
	if m == nil {
		return
	}
	m.witnessRequests.WithLabelValues(witness, status, strconv.FormatBool(retried)).Inc()
	if status == "200" {
		m.witnessDuration.WithLabelValues(witness).Observe(d.Seconds())
	}
}

// WitnessCosigned records a valid cosignature by witness of size, made at ts.
func (m *Metrics) WitnessCosigned(witness string, size uint64, ts time.Time) {
	if m == nil {
		return
	}
	m.witnessSize.WithLabelValues(witness).Set(float64(size))
	m.witnessTime.WithLabelValues(witness).Set(float64(ts.Unix()))
	m.witnessUp.WithLabelValues(witness).Set(1)
}

// WitnessFailed records an exchange with witness that gave no valid cosignature.
func (m *Metrics) WitnessFailed(witness string) {
	if m != nil {
		m.witnessUp.WithLabelValues(witness).Set(0)
	}
}

// WitnessQuorum records one attempt at a quorum and, if reached, how long it took.
func (m *Metrics) WitnessQuorum(reached bool, d time.Duration) {
	if m == nil {
		return
	}
	m.witnessQuorum.WithLabelValues(strconv.FormatBool(reached)).Inc()
	if reached {
		m.witnessQuorumDuration.Observe(d.Seconds())
	}
}

// Replicated records a secondary's batch of n leaves that took d from fetch to storage.
func (m *Metrics) Replicated(n int, d time.Duration) {
	if m == nil {
		return
	}
	m.replicationBatch.Observe(d.Seconds())
	m.replicatedLeaves.Add(float64(n))
}

// ReplicaSize records a secondary's integrated size.
func (m *Metrics) ReplicaSize(size uint64) {
	if m != nil {
		m.replicaSize.Set(float64(size))
	}
}

// RateLimited records an add-leaf refused by the rate limiter with HTTP status code.
func (m *Metrics) RateLimited(code int) {
	if m != nil {
		m.rateLimitRejections.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

// LeafQueued records a new leaf; LeafResubmitted a request for a leaf the log had.
func (m *Metrics) LeafQueued() {
	if m != nil {
		m.leavesAccepted.Inc()
	}
}

// LeafResubmitted records an add-leaf for a leaf the log already had.
func (m *Metrics) LeafResubmitted() {
	if m != nil {
		m.leavesResubmitted.Inc()
	}
}

// Storage records the latency of a backend operation.
func (m *Metrics) Storage(op string, d time.Duration) {
	if m != nil {
		m.storageLatency.WithLabelValues(op).Observe(d.Seconds())
	}
}

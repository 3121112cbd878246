package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one mode's run. Line prints it; the keys are the same for every mode (zero where a
// figure does not apply), so a table of runs lines up.
type Result struct {
	Mode        string
	Concurrency int
	// Elapsed is the measured time: the load phase of a read mode, first POST to last answer for add-leaf.
	Elapsed time.Duration
	// Latencies holds one sample per request.
	Latencies []time.Duration
	// TreeSize is the published size the run saw last.
	TreeSize uint64

	// add-leaf only.
	Accepted, Committed, Uncommitted int
	// AcceptedIn is the time from the start to the first answer (202 or 200) of the last new leaf; CommittedIn to
	// the last 200.
	AcceptedIn, CommittedIn time.Duration
	// CommitLatencies holds, per committed leaf, the time from its first POST to the 200.
	CommitLatencies []time.Duration
	// ProbeLatencies holds the same for each committed leaf of the probes (Config.Probes).
	ProbeLatencies []time.Duration

	Errors int64
}

// percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of sorted samples, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func perSecond(n int, d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f", float64(n)/d.Seconds())
}

// Line returns the result as one line of key=value pairs in a fixed order.
func (r *Result) Line() string {
	lat := slices.Clone(r.Latencies)
	slices.Sort(lat)
	cl := slices.Clone(r.CommitLatencies)
	slices.Sort(cl)
	pl := slices.Clone(r.ProbeLatencies)
	slices.Sort(pl)
	kv := []string{
		"mode=" + r.Mode,
		fmt.Sprintf("c=%d", r.Concurrency),
		fmt.Sprintf("secs=%.2f", r.Elapsed.Seconds()),
		fmt.Sprintf("requests=%d", len(lat)),
		"rps=" + perSecond(len(lat), r.Elapsed),
		"p50_ms=" + ms(percentile(lat, 50)),
		"p99_ms=" + ms(percentile(lat, 99)),
		fmt.Sprintf("accepted=%d", r.Accepted),
		"accepted_per_s=" + perSecond(r.Accepted, r.AcceptedIn),
		fmt.Sprintf("committed=%d", r.Committed),
		"committed_per_s=" + perSecond(r.Committed, r.CommittedIn),
		fmt.Sprintf("uncommitted=%d", r.Uncommitted),
		"commit_p50_ms=" + ms(percentile(cl, 50)),
		"commit_p95_ms=" + ms(percentile(cl, 95)),
		"commit_p99_ms=" + ms(percentile(cl, 99)),
		fmt.Sprintf("probe_commits=%d", len(pl)),
		"probe_commit_p50_ms=" + ms(percentile(pl, 50)),
		"probe_commit_p95_ms=" + ms(percentile(pl, 95)),
		fmt.Sprintf("tree_size=%d", r.TreeSize),
		fmt.Sprintf("errors=%d", r.Errors),
	}
	return strings.Join(kv, " ")
}

// maxReportedErrors bounds how many errors per run are described on stderr.
const maxReportedErrors = 10

// errorCounter counts errors and describes the first few.
type errorCounter struct {
	n    atomic.Int64
	mu   sync.Mutex
	w    io.Writer
	mode string
}

func (e *errorCounter) add(format string, args ...any) {
	if e.n.Add(1) > maxReportedErrors || e.w == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.w, "sigsum-bench %s: error: %s\n", e.mode, fmt.Sprintf(format, args...))
}

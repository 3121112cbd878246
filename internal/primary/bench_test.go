package primary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Benchmarks of the primary's public handlers on an embedded Trillian over SQLite, called in process through an
// httptest recorder: they measure the handler path (parse, checks, Trillian calls, encoding), not the network.
// Speed is measured here, never asserted.

// benchPrimary is a primary without secondaries (it signs its own tree) over SQLite, with leaves it has signed.
type benchPrimary struct {
	log     engine.Log
	p       *Primary
	h       http.Handler
	sub     sigsum.Signer
	reqs    []sigsum.AddLeafRequest // the leaves in the tree, as their submitters sent them
	nextMsg int
}

func benchSeedSigner(b *testing.B, seed byte) sigsum.Signer {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// newBenchPrimary starts a primary whose signed tree holds n leaves.
func newBenchPrimary(b *testing.B, n int) *benchPrimary {
	b.Helper()
	return newBenchPrimaryLimits(b, n, committed.Limits{})
}

// newBenchPrimaryLimits starts a primary whose signed tree holds n leaves, holding what limits allows of it.
func newBenchPrimaryLimits(b *testing.B, n int, limits committed.Limits) *benchPrimary {
	b.Helper()
	dir := b.TempDir()
	ctx := context.Background()
	engine.RouteKlog(quietLogger())
	e, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_LOG, Create: true})
	if err != nil {
		b.Fatal(err)
	}
	sth := filepath.Join(dir, "sth")
	if err := WriteStartupFile(sth, StartupEmpty); err != nil {
		b.Fatal(err)
	}
	p, err := New(ctx, Config{Log: l, Signer: benchSeedSigner(b, 1), STHFile: sth, Interval: time.Hour,
		Timeout: 10 * time.Second, Logger: quietLogger(), Committed: limits})
	if err != nil {
		b.Fatal(err)
	}
	bp := &benchPrimary{log: l, p: p, h: p.PublicHandler(""), sub: benchSeedSigner(b, 2)}
	bp.grow(b, n)
	return bp
}

// request returns a new signed add-leaf request.
func (bp *benchPrimary) request(b *testing.B) sigsum.AddLeafRequest {
	msg := sigsum.HashBytes(fmt.Appendf(nil, "bench leaf %d", bp.nextMsg))
	bp.nextMsg++
	l, err := sigsum.SignLeaf(bp.sub, msg)
	if err != nil {
		b.Fatal(err)
	}
	return sigsum.AddLeafRequest{Message: msg, Signature: l.Signature, PublicKey: bp.sub.Public()}
}

// grow queues n new leaves (16 at a time), waits until they are integrated, and signs the tree.
func (bp *benchPrimary) grow(b *testing.B, n int) {
	b.Helper()
	ctx := context.Background()
	reqs := make([]sigsum.AddLeafRequest, n)
	for i := range reqs {
		reqs[i] = bp.request(b)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				l := reqs[i].Leaf()
				if _, err := bp.log.QueueLeaf(ctx, &l); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	bp.reqs = append(bp.reqs, reqs...)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		th, err := bp.log.TreeHead(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if th.Size == uint64(len(bp.reqs)) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("tree stuck at %d, want %d", th.Size, len(bp.reqs))
		}
	}
	if err := bp.p.Rotate(ctx); err != nil {
		b.Fatal(err)
	}
	if got := bp.p.Signed().Size; got != uint64(len(bp.reqs)) {
		b.Fatalf("signed size %d, want %d", got, len(bp.reqs))
	}
}

// serve runs one request through the public handler and checks its status.
func (bp *benchPrimary) serve(b *testing.B, method, target string, body []byte, want int) {
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, target, rd)
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	w := httptest.NewRecorder()
	bp.h.ServeHTTP(w, req)
	if w.Code != want {
		b.Fatalf("%s %s: %d %q, want %d", method, target, w.Code, strings.TrimSpace(w.Body.String()), want)
	}
}

// benchSizes are the tree sizes the read paths are measured at: their cost should not grow with the tree.
var benchSizes = []int{1000, 10000}

// BenchmarkAddLeafNew is a first submission: parse, known-leaf lookup (a miss), signature check, QueueLeaf into
// SQLite, 202.
func BenchmarkAddLeafNew(b *testing.B) {
	bp := newBenchPrimary(b, 10)
	bodies := make([][]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if len(bodies) == 0 {
			for range cap(bodies) {
				r := bp.request(b)
				bodies = append(bodies, r.MarshalASCII())
			}
		}
		body := bodies[len(bodies)-1]
		bodies = bodies[:len(bodies)-1]
		b.StartTimer()
		bp.serve(b, "POST", "/add-leaf", body, http.StatusAccepted)
	}
}

// BenchmarkAddLeafKnown is the resubmission of a committed leaf, the most common request a log gets: 200.
func BenchmarkAddLeafKnown(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			resubmitKnown(b, newBenchPrimary(b, n))
		})
	}
}

// BenchmarkAddLeafKnownCold is the resubmission of a committed leaf that the memory index does not hold (older
// than its newest leaves, or than a start's preload): 200, after one indexed lookup in storage.
func BenchmarkAddLeafKnownCold(b *testing.B) {
	const n = 10000
	resubmitKnown(b, newBenchPrimaryLimits(b, n, committed.Limits{MaxIndex: 1})) // an index of one leaf: every other misses
}

// resubmitKnown resubmits bp's committed leaves, spread over the tree, each answered 200.
func resubmitKnown(b *testing.B, bp *benchPrimary) {
	bodies := make([][]byte, len(bp.reqs))
	for i := range bp.reqs {
		bodies[i] = bp.reqs[i].MarshalASCII()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bp.serve(b, "POST", "/add-leaf", bodies[i%len(bodies)], http.StatusOK)
		i += 7919
	}
}

// BenchmarkAddLeafKnownParallel is BenchmarkAddLeafKnown from GOMAXPROCS goroutines.
func BenchmarkAddLeafKnownParallel(b *testing.B) {
	bp := newBenchPrimary(b, 1000)
	bodies := make([][]byte, len(bp.reqs))
	for i := range bp.reqs {
		bodies[i] = bp.reqs[i].MarshalASCII()
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			bp.serve(b, "POST", "/add-leaf", bodies[i%len(bodies)], http.StatusOK)
			i += 7919
		}
	})
}

// BenchmarkAddLeafPending is the resubmission of a leaf queued but not yet signed: 202 from the pending set.
func BenchmarkAddLeafPending(b *testing.B) {
	bp := newBenchPrimary(b, 10)
	r := bp.request(b)
	body := r.MarshalASCII()
	bp.serve(b, "POST", "/add-leaf", body, http.StatusAccepted)
	b.ReportAllocs()
	for b.Loop() {
		bp.serve(b, "POST", "/add-leaf", body, http.StatusAccepted)
	}
}

func BenchmarkGetTreeHead(b *testing.B) {
	bp := newBenchPrimary(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		bp.serve(b, "GET", "/get-tree-head", nil, http.StatusOK)
	}
}

func BenchmarkGetInclusionProof(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			bp := newBenchPrimary(b, n)
			targets := make([]string, len(bp.reqs))
			for i := range bp.reqs {
				l := bp.reqs[i].Leaf()
				targets[i] = fmt.Sprintf("/get-inclusion-proof/%d/%s", n, l.Hash())
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bp.serve(b, "GET", targets[i%len(targets)], nil, http.StatusOK)
				i += 7919
			}
		})
	}
}

// BenchmarkGetInclusionProofCold is a proof of a leaf in a tile the primary does not hold, as in a log much larger
// than its caches: the leaf hashes of its group are read from storage and checked. The leaf's index is in the index
// of committed leaves (found in storage the first time it is asked about, if it were not).
func BenchmarkGetInclusionProofCold(b *testing.B) {
	const n = 10000
	bp := newBenchPrimaryLimits(b, n, committed.Limits{MaxTiles: 1}) // a tree that holds one tile
	ctx := context.Background()
	var all []sigsum.Leaf // in index order
	for uint64(len(all)) < n {
		leaves, err := bp.log.GetLeaves(ctx, uint64(len(all)), n-uint64(len(all)))
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, leaves...)
	}
	// The leaves before the last full tile, the one held besides the tail.
	targets := make([]string, (n/256-1)*256)
	for i := range targets {
		targets[i] = fmt.Sprintf("/get-inclusion-proof/%d/%s", n, all[i].Hash())
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bp.serve(b, "GET", targets[i%len(targets)], nil, http.StatusOK)
		i += 7919
	}
}

func BenchmarkGetConsistencyProof(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			bp := newBenchPrimary(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bp.serve(b, "GET", fmt.Sprintf("/get-consistency-proof/%d/%d", 1+i%(n-1), n), nil, http.StatusOK)
				i += 7919
			}
		})
	}
}

func BenchmarkGetLeaves512(b *testing.B) {
	bp := newBenchPrimary(b, 10000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := i % (10000 - 512)
		bp.serve(b, "GET", fmt.Sprintf("/get-leaves/%d/%d", start, start+512), nil, http.StatusOK)
		i += 7919
	}
}

// BenchmarkRotate is a rotation without secondaries that signs 100 new leaves: read the local tree, sign, write
// the sth file atomically (fsync), publish. Queueing and integrating the leaves is not timed.
func BenchmarkRotate(b *testing.B) {
	bp := newBenchPrimary(b, 10)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		n := len(bp.reqs)
		reqs := make([]sigsum.AddLeafRequest, 100)
		for i := range reqs {
			reqs[i] = bp.request(b)
			l := reqs[i].Leaf()
			if _, err := bp.log.QueueLeaf(ctx, &l); err != nil {
				b.Fatal(err)
			}
		}
		bp.reqs = append(bp.reqs, reqs...)
		for th, _ := bp.log.TreeHead(ctx); th.Size < uint64(n+100); th, _ = bp.log.TreeHead(ctx) {
			time.Sleep(5 * time.Millisecond)
		}
		b.StartTimer()
		if err := bp.p.Rotate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

package main

import (
	"container/heap"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Modes.
const (
	ModeAddLeaf     = "add-leaf"      // new leaves, each re-posted every Retry until 200
	ModeAddKnown    = "add-known"     // resubmissions of committed leaves: each must answer 200
	ModeTreeHead    = "get-tree-head" // tree heads, signature verified
	ModeLeaves      = "get-leaves"    // Range leaves from a random start, compared with verified leaves
	ModeInclusion   = "inclusion"     // inclusion proofs of random leaves in the published tree
	ModeConsistency = "consistency"   // consistency proofs from random sizes to the published size
	ModeTile        = "tile"          // level-0 hash tiles (Sigsum v1.1), full where the tree has them, compared with verified hashes
	ModeEntries     = "entries"       // entry bundles (Sigsum v1.1), full where the tree has them, compared with verified leaves
)

var allModes = []string{ModeAddLeaf, ModeAddKnown, ModeTreeHead, ModeLeaves, ModeInclusion, ModeConsistency, ModeTile, ModeEntries}

func validMode(m string) bool {
	for _, a := range allModes {
		if a == m {
			return true
		}
	}
	return false
}

// Config configures a Bench. Every field is required except Stderr.
type Config struct {
	Client         *client.Client
	LogKey         sigsum.PublicKey
	Concurrency    int
	Duration       time.Duration
	Drain          time.Duration
	Retry          time.Duration
	MaxLeaves      int
	MaxRequests    int64
	Keys           int
	KeySeed        string
	KnownLeaves    int
	Range          uint64
	MaxSetupLeaves int
	VerifySample   int
	// Presign is how many of add-leaf's new leaves are signed before the run starts, so that the load generator's
	// signing does not take the CPU from the log it measures (on one machine); leaves beyond it are signed as they
	// are sent.
	Presign int
	// Probes is how many leaves add-leaf keeps in flight, one after another, beside the load, each re-posted every
	// ProbeRetry until 200 (zero: none). Under load the Concurrency workers are busy, so a leaf of the load is
	// re-posted later than its Retry; a probe's commit latency is the log's, measured in ProbeRetry steps.
	Probes     int
	ProbeRetry time.Duration
	// ProbeSpread is the most a probe waits, at random, before each new leaf: a probe that sent its next leaf at
	// once would send it just after the rotation that committed the last one, and measure a whole interval.
	ProbeSpread time.Duration
	// Stderr receives descriptions of the first errors of each run; nil discards them.
	Stderr io.Writer
}

// Bench runs modes against one log.
type Bench struct {
	cfg        Config
	submitters []sigsum.Signer
	// keys maps a submitter key hash to its key, to verify leaves read back.
	keys map[sigsum.Hash]sigsum.PublicKey
}

// NewBench derives the submitter keys: key i's seed is H(KeySeed ‖ ":" ‖ i), so separate runs (and the read modes
// of a later process) agree on them.
func NewBench(cfg Config) *Bench {
	b := &Bench{cfg: cfg, keys: make(map[sigsum.Hash]sigsum.PublicKey, cfg.Keys)}
	for i := 0; i < cfg.Keys; i++ {
		seed := sigsum.HashBytes(fmt.Appendf(nil, "%s:%d", cfg.KeySeed, i))
		s, _ := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(seed[:])) // a seed always gives a 64-byte key
		b.submitters = append(b.submitters, s)
		b.keys[s.Public().KeyHash()] = s.Public()
	}
	return b
}

// Run runs one mode and returns its result. It never runs longer than Duration (+ Drain for add-leaf, + a setup
// phase that is itself bounded).
func (b *Bench) Run(ctx context.Context, mode string) *Result {
	r := &Result{Mode: mode, Concurrency: b.cfg.Concurrency}
	ec := &errorCounter{w: b.cfg.Stderr, mode: mode}
	switch mode {
	case ModeAddLeaf:
		b.addLeaf(ctx, r, ec)
	case ModeAddKnown:
		b.addKnown(ctx, r, ec)
	default:
		b.read(ctx, mode, r, ec)
	}
	r.Errors = ec.n.Load()
	return r
}

// newRequest makes a signed add-leaf request for a random message with submitter i.
func (b *Bench) newRequest(i int) sigsum.AddLeafRequest {
	s := b.submitters[i%len(b.submitters)]
	var req sigsum.AddLeafRequest
	rand.Read(req.Message[:])
	sig, _ := s.Sign(sigsum.LeafSignedBytes(sigsum.HashBytes(req.Message[:]))) // in-memory signers do not fail
	req.Signature, req.PublicKey = sig, s.Public()
	return req
}

// presign signs the first n requests newRequest would make, on every CPU.
func (b *Bench) presign(n int) []sigsum.AddLeafRequest {
	reqs := make([]sigsum.AddLeafRequest, n)
	onEveryCPU(n, 1, func(i int) { reqs[i] = b.newRequest(i) })
	return reqs
}

// onEveryCPU calls f for 0, stride, 2·stride, … below n, spread over GOMAXPROCS goroutines, and returns when all
// calls have.
func onEveryCPU(n, stride int, f func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * stride; i < n; i += workers * stride {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// submission is one leaf a simulated client submits until the log answers 200.
type submission struct {
	req      sigsum.AddLeafRequest
	idx      int
	signed   bool
	first    time.Time // first POST
	due      time.Time // next POST
	accepted bool
}

type dueHeap []*submission

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(*submission)) }
func (h *dueHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// scheduler hands workers the next POST: a retry that is due first, else a new leaf while new leaves are allowed.
type scheduler struct {
	mu          sync.Mutex
	retries     dueHeap
	issued, max int
	newUntil    time.Time
	inflight    int
}

// next blocks until a submission is due and returns it, or returns nil when the run is over: ctx done, or no new
// leaves allowed and nothing left to retry.
func (s *scheduler) next(ctx context.Context) *submission {
	for {
		s.mu.Lock()
		now := time.Now()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return nil
		}
		if len(s.retries) > 0 && !s.retries[0].due.After(now) {
			sub := heap.Pop(&s.retries).(*submission)
			s.inflight++
			s.mu.Unlock()
			return sub
		}
		if s.issued < s.max && now.Before(s.newUntil) {
			sub := &submission{idx: s.issued}
			s.issued++
			s.inflight++
			s.mu.Unlock()
			return sub
		}
		if len(s.retries) == 0 && s.inflight == 0 {
			s.mu.Unlock()
			return nil
		}
		wait := 10 * time.Millisecond
		if len(s.retries) > 0 {
			wait = min(s.retries[0].due.Sub(now), 50*time.Millisecond)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// done ends a POST; a submission to retry goes back in the queue.
func (s *scheduler) done(sub *submission, retry bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if retry {
		heap.Push(&s.retries, sub)
	}
}

// pending returns the submissions still waiting for 200.
func (s *scheduler) pending() []*submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*submission(nil), s.retries...)
}

// submitStats is what a submit phase observed.
type submitStats struct {
	start                   time.Time
	latencies               []time.Duration // per POST
	commitLatencies         []time.Duration // per committed leaf
	accepted                int
	lastAccept, lastCommit  time.Time
	committed               []sigsum.AddLeafRequest
	uncommitted, incomplete int
}

// submit runs the client simulation: up to maxLeaves new leaves during newFor, each re-posted every Retry until
// 200; it returns when every leaf is committed or dropped, or at stopAt.
func (b *Bench) submit(ctx context.Context, maxLeaves int, newFor, stopAfter time.Duration, ec *errorCounter) *submitStats {
	signed := b.presign(min(maxLeaves, b.cfg.Presign))
	st := &submitStats{start: time.Now()}
	ctx, cancel := context.WithDeadline(ctx, st.start.Add(stopAfter))
	defer cancel()
	s := &scheduler{max: maxLeaves, newUntil: st.start.Add(newFor)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			defer func() {
				mu.Lock()
				st.latencies = append(st.latencies, lat...)
				mu.Unlock()
			}()
			for {
				sub := s.next(ctx)
				if sub == nil {
					return
				}
				if !sub.signed {
					if sub.idx < len(signed) {
						sub.req = signed[sub.idx]
					} else {
						sub.req = b.newRequest(sub.idx)
					}
					sub.signed = true
				}
				t0 := time.Now()
				if sub.first.IsZero() {
					sub.first = t0
				}
				ok, err := b.cfg.Client.AddLeaf(ctx, &sub.req, nil)
				t1 := time.Now()
				if ctx.Err() != nil { // the run is over: this answer does not count
					s.done(sub, true)
					return
				}
				lat = append(lat, t1.Sub(t0))
				retry := true
				switch {
				case refused(err):
					ec.add("leaf %d dropped: %v", sub.idx, err)
					retry = false
				case err != nil:
					ec.add("leaf %d (will retry): %v", sub.idx, err)
				}
				mu.Lock()
				if err == nil && !sub.accepted {
					sub.accepted = true
					st.accepted++
					st.lastAccept = t1
				}
				if err == nil && ok {
					st.commitLatencies = append(st.commitLatencies, t1.Sub(sub.first))
					st.committed = append(st.committed, sub.req)
					st.lastCommit = t1
					retry = false
				}
				mu.Unlock()
				sub.due = t1.Add(b.cfg.Retry)
				s.done(sub, retry)
			}
		}()
	}
	wg.Wait()
	for _, sub := range s.pending() {
		if sub.accepted {
			st.uncommitted++
		} else {
			st.incomplete++
		}
	}
	return st
}

// addLeaf measures new leaves: accepted and committed rates, and first POST to 200. It then checks the inclusion
// of a sample of the committed leaves in a verified tree head (200 must mean committed).
func (b *Bench) addLeaf(ctx context.Context, r *Result, ec *errorCounter) {
	probes := make(chan []time.Duration, b.cfg.Probes)
	probeCtx, stopProbes := context.WithCancel(ctx)
	for range b.cfg.Probes {
		go func() { probes <- b.probe(probeCtx, time.Now().Add(b.cfg.Duration), ec) }()
	}
	st := b.submit(ctx, b.cfg.MaxLeaves, b.cfg.Duration, b.cfg.Duration+b.cfg.Drain, ec)
	stopProbes()
	for range b.cfg.Probes {
		r.ProbeLatencies = append(r.ProbeLatencies, <-probes...)
	}
	r.Latencies, r.CommitLatencies = st.latencies, st.commitLatencies
	r.Accepted, r.Committed, r.Uncommitted = st.accepted, len(st.committed), st.uncommitted+st.incomplete
	if !st.lastAccept.IsZero() {
		r.AcceptedIn = st.lastAccept.Sub(st.start)
	}
	if !st.lastCommit.IsZero() {
		r.CommittedIn = st.lastCommit.Sub(st.start)
	}
	r.Elapsed = max(r.AcceptedIn, r.CommittedIn)
	if r.Uncommitted > 0 {
		ec.add("%d leaves not committed within -duration + -drain", r.Uncommitted)
	}
	b.checkCommitted(ctx, st.committed, r, ec)
}

// probe submits new leaves one at a time until newUntil, each after a random pause of up to ProbeSpread and
// re-posted every ProbeRetry until 200, and returns each committed leaf's time from its first POST to the 200. A
// leaf still waiting when ctx ends is not counted.
func (b *Bench) probe(ctx context.Context, newUntil time.Time, ec *errorCounter) []time.Duration {
	var lat []time.Duration
	for {
		if b.cfg.ProbeSpread > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(mrand.N(b.cfg.ProbeSpread)):
			}
		}
		if !time.Now().Before(newUntil) || ctx.Err() != nil {
			return lat
		}
		req := b.newRequest(0)
		first := time.Now()
		for {
			ok, err := b.cfg.Client.AddLeaf(ctx, &req, nil)
			if ctx.Err() != nil {
				return lat
			}
			if err == nil && ok {
				lat = append(lat, time.Since(first))
				break
			}
			if refused(err) {
				ec.add("probe leaf dropped: %v", err)
				break
			}
			if err != nil {
				ec.add("probe leaf (will retry): %v", err)
			}
			select {
			case <-ctx.Done():
				return lat
			case <-time.After(b.cfg.ProbeRetry):
			}
		}
	}
}

// refused reports whether an add-leaf error is one a re-post cannot change (400, 403): the leaf is dropped.
func refused(err error) bool {
	code := client.StatusCode(err)
	return err != nil && (code == 400 || code == 403)
}

// checkCommitted verifies a sample of committed leaves against the published, verified tree head.
func (b *Bench) checkCommitted(ctx context.Context, committed []sigsum.AddLeafRequest, r *Result, ec *errorCounter) {
	th, err := b.treeHead(ctx)
	if err != nil {
		ec.add("%v", err)
		return
	}
	r.TreeSize = th.Size
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	n := min(b.cfg.VerifySample, len(committed))
	for _, i := range rng.Perm(len(committed))[:n] {
		leaf := committed[i].Leaf()
		if err := b.checkInclusion(ctx, &th.TreeHead, leaf.Hash(), -1); err != nil {
			ec.add("committed leaf: %v", err)
		}
	}
}

// treeHead fetches the published tree head and verifies the log's signature.
func (b *Bench) treeHead(ctx context.Context) (sigsum.CosignedTreeHead, error) {
	th, err := b.cfg.Client.GetTreeHead(ctx)
	if err != nil {
		return th, err
	}
	if !th.Verify(b.cfg.LogKey) {
		return th, fmt.Errorf("get-tree-head: size %d: log signature does not verify", th.Size)
	}
	return th, nil
}

// checkInclusion fetches and verifies the inclusion proof of leafHash in th; index ≥ 0 must be the leaf's index.
func (b *Bench) checkInclusion(ctx context.Context, th *sigsum.TreeHead, leafHash sigsum.Hash, index int64) error {
	if th.Size == 1 {
		if th.RootHash != leafHash {
			return fmt.Errorf("leaf %s is not the only leaf of the tree of size 1", leafHash)
		}
		return nil
	}
	p, err := b.cfg.Client.GetInclusionProof(ctx, th.Size, leafHash)
	if err != nil {
		return err
	}
	if index >= 0 && p.LeafIndex != uint64(index) {
		return fmt.Errorf("inclusion proof puts leaf %d at index %d", index, p.LeafIndex)
	}
	return p.Verify(leafHash, th)
}

// addKnown submits KnownLeaves leaves and waits until they are committed (bounded by Duration + Drain), then
// resubmits them at random for Duration: every answer must be 200.
func (b *Bench) addKnown(ctx context.Context, r *Result, ec *errorCounter) {
	setup := b.submit(ctx, b.cfg.KnownLeaves, b.cfg.Duration, b.cfg.Duration+b.cfg.Drain, ec)
	if setup.uncommitted+setup.incomplete > 0 || len(setup.committed) == 0 {
		ec.add("setup: %d of %d leaves committed", len(setup.committed), b.cfg.KnownLeaves)
		if len(setup.committed) == 0 {
			return
		}
	}
	known := setup.committed
	r.Latencies, r.Elapsed = b.loop(ctx, func(ctx context.Context, rng *mrand.Rand) error {
		ok, err := b.cfg.Client.AddLeaf(ctx, &known[rng.IntN(len(known))], nil)
		if err == nil && !ok {
			return errors.New("add-leaf: a committed leaf answered 202")
		}
		return err
	}, ec)
	if th, err := b.treeHead(ctx); err == nil {
		r.TreeSize = th.Size
	} else {
		ec.add("%v", err)
	}
}

// loop runs op from Concurrency workers until Duration has passed or MaxRequests were made, and returns the
// latency of every request and the time the loop took.
func (b *Bench) loop(ctx context.Context, op func(context.Context, *mrand.Rand) error, ec *errorCounter) ([]time.Duration, time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(b.cfg.Duration))
	defer cancel()
	var count atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.Concurrency; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(seed, uint64(start.UnixNano())))
			lat := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil && count.Add(1) <= b.cfg.MaxRequests {
				t0 := time.Now()
				err := op(ctx, rng)
				if ctx.Err() != nil {
					break // cut off by the end of the run
				}
				lat = append(lat, time.Since(t0))
				if err != nil {
					ec.add("%v", err)
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(uint64(w))
	}
	wg.Wait()
	return all, time.Since(start)
}

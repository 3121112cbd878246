// Package secondary is the secondary role of a sigsumd node: it replicates the primary's tree into the node's own
// PREORDERED_LOG Trillian tree and serves get-secondary-tree-head, its integrated tree head signed with its own key,
// which the primary requires before it lets a size count as committed (PROTOCOL.md §4).
//
// Replication pulls get-leaves from the primary's internal listener and stores the leaves at the same indices.
// Every request (except the first, on an empty tree) starts one leaf early, at the last leaf this replica holds,
// and that leaf must come back unchanged: a primary whose history differs from ours at the junction (a failover to a
// node with another history, a restored backup) is caught before a single foreign leaf is appended. A different
// leaf at an index we hold, a Trillian conflict, or (optionally) a published head of the primary that our tree does
// not extend, all mean the replica has diverged: the secondary then stops replicating for good, reports it through
// Healthy and answers get-secondary-tree-head with 503, and an operator must look. It never continues on a diverged
// tree.
//
// A secondary that follows the log's published head serves the log's read API at that head (internal/reads:
// get-tree-head, proofs, get-leaves, checkpoint, tiles) once its replica holds that tree and extends it, never at
// its own, possibly larger, tree: the answers are the log's signed view, and go on while the primary is down.
// add-leaf, and everything on a secondary that does not follow the published head, is 404 with a one-line reason.
package secondary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/reads"
	"github.com/sigsumd/sigsumd/internal/repeatlog"
	"github.com/sigsumd/sigsumd/internal/timeout"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults for Config fields left zero.
const (
	// DefaultInterval is the poll interval once caught up: every leaf waits for a secondary before it is committed,
	// so a secondary polls far more often than the primary rotates (and a primary holds the poll open anyway).
	DefaultInterval  = 200 * time.Millisecond
	DefaultBatchSize = 4096
	// maxBackoffShift caps the retry delay after errors at Interval<<2, four intervals.
	maxBackoffShift = 2
)

// ErrDiverged is wrapped by the error that stops replication when this replica's tree and the primary's disagree.
var ErrDiverged = errors.New("replica diverged from the primary")

// Log is what the secondary needs of its PREORDERED_LOG tree (an engine.Log is one): storing and integrating the
// primary's leaves, and what the signed tree of the read API reads from storage.
type Log interface {
	committed.Storage
	// AddSequencedLeaves stores leaves at indices start, start+1, ...; a leaf already stored there is fine.
	AddSequencedLeaves(ctx context.Context, start uint64, leaves []sigsum.Leaf) error
	// MaxStoreBatch is the most leaves one AddSequencedLeaves should carry.
	MaxStoreBatch() int
	// TreeHead returns the integrated tree's head.
	TreeHead(ctx context.Context) (sigsum.TreeHead, error)
	// WaitGrowth waits up to maxWait until the integrated tree holds more than size leaves.
	WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error)
}

// Config configures a Secondary.
type Config struct {
	// Log is the node's PREORDERED_LOG tree; its engine must run a sequencer so that stored leaves get integrated.
	Log Log
	// Signer is the secondary's own key (not the log's): it signs get-secondary-tree-head.
	Signer sigsum.Signer
	// Primary reaches the primary's internal listener (get-leaves).
	Primary *client.Client
	// Interval is the pause between polls once caught up, and the base of the retry backoff (default
	// DefaultInterval).
	Interval time.Duration
	// BatchSize is how many leaves one get-leaves asks for (default DefaultBatchSize); the primary may return fewer.
	BatchSize uint64
	// StoreBatch bounds how many leaves one AddSequencedLeaves stores while catching up, in whole answers of
	// BatchSize (default Log.MaxStoreBatch()).
	StoreBatch uint64
	// Timeout bounds each backend or HTTP step (default timeout.Default).
	Timeout time.Duration
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger

	// LogKey and PrimaryPublic, set together, make the secondary follow the log's published head: it fetches
	// get-tree-head from PrimaryPublic every Interval (at least a second apart), verifies it with LogKey (and the
	// cosignatures with Witnesses), checks that it extends the head recorded before, and records the newest in
	// PublishedFile. Its own tree must extend that head once it holds the size (checked with its own consistency
	// proof); a failure means this replica diverged. `sigsumctl promote` relies on the recorded head.
	LogKey        *sigsum.PublicKey
	PrimaryPublic *client.Client
	// PublishedFile keeps the newest verified published head across restarts, as a get-tree-head body ("" keeps
	// it in memory only).
	PublishedFile string
	// Witnesses, if set, are the trust policy's witnesses: only their valid cosignatures are kept.
	Witnesses []policy.Witness

	// Metrics records replication (nil: nothing).
	Metrics *metrics.Metrics
}

// Secondary replicates the primary's tree and serves the secondary's internal and public listeners. Its methods
// are safe for concurrent use; Run runs at most once at a time.
type Secondary struct {
	cfg     Config
	logger  *slog.Logger
	running atomic.Bool

	mu       sync.Mutex
	head     sigsum.TreeHead // last integrated tree head seen
	lastErr  error           // last transient replication error, nil after a good step
	diverged error           // set once, wraps ErrDiverged; replication never resumes in this process
	// published is the newest verified published head of the log (nil: none known); publishedChecked is when the
	// primary last confirmed it; logForked, set once, is evidence that the log published inconsistent heads.
	published        *sigsum.CosignedTreeHead
	publishedChecked time.Time
	logForked        error

	signMu sync.Mutex // held while signing, so concurrent requests do not sign the same head twice
	signed *signedHead
	// headWaiters counts the get-secondary-tree-head requests held until the replica grows.
	headWaiters atomic.Int64

	// The public read API: the published head served (nil before this replica holds one) and the signed tree of
	// its size, updated by one goroutine (readsLoop), which readsWake wakes when follow records a head.
	readsWake chan struct{}
	served    atomic.Pointer[reads.Head]
	tree      atomic.Pointer[committed.Tree]
	// readsWarned is one more than the published size serveReads last warned about (warnReads); 0: none.
	readsWarned atomic.Uint64
}

// signedHead is the cached answer of get-secondary-tree-head.
type signedHead struct {
	th   sigsum.TreeHead
	body []byte
}

// New checks cfg, fills in defaults and returns a Secondary. It does not contact the primary or the backend.
func New(cfg Config) (*Secondary, error) {
	switch {
	case cfg.Log == nil:
		return nil, errors.New("secondary: no Trillian tree")
	case cfg.Signer == nil:
		return nil, errors.New("secondary: no signing key")
	case cfg.Primary == nil:
		return nil, errors.New("secondary: no primary URL")
	case (cfg.LogKey == nil) != (cfg.PrimaryPublic == nil):
		return nil, errors.New("secondary: following the published head needs both the log key and the log's public URL")
	case cfg.LogKey == nil && cfg.PublishedFile != "":
		return nil, errors.New("secondary: a published-head file needs the log key")
	case cfg.Interval < 0 || cfg.Timeout < 0:
		return nil, errors.New("secondary: negative interval or timeout")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.StoreBatch == 0 {
		cfg.StoreBatch = uint64(cfg.Log.MaxStoreBatch())
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = timeout.Default
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Secondary{cfg: cfg, logger: cfg.Logger, readsWake: make(chan struct{}, 1)}
	if err := s.loadPublished(); err != nil {
		return nil, err
	}
	return s, nil
}

// PublicKey returns the secondary's own public key, the one get-secondary-tree-head verifies with.
func (s *Secondary) PublicKey() sigsum.PublicKey { return s.cfg.Signer.Public() }

// TreeHead returns the last integrated tree head the replication loop or a handler has seen (zero before any).
func (s *Secondary) TreeHead() sigsum.TreeHead {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// Healthy returns nil while replication works. Once the replica diverged it returns that error (wrapping
// ErrDiverged) for good; otherwise the error of the last failed replication step until a step succeeds.
func (s *Secondary) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.diverged != nil {
		return s.diverged
	}
	return s.lastErr
}

// Ready reports why the secondary should not take traffic, or nil: its storage answers, its replica has not
// diverged from the primary, and it has seen no evidence that the log forked. (A primary that cannot be reached
// does not make the secondary unready: it still serves the tree head it holds.)
func (s *Secondary) Ready(ctx context.Context) error {
	if _, err := s.readHead(ctx); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := s.divergedErr(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logForked
}

func (s *Secondary) divergedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diverged
}

// sawHead records an integrated head; sizes only grow, so an older read arriving late is ignored.
func (s *Secondary) sawHead(th sigsum.TreeHead) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if th.Size >= s.head.Size {
		s.head = th
		s.cfg.Metrics.ReplicaSize(th.Size)
	}
}

// readHead reads the integrated tree head from Trillian, bounded by Timeout.
func (s *Secondary) readHead(ctx context.Context) (sigsum.TreeHead, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	th, err := s.cfg.Log.TreeHead(ctx)
	if err != nil {
		return th, err
	}
	s.sawHead(th)
	return th, nil
}

// replica is the replication loop's view of the local tree.
type replica struct {
	valid      bool
	next       uint64      // index of the next leaf to store; leaves [integrated, next) are stored, not integrated
	last       sigsum.Leaf // the leaf at next-1 (when next > 0)
	integrated sigsum.TreeHead
	lastCheck  time.Time // last self-check against the published head
	// fetchTook is how long the last fetch took: a primary that held it for new leaves (sigsum.WaitBeyondHeader)
	// has already made the caught-up loop wait, so Run sleeps only what is left of Interval.
	fetchTook time.Duration
	// prefetch is the next batch being fetched while catching up, or nil.
	prefetch *prefetch
}

// Run replicates until ctx is done, then returns nil. Errors are logged and retried with backoff; it never skips
// an index. If the replica diverges, Run stops and returns that error (wrapping ErrDiverged), and every later call
// returns it at once.
func (s *Secondary) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("secondary: replication is already running")
	}
	defer s.running.Store(false)
	if err := s.divergedErr(); err != nil {
		return err
	}
	if s.cfg.PrimaryPublic != nil {
		fctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { s.follow(fctx) })
		wg.Go(func() { s.readsLoop(fctx) })
		defer func() {
			stop()
			wg.Wait()
		}()
	}
	var r replica
	defer r.dropPrefetch()
	fails := 0
	// A primary that is down fails every retry: logged when it starts or changes, then every minute with a count.
	logFails := repeatlog.Failures{Every: time.Minute}
	// Until the primary first answers, it is most often still starting (a demo, a cluster brought up together): the
	// wait is told at info level, once, not as a failure.
	reached := false
	var progress catchUp
	for ctx.Err() == nil {
		caughtUp, err := s.step(ctx, &r)
		var wait time.Duration
		switch {
		case errors.Is(err, ErrDiverged):
			s.logger.Error("REPLICA DIVERGED FROM THE PRIMARY: replication stopped, operator action needed",
				"err", err, "size", r.integrated.Size)
			s.mu.Lock()
			s.diverged = err
			s.mu.Unlock()
			return err
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			fails++
			wait = s.cfg.Interval << min(fails-1, maxBackoffShift) // 1, 2, 4, 4, ... intervals
			if log, n := logFails.Fail(time.Now(), err); log {
				if reached {
					s.logger.Warn("replication step failed; retrying", "err", err, "retry_in", wait, "failures", n)
				} else {
					s.logger.Info("waiting for the primary to answer", "err", err, "retry_in", wait, "failures", n)
				}
			}
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			// Start over from what Trillian holds: nothing in memory is trusted after a failure.
			r.valid = false
		default:
			if log, n := logFails.OK(); log && reached {
				s.logger.Info("replication recovered", "size", r.integrated.Size, "failures", n)
			} else if log {
				s.logger.Info("the primary answers", "size", r.integrated.Size, "failures", n)
			}
			reached = true
			fails = 0
			s.mu.Lock()
			s.lastErr = nil
			s.mu.Unlock()
			s.reportProgress(&progress, r.integrated.Size, caughtUp)
			if caughtUp {
				wait = s.cfg.Interval - r.fetchTook
			}
		}
		if wait > 0 && !sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// catchUp is what the replication loop has said of its progress.
type catchUp struct {
	active     bool      // copying a backlog: more than one step since the last time it was caught up
	since      time.Time // when the backlog began
	from       uint64    // the size then
	said       time.Time // when progress was last logged
	saidSize   uint64
	everCaught bool
}

// catchUpEvery spaces out the progress lines of a catch-up.
const catchUpEvery = 10 * time.Second

// reportProgress tells a catch-up's story at info level: its progress every catchUpEvery (leaves/s, and how many
// remain to the log's published head when the follower knows it), and "caught up" once at its end. A secondary
// that keeps up with a busy primary logs nothing.
func (s *Secondary) reportProgress(p *catchUp, size uint64, caughtUp bool) {
	now := time.Now()
	switch {
	case caughtUp && p.active && now.Sub(p.since) >= catchUpEvery:
		// The end of a backlog worth a story (a short burst of a busy primary is not).
		s.logger.Info("caught up with the primary", "size", size, "leaves", size-p.from,
			"took", now.Sub(p.since).Round(time.Second))
		*p = catchUp{everCaught: true}
	case caughtUp && !p.everCaught:
		s.logger.Info("caught up with the primary", "size", size) // once after a start
		*p = catchUp{everCaught: true}
	case caughtUp && p.active:
		*p = catchUp{everCaught: true}
	case caughtUp:
	case !p.active:
		*p = catchUp{active: true, since: now, from: size, said: now, saidSize: size, everCaught: p.everCaught}
	case now.Sub(p.said) >= catchUpEvery:
		rate := float64(size-p.saidSize) / now.Sub(p.said).Seconds()
		args := []any{"size", size, "leaves_per_second", int(rate)}
		if cth, _, ok := s.Published(); ok && cth.Size > size {
			args = append(args, "remaining_to_published", cth.Size-size)
		}
		s.logger.Info("catching up with the primary", args...)
		p.said, p.saidSize = now, size
	}
}

// sleep waits d or until ctx is done; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// step does one round: fetch a batch from the primary and store it. It reports whether the primary had nothing new,
// in which case it has also waited until everything stored is integrated and run the self-check.
func (s *Secondary) step(ctx context.Context, r *replica) (bool, error) {
	if !r.valid {
		if err := s.load(ctx, r); err != nil {
			return false, err
		}
	}
	// Run ahead of integration by at most two stores: storing the next batch while the sequencer integrates the
	// previous one keeps both busy, and the bound keeps each sequencer pass small.
	storeMax := max(s.cfg.BatchSize, s.cfg.StoreBatch/s.cfg.BatchSize*s.cfg.BatchSize)
	if r.next-r.integrated.Size >= 2*storeMax {
		if err := s.waitIntegrated(ctx, r, r.next-storeMax); err != nil || !r.valid {
			return false, err
		}
	}
	start := time.Now()
	leaves, more, err := s.prefetched(ctx, r)
	if leaves == nil && err == nil {
		leaves, more, err = s.batch(ctx, replica{next: r.next, last: r.last}, true, storeMax)
	}
	r.fetchTook = time.Since(start)
	if err != nil {
		return false, err
	}
	if len(leaves) == 0 {
		if err := s.waitIntegrated(ctx, r, r.next); err != nil || !r.valid {
			return false, err
		}
		return true, s.selfCheck(ctx, r)
	}
	if more {
		// Catching up: fetch the next batch while this one is stored, so that the primary's reading and the
		// network overlap the local writes that bound catch-up.
		s.startPrefetch(ctx, r, leaves, storeMax)
	}
	s.logger.Debug("storing leaves", "start", r.next, "count", len(leaves), "integrated", r.integrated.Size)
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err = s.cfg.Log.AddSequencedLeaves(actx, r.next, leaves)
	cancel()
	if err != nil {
		r.dropPrefetch()
	}
	if errors.Is(err, engine.ErrConflict) {
		return false, fmt.Errorf("%w: storing leaves %d..%d: %w", ErrDiverged, r.next, r.next+uint64(len(leaves))-1, err)
	}
	if err != nil {
		return false, fmt.Errorf("storing leaves %d..%d: %w", r.next, r.next+uint64(len(leaves))-1, err)
	}
	r.next += uint64(len(leaves))
	r.last = leaves[len(leaves)-1]
	// A cheap read keeps TreeHead() and the run-ahead bound current while the loop is busy.
	th, err := s.readHead(ctx)
	if err != nil {
		return false, fmt.Errorf("reading own tree head: %w", err)
	}
	r.integrated = th
	s.cfg.Metrics.Replicated(len(leaves), time.Since(start))
	if th.Size > r.next {
		r.valid = false // see waitIntegrated
		return false, nil
	}
	if time.Since(r.lastCheck) >= s.cfg.Interval {
		// Busy replicating (the primary keeps growing): still check against the published head now and then.
		if err := s.selfCheck(ctx, r); err != nil {
			return false, err
		}
	}
	return false, nil
}

// batch fetches the leaves from cur.next: one answer, and while the primary answers in full (catching up), more
// answers, each checked against the last leaf of the one before, up to storeMax leaves. Large transactions write
// each page of SQLite's random hash indexes once for many leaves; that, not the network, bounds catch-up. more
// reports that the last answer was full, so the primary likely has more leaves.
func (s *Secondary) batch(ctx context.Context, cur replica, wait bool, storeMax uint64) (leaves []sigsum.Leaf, more bool, err error) {
	leaves, err = s.fetch(ctx, &cur, wait)
	if err != nil {
		return nil, false, err
	}
	full := func(n int) bool { return s.cfg.BatchSize > 1 && n > 0 && uint64(n)%(s.cfg.BatchSize-1) == 0 }
	for ahead := cur; full(len(leaves)) && uint64(len(leaves)) < storeMax-s.cfg.BatchSize; {
		ahead.next, ahead.last = cur.next+uint64(len(leaves)), leaves[len(leaves)-1]
		next, err := s.fetch(ctx, &ahead, false) // leaves in hand: no waiting for more
		if err != nil {
			return nil, false, err
		}
		if len(next) == 0 {
			return leaves, false, nil
		}
		leaves = append(leaves, next...)
	}
	return leaves, full(len(leaves)), nil
}

// prefetch is the batch after the one being stored, fetched meanwhile.
type prefetch struct {
	from   uint64      // index of its first leaf
	after  sigsum.Leaf // the leaf at from-1, which its first answer was checked against
	cancel context.CancelFunc
	done   chan struct{} // closed when leaves, more and err are set
	leaves []sigsum.Leaf
	more   bool
	err    error
}

// startPrefetch starts fetching the batch that follows batch, which is about to be stored from r.next.
func (s *Secondary) startPrefetch(ctx context.Context, r *replica, batch []sigsum.Leaf, storeMax uint64) {
	r.dropPrefetch()
	pctx, cancel := context.WithCancel(ctx)
	pf := &prefetch{from: r.next + uint64(len(batch)), after: batch[len(batch)-1], cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pf.done)
		pf.leaves, pf.more, pf.err = s.batch(pctx, replica{next: pf.from, last: pf.after}, false, storeMax)
	}()
	r.prefetch = pf
}

// prefetched returns the prefetched batch if it follows what the replica holds now; nil leaves and a nil error mean
// there is none to use (none fetched, the replica changed since, or the primary had nothing more).
func (s *Secondary) prefetched(ctx context.Context, r *replica) ([]sigsum.Leaf, bool, error) {
	pf := r.prefetch
	if pf == nil {
		return nil, false, nil
	}
	r.prefetch = nil
	defer pf.cancel()
	select {
	case <-pf.done:
	case <-ctx.Done():
		pf.cancel()
		<-pf.done // the deferred cancel is too late to wait on
		return nil, false, ctx.Err()
	}
	if pf.from != r.next || r.next > 0 && pf.after != r.last || pf.err == nil && len(pf.leaves) == 0 {
		return nil, false, nil
	}
	return pf.leaves, pf.more, pf.err
}

// dropPrefetch stops a prefetch and waits for it to end.
func (r *replica) dropPrefetch() {
	if pf := r.prefetch; pf != nil {
		r.prefetch = nil
		pf.cancel()
		<-pf.done
	}
}

// load starts the replication state from the integrated tree: leaves stored beyond it by an earlier attempt are
// simply stored again (Trillian accepts the same leaf at the same index).
func (s *Secondary) load(ctx context.Context, r *replica) error {
	th, err := s.readHead(ctx)
	if err != nil {
		return fmt.Errorf("reading own tree head: %w", err)
	}
	r.dropPrefetch()
	*r = replica{next: th.Size, integrated: th, lastCheck: r.lastCheck}
	if th.Size > 0 {
		lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		leaves, err := s.cfg.Log.GetLeaves(lctx, th.Size-1, 1)
		cancel()
		if err != nil {
			return fmt.Errorf("reading own leaf %d: %w", th.Size-1, err)
		}
		if len(leaves) != 1 {
			return fmt.Errorf("reading own leaf %d: got %d leaves", th.Size-1, len(leaves))
		}
		r.last = leaves[0]
	}
	r.valid = true
	return nil
}

// fetch returns the next leaves from index r.next, or none when the primary has no more (with wait, once it has
// had a moment to get more). From the second leaf on, it asks from r.next-1 and requires that leaf to be the one we
// hold (see the package comment), so that every leaf stored was checked against our history in the same answer, or
// between two checks.
func (s *Secondary) fetch(ctx context.Context, r *replica, wait bool) ([]sigsum.Leaf, error) {
	if r.next == 0 {
		return s.getLeaves(ctx, 0, wait, 0)
	}
	leaves, err := s.junction(ctx, r, wait)
	if err != nil || len(leaves) > 0 {
		return leaves, err
	}
	// Only the known leaf came back: either the primary is at our size, or it returned fewer than asked. Asking
	// from next tells the two apart (404: caught up).
	more, err := s.getLeaves(ctx, r.next, false, 0)
	if err != nil || len(more) == 0 {
		return nil, err
	}
	// The primary has more, but those leaves came without the junction, and the primary may have changed in
	// between (a failover). Check the junction again: usually the answer now also carries new leaves; a primary that
	// gives one leaf per answer gets `more` stored, checked before and after it was fetched.
	again, err := s.junction(ctx, r, false)
	if err != nil || len(again) > 0 {
		return again, err
	}
	return more, nil
}

// junction asks for leaves from r.next-1, checks that the first is ours and returns the rest (maybe none).
func (s *Secondary) junction(ctx context.Context, r *replica, wait bool) ([]sigsum.Leaf, error) {
	leaves, err := s.getLeaves(ctx, r.next-1, wait, r.next)
	if err != nil {
		return nil, err
	}
	if len(leaves) == 0 {
		// 404 at next-1: the primary's tree ends before ours. It may be restoring, or it lost leaves; either way
		// there is nothing to copy, and it is not ours to decide.
		return nil, fmt.Errorf("the primary's tree has %d leaves, fewer than this replica's %d", r.next-1, r.next)
	}
	if leaves[0] != r.last {
		return nil, fmt.Errorf("%w: the primary's leaf %d (hash %s) differs from ours (hash %s)",
			ErrDiverged, r.next-1, leaves[0].Hash(), r.last.Hash())
	}
	return leaves[1:], nil
}

// getLeaves asks the primary for up to BatchSize leaves from start; a 404 (end of tree) gives none. With wait, a
// primary holding no more than size leaves may hold the answer until it does (sigsum.WaitBeyondHeader).
func (s *Secondary) getLeaves(ctx context.Context, start uint64, wait bool, size uint64) ([]sigsum.Leaf, error) {
	end := start + s.cfg.BatchSize
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var leaves []sigsum.Leaf
	var err error
	if wait {
		leaves, err = s.cfg.Primary.GetLeavesWaiting(ctx, start, end, size)
	} else {
		leaves, err = s.cfg.Primary.GetLeaves(ctx, start, end)
	}
	switch {
	case client.StatusCode(err) == 404:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("fetching leaves from the primary: %w", err)
	case len(leaves) == 0:
		return nil, fmt.Errorf("fetching leaves %d..%d from the primary: empty 200 response", start, end-1)
	case uint64(len(leaves)) > end-start:
		return nil, fmt.Errorf("fetching leaves %d..%d from the primary: got %d leaves", start, end-1, len(leaves))
	}
	return leaves, nil
}

// waitIntegrated waits, on the engine's announcements of its commits, until at least target leaves are
// integrated, for at most Timeout.
func (s *Secondary) waitIntegrated(ctx context.Context, r *replica, target uint64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for {
		var th sigsum.TreeHead
		var err error
		if target == 0 {
			th, err = s.cfg.Log.TreeHead(ctx)
		} else {
			th, err = s.cfg.Log.WaitGrowth(ctx, target-1, s.cfg.Timeout) // returns once target leaves are in
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for integration to size %d: still at %d: %w", target, r.integrated.Size, ctx.Err())
			}
			return fmt.Errorf("waiting for integration to size %d: %w", target, err)
		}
		s.sawHead(th)
		r.integrated = th
		if th.Size > r.next {
			// More is integrated than this loop stored: leftovers of an earlier attempt. Reload, so that next and
			// the junction leaf come from Trillian again.
			r.valid = false
			return nil
		}
		if th.Size >= target {
			return nil
		}
	}
}

// selfCheck verifies that our integrated tree extends the newest published head the follower recorded, once we
// hold its size; an inconsistency is divergence.
func (s *Secondary) selfCheck(ctx context.Context, r *replica) error {
	if s.cfg.PrimaryPublic == nil {
		return nil
	}
	r.lastCheck = time.Now()
	cth, _, ok := s.Published()
	if !ok {
		return nil
	}
	pub := cth.SignedTreeHead
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	own, err := s.cfg.Log.TreeHead(ctx)
	if err != nil {
		return fmt.Errorf("self-check: reading own tree head: %w", err)
	}
	s.sawHead(own)
	if pub.Size > own.Size {
		return nil // behind the published head: checked once we have caught up with it
	}
	err = sigsum.Extends(pub.TreeHead, own, func() (sigsum.ConsistencyProof, error) {
		return s.cfg.Log.ConsistencyProof(ctx, pub.Size, own.Size)
	})
	switch {
	case errors.Is(err, sigsum.ErrNotExtends):
		return fmt.Errorf("%w: our tree does not extend the published tree head: %w", ErrDiverged, err)
	case err != nil:
		return fmt.Errorf("self-check: own consistency proof %d→%d: %w", pub.Size, own.Size, err)
	}
	return nil
}

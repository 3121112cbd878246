package primary

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sigsumd/sigsumd/internal/repeatlog"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// recheckPause is the wait before asking a lagging secondary again within one rotation; maxRecheck bounds how
// long one rotation keeps asking.
const (
	recheckPause = 100 * time.Millisecond
	maxRecheck   = time.Second
)

// errNextRotation cancels the requests of a rotation that are still out when the next one starts.
var errNextRotation = errors.New("no answer before the next rotation")

// requestTimeout bounds one request to a secondary, its verification included: the timeout, and at most half an
// interval, so that a secondary that hangs or answers a byte at a time is cut off well before the next rotation;
// but never under minRequestTimeout (the timeout permitting), so that very short intervals (tests, drills) do
// not fail a busy secondary.
func (p *Primary) requestTimeout() time.Duration {
	return min(p.cfg.Timeout, max(p.cfg.Interval/2, minRequestTimeout))
}

// minRequestTimeout is the least time a secondary gets to answer, unless the timeout is shorter.
const minRequestTimeout = 500 * time.Millisecond

// replicated returns the largest tree head, at most the local tree's, that enough secondaries have proven they
// hold: the k-th largest verified size (a secondary that cannot be reached or fails a check counts as holding
// nothing).
//
// All secondaries are asked at once and the rotation goes on as soon as the answers settle the size, without
// waiting for the rest: at once when k of them have verified the whole local tree (no other answer could raise
// the size); else secondaries a little behind (still copying the last leaves) are asked again every
// recheckPause, and once the recheck window ends (a second, half an interval at most: a leaf sequenced just
// before a rotation then waits a few hundred milliseconds, not a whole interval) the first k verified answers
// decide. Settling early with k answers gives the smallest of the k best verified so far: never more than what
// waiting for everyone would give, and held by k secondaries all the same. Without k verified answers the
// rotation waits for every request to end, each bounded by requestTimeout.
//
// Requests still out when the rotation goes on (a hung secondary, or one slower than the others) are left to
// finish within their bound in the background, so that what they answer still counts for /readyz and the
// metrics; the next rotation, or the end of Run, cancels whatever is left.
func (p *Primary) replicated(ctx context.Context, start time.Time, cur *sigsum.SignedTreeHead, own sigsum.TreeHead) sigsum.TreeHead {
	n := len(p.cfg.Secondaries)
	if n == 0 {
		return own
	}
	k := p.cfg.SecondaryQuorum
	if k == 0 {
		k = n
	}
	recheckEnd := start.Add(min(p.cfg.Interval/2, maxRecheck))
	g := &gathering{
		heads:    make([]sigsum.TreeHead, n),
		verified: make([]bool, n),
		errs:     make([]error, n),
		recorded: make([]bool, n),
		changed:  make(chan struct{}, 1),
	}
	gctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.ask(gctx, g, i, cur, own, recheckEnd)
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()

	window := time.NewTimer(time.Until(recheckEnd))
	defer window.Stop()
	rechecking := true
	var head sigsum.TreeHead
wait:
	for {
		var verified int
		head, verified = g.candidate(k)
		if verified >= k && (head.Size >= own.Size || !rechecking) {
			break wait
		}
		select {
		case <-g.changed:
		case <-window.C:
			rechecking = false
		case <-done:
			head, _ = g.candidate(k)
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	g.stop(p)
	p.stragglers = &stragglers{cancel: cancel, done: done}
	return head
}

// stragglers are a rotation's requests to secondaries still out after it went on.
type stragglers struct {
	cancel context.CancelCauseFunc
	done   <-chan struct{}
}

// stopStragglers cancels the last rotation's requests still out and waits for them to end. Hold rotateMu.
func (p *Primary) stopStragglers() {
	if s := p.stragglers; s != nil {
		s.cancel(errNextRotation)
		<-s.done
		p.stragglers = nil
	}
}

// gathering is one rotation's questions to the secondaries: what each has verifiably answered so far.
type gathering struct {
	mu       sync.Mutex
	heads    []sigsum.TreeHead // the largest head each secondary has verifiably answered; zero if none
	verified []bool
	errs     []error       // why each secondary's last request failed, if it did
	recorded []bool        // its outcome in this rotation is recorded (secondaryDone)
	stopped  bool          // the rotation has its tree head: ask no more
	changed  chan struct{} // signals an answer (capacity 1)
}

// candidate returns the k-th largest verified head (zero when fewer than k verified) and how many verified.
func (g *gathering) candidate(k int) (sigsum.TreeHead, int) {
	g.mu.Lock()
	heads := slices.Clone(g.heads)
	verified := 0
	for _, ok := range g.verified {
		if ok {
			verified++
		}
	}
	g.mu.Unlock()
	// The k-th largest size is held by at least k secondaries; any of them proved the root at that size.
	slices.SortFunc(heads, func(a, b sigsum.TreeHead) int { return compareDesc(a.Size, b.Size) })
	return heads[k-1], verified
}

// answer records one verified head of secondary i and says whether to ask it again if it is behind.
func (g *gathering) answer(i int, th sigsum.TreeHead) bool {
	g.mu.Lock()
	if !g.verified[i] || th.Size > g.heads[i].Size {
		g.heads[i] = th
	}
	g.verified[i] = true
	stopped := g.stopped
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
	return !stopped
}

// fail records a failed request of secondary i and says whether to ask it again.
func (g *gathering) fail(i int, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.errs[i] = err
	return !g.stopped
}

// asking says whether the rotation still gathers answers.
func (g *gathering) asking() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.stopped
}

// stop ends the asking and records what each secondary answered: verified, or failed (even if it is being asked
// again). A request still out is recorded when it ends: until then the secondary's last outcome stands, so that
// a healthy secondary a little slower than the quorum does not show as missing.
func (g *gathering) stop(p *Primary) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	for i, done := range g.recorded {
		switch {
		case done:
		case g.verified[i]:
			p.secondaryDone(i, nil)
			g.recorded[i] = true
		case g.errs[i] != nil:
			p.secondaryDone(i, g.errs[i])
			g.recorded[i] = true
		}
	}
}

// finish records secondary i's outcome in this rotation, verified or err, unless stop already did.
func (g *gathering) finish(p *Primary, i int, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.recorded[i] {
		return
	}
	g.recorded[i] = true
	if g.verified[i] {
		err = nil
	}
	p.secondaryDone(i, err)
}

// ask asks secondary i for its tree head, and again while it is behind the local tree until recheckEnd, as long as
// the rotation is gathering. The first request is answered at once; each later one asks the secondary to hold its
// answer until it holds the whole local tree (sigsum.WaitBeyondHeader), so that the rotation goes on as soon as it
// does. A secondary that answers at once all the same (one without the extension) is asked again every
// recheckPause. Each request gets requestTimeout, and a held one no more than the time left until recheckEnd.
func (p *Primary) ask(ctx context.Context, g *gathering, i int, cur *sigsum.SignedTreeHead, own sigsum.TreeHead, recheckEnd time.Time) {
	sec := &p.cfg.Secondaries[i]
	timeout := p.requestTimeout()
	var best uint64
	var last error
	for wait := false; ; wait = true {
		asked := time.Now()
		rtimeout := timeout
		if wait {
			rtimeout = min(timeout, recheckEnd.Sub(asked))
		}
		rctx, cancel := context.WithTimeout(ctx, rtimeout)
		th, err := p.checkSecondary(rctx, sec, cur, own, wait)
		// A held request the end of the recheck window cut short is neither an answer nor a failure: the secondary's
		// last outcome stands (its errors stay the same from rotation to rotation, so that they are logged once).
		cut := err != nil && rtimeout < timeout && rctx.Err() != nil && ctx.Err() == nil
		switch {
		case err == nil:
		case ctx.Err() != nil:
			err = context.Cause(ctx)
		case rctx.Err() != nil:
			err = fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		cancel()
		if cut {
			break
		}
		var more bool
		if err == nil {
			best = max(best, th.Size)
			p.secondaryVerified(i, th.Size)
			more = g.answer(i, th) && th.Size < own.Size
		} else {
			last = err
			more = g.fail(i, err)
		}
		if ctx.Err() != nil {
			if !errors.Is(context.Cause(ctx), errNextRotation) {
				return // shutting down: nothing to record
			}
			break
		}
		// The next request is held by the secondary. Only a held one it answered at once, behind all the same (a
		// secondary without the extension), is followed by a pause, to recheckPause from its start.
		var pause time.Duration
		if wait {
			pause = max(recheckPause-time.Since(asked), 0)
		}
		if !more || !time.Now().Add(pause).Before(recheckEnd) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errNextRotation) {
			return
		}
		if !g.asking() {
			break
		}
	}
	p.cfg.Metrics.Secondary(sec.Name, best, own.Size)
	g.finish(p, i, last)
}

// secondaryState is what the rotations learned of one secondary: for /readyz, and to log a failure once.
type secondaryState struct {
	asked bool
	err   error // why it did not verify in its last rotation; nil if it did
	fails repeatlog.Failures
	// verified is the tree it last proved to hold, at verifiedAt.
	verified   uint64
	verifiedAt time.Time
}

// secondaryVerified records that secondary i proved to hold a tree of size.
func (p *Primary) secondaryVerified(i int, size uint64) {
	p.secMu.Lock()
	defer p.secMu.Unlock()
	s := &p.secState[i]
	s.verified, s.verifiedAt = size, time.Now()
}

// secondaryDone records secondary i's outcome in a rotation and logs a change: the first failure, a different
// one, the same one at most every repeatlog.DefaultEvery with its count, and the recovery.
func (p *Primary) secondaryDone(i int, err error) {
	name := p.cfg.Secondaries[i].Name
	p.secMu.Lock()
	s := &p.secState[i]
	s.asked, s.err = true, err
	var logFail, logBack bool
	var count int
	if err != nil {
		logFail, count = s.fails.Fail(time.Now(), err)
	} else {
		logBack, count = s.fails.OK()
	}
	p.secMu.Unlock()
	switch {
	case logFail && count == 1:
		p.logger.Warn("secondary does not count toward the next tree head", "secondary", name, "err", err)
	case logFail:
		p.logger.Warn("secondary still does not count toward the next tree head", "secondary", name, "err", err,
			"failed_rotations", count)
	case logBack:
		p.logger.Info("secondary counts again", "secondary", name, "failed_rotations", count)
	}
}

// Degraded says why the primary, ready, commits with less redundancy than configured: it has no secondary at all,
// or some secondaries did not verify the tree in the last rotation (each named, with its reason; a request still
// out counts when it ends, within half an interval). It is "" when every secondary did, or before the first
// rotation. A degraded primary still serves and commits (k of n): it
// is ready, and /readyz says 200 with the reason.
func (p *Primary) Degraded() string {
	n := len(p.cfg.Secondaries)
	if n == 0 {
		return "no secondary: tree heads are signed without replication"
	}
	p.secMu.Lock()
	defer p.secMu.Unlock()
	var missing []string
	for i, s := range p.secState {
		switch {
		case !s.asked:
		case s.err != nil:
			missing = append(missing, fmt.Sprintf("%s (%v)", p.cfg.Secondaries[i].Name, s.err))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	k := p.cfg.SecondaryQuorum
	if k == 0 {
		k = n
	}
	what := "secondaries"
	if n-len(missing) < k {
		what = fmt.Sprintf("secondaries, fewer than the %d required: new leaves are not committed", k)
	}
	return fmt.Sprintf("%d of %d %s; not verified in the last rotation: %s", n-len(missing), n, what,
		strings.Join(missing, "; "))
}

// logRotation logs a rotation's failure once, then at most every repeatlog.DefaultEvery with its count, and its end.
func (p *Primary) logRotation(failures *repeatlog.Failures, err error) {
	if err == nil {
		if ok, n := failures.OK(); ok {
			p.logger.Info("rotations complete again", "failed_rotations", n)
		}
		return
	}
	if ok, n := failures.Fail(time.Now(), err); ok {
		p.logger.Error("rotation failed", "err", err, "failed_rotations", n)
	}
}

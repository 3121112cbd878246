// Package primary is the primary role of a log: it accepts leaves, rotates the signed tree head once its
// secondaries have proven they hold the leaves, and serves the public API and the internal get-leaves.
package primary

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/reads"
	"github.com/sigsumd/sigsumd/internal/repeatlog"
	"github.com/sigsumd/sigsumd/internal/timeout"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults for Config fields left zero.
const (
	// DefaultInterval is 10 s (the reference's is 30 s): Sigsum's named trust policies want witnesses asked at
	// least every 10 s, and a rotation is when they are asked.
	DefaultInterval = 10 * time.Second
	// DefaultWitnessInterval is how often witnesses are asked again while the tree does not grow.
	DefaultWitnessInterval = 10 * time.Second
	DefaultMaxRange        = reads.DefaultMaxRange
)

// Secondary is one secondary node the primary asks for its tree head.
type Secondary struct {
	// Name identifies the secondary in logs; its URL if empty.
	Name string
	// Client reaches the secondary's internal listener.
	Client *client.Client
	// Key is the secondary's own public key, which signs its tree heads.
	Key sigsum.PublicKey
}

// Log is what the primary needs of its LOG tree (an engine.Log is one): admission, the integrated tree's head, and
// what the signed tree reads from storage.
type Log interface {
	committed.Storage
	// QueueLeaf adds a leaf; it reports whether the leaf was there already.
	QueueLeaf(ctx context.Context, leaf *sigsum.Leaf) (bool, error)
	// TreeHead returns the integrated tree's head.
	TreeHead(ctx context.Context) (sigsum.TreeHead, error)
	// WaitGrowth waits up to maxWait until the integrated tree holds more than size leaves.
	WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error)
}

// Config configures a Primary.
type Config struct {
	// Log is the node's LOG tree.
	Log Log
	// Signer holds the log's key.
	Signer sigsum.Signer
	// STHFile is where the signed tree head is kept; `<STHFile>.startup` sets the first start's mode.
	STHFile string
	// Secondaries must hold a tree before the primary signs it. None means the primary signs its own tree (a log
	// without replicas: for tests and demos).
	Secondaries []Secondary
	// SecondaryQuorum is how many secondaries must hold a tree before it is signed (k of n); 0 means all.
	SecondaryQuorum int
	// Interval is the time between rotations (default DefaultInterval).
	Interval time.Duration
	// Timeout bounds each backend call and each request to a secondary (default timeout.Default).
	Timeout time.Duration
	// MaxRange is the most leaves one get-leaves answer holds (default DefaultMaxRange).
	MaxRange uint64
	// Committed bounds what the primary holds of its signed tree in memory (zero: committed's defaults).
	Committed committed.Limits
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger

	// WitnessInterval is how often the witnesses are asked again while the tree does not grow (default
	// DefaultWitnessInterval); a new head is sent at once.
	WitnessInterval time.Duration
	// Witnesses gathers cosignatures for each signed head; nil publishes signed heads at once, bare.
	Witnesses *witness.Collector
	// Policy decides when a head has enough cosignatures to be published; nil (or quorum none) publishes the
	// head with whatever cosignatures it got. SetWitnessing changes both later.
	Policy *policy.Policy
	// PublishedFile keeps the published head with its cosignatures across restarts (needed with Witnesses).
	PublishedFile string
	// InternalAccess, if set, guards the internal get-leaves (unpublished leaves, long-poll slots): the node lets
	// only its configured secondaries through (nodetls.Require). Nil serves everyone who reaches the listener.
	InternalAccess func(http.Handler) http.Handler
	// Limiter rate-limits new leaves; nil means no rate limiting.
	Limiter *ratelimit.Limiter
	// Metrics records what the primary does (nil: nothing).
	Metrics *metrics.Metrics
}

// Primary is a running primary node. Its handlers are safe for concurrent use.
type Primary struct {
	cfg    Config
	logKey sigsum.PublicKey
	logger *slog.Logger

	rotateMu  sync.Mutex   // one rotation at a time
	rotated   atomic.Int64 // unix nanoseconds of the last rotation that completed
	witnessed atomic.Int64 // unix nanoseconds of the last time the witnesses were asked
	signed    atomic.Pointer[sigsum.SignedTreeHead]
	published atomic.Pointer[publishedHead]
	// publishedLogged and publishedSince pace the "published tree head" info line (logPublished).
	publishedLogMu  sync.Mutex
	publishedLogged time.Time
	publishedSince  int
	pending         pendingLeaves
	tree            *committed.Tree // the signed tree: every read of it, from memory or storage
	// witnessing is the policy and witnesses in force; SetWitnessing swaps them (SIGHUP).
	witnessing atomic.Pointer[witnessing]

	leavesWaiters slots        // internal get-leaves held for new leaves
	leavesWait    atomic.Int64 // how long one is held at most (maxLeavesWait; tests change it)

	stragglers *stragglers      // the last rotation's requests to secondaries still out; guarded by rotateMu
	secMu      sync.Mutex       // guards secState
	secState   []secondaryState // what the rotations learned of each secondary, in Secondaries' order

	signerMu      sync.Mutex
	signerChecked time.Time
	signerErr     error

	// storageFullAt is when a write last failed for want of space (unix nanoseconds; 0: not since the last write
	// that succeeded): /readyz is unready for storageFullWindow after it.
	storageFullAt  atomic.Int64
	backendMu      sync.Mutex
	backendErrs    repeatlog.Failures // backend failures of handlers, logged once and then with a count
	backendFailing atomic.Bool        // backendErrs counts a failure: a write's success has a run to end
}

// storageFullWindow is how long after a write failed for want of space the primary reports itself unready, unless
// a write succeeds first. Bounded, so a primary pulled from its load balancer (and so not written to) becomes ready
// again and is tried.
const storageFullWindow = 30 * time.Second

// backendFailed logs a handler's backend failure: the first of a kind at once, then at most every repeatlog.DefaultEvery with
// the count, not once per request (a full disk fails every add-leaf).
func (p *Primary) backendFailed(path string, err error) {
	p.backendMu.Lock()
	log, n := p.backendErrs.Fail(time.Now(), err)
	p.backendFailing.Store(true)
	p.backendMu.Unlock()
	if log {
		p.logger.Error("backend failure", "path", path, "err", err, "failures", n)
	}
}

// backendAnswers ends a run of backend failures: a write succeeded.
func (p *Primary) backendAnswers() {
	if !p.backendFailing.Load() {
		return // the common case, without a lock
	}
	p.storageFullAt.Store(0)
	p.backendMu.Lock()
	p.backendFailing.Store(false)
	ended, n := p.backendErrs.OK()
	p.backendMu.Unlock()
	if ended {
		p.logger.Info("backend answers again", "failures", n)
	}
}

// witnessing is who cosigns and how many must: no collector publishes signed heads bare, at once.
type witnessing struct {
	policy    *policy.Policy
	collector *witness.Collector
}

// SetWitnessing swaps the trust policy and its witnesses (a policy reload); nil, nil stops witnessing. The next
// rotation uses them.
func (p *Primary) SetWitnessing(pol *policy.Policy, c *witness.Collector) {
	p.witnessing.Store(&witnessing{policy: pol, collector: c})
}

// publishedHead is the head get-tree-head serves, with its body encoded once, and when this process began serving it.
type publishedHead struct {
	cth  sigsum.CosignedTreeHead
	head reads.Head // as the read API serves it: get-tree-head and the checkpoint, encoded once
	at   time.Time
}

// newPublished is cth published at at, with checkpoint its C2SP checkpoint (the log's signed note and the
// witnesses' cosignature lines).
func newPublished(cth sigsum.CosignedTreeHead, checkpoint []byte, at time.Time) *publishedHead {
	return &publishedHead{cth: cth, at: at, head: reads.Head{Size: cth.Size, Body: cth.MarshalASCII(), Checkpoint: checkpoint}}
}

// New starts a primary from its state files: the sth file of an earlier run, or the startup file of a first one.
func New(ctx context.Context, cfg Config) (*Primary, error) {
	if cfg.Log == nil || cfg.Signer == nil || cfg.STHFile == "" {
		return nil, errors.New("primary: Log, Signer and STHFile are required")
	}
	if cfg.SecondaryQuorum < 0 || cfg.SecondaryQuorum > len(cfg.Secondaries) {
		return nil, fmt.Errorf("primary: secondary quorum %d with %d secondaries", cfg.SecondaryQuorum, len(cfg.Secondaries))
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = timeout.Default
	}
	if cfg.MaxRange == 0 {
		cfg.MaxRange = DefaultMaxRange
	}
	if cfg.WitnessInterval <= 0 {
		cfg.WitnessInterval = DefaultWitnessInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i := range cfg.Secondaries {
		if cfg.Secondaries[i].Name == "" {
			cfg.Secondaries[i].Name = fmt.Sprintf("secondary %d", i+1)
		}
	}
	p := &Primary{cfg: cfg, logKey: cfg.Signer.Public(), logger: cfg.Logger, leavesWaiters: make(slots, maxLeavesWaiters)}
	p.pending.init()
	p.secState = make([]secondaryState, len(cfg.Secondaries))
	if len(cfg.Secondaries) == 0 {
		p.logger.Warn("primary has no secondary: tree heads are signed without replication, and a lost store loses committed leaves")
	}
	p.leavesWait.Store(int64(maxLeavesWait))
	p.SetWitnessing(cfg.Policy, cfg.Witnesses)

	sth, mode, err := startupState(cfg.STHFile, p.logKey)
	if err != nil {
		return nil, err
	}
	// Reading a large log into memory takes longer than one backend call: the timeout bounds each call, not the
	// whole start.
	loadCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	own, err := cfg.Log.TreeHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the local tree: %w", err)
	}
	if sth != nil {
		if err := p.checkLocalTree(ctx, sth, own); err != nil {
			return nil, err
		}
		p.signed.Store(sth)
		p.cfg.Metrics.Signed(sth.Size)
		p.restorePublished(sth)
		if err := p.loadCommitted(loadCtx, sth.Size); err != nil {
			return nil, err
		}
		p.logger.Info("primary resumes from sth file", "size", sth.Size, "published", p.Published().Size, "local_size", own.Size)
		return p, nil
	}
	th := sigsum.TreeHead{RootHash: sigsum.RootHash(nil)}
	if mode == StartupLocalTree {
		th = own
	}
	first, err := th.Sign(cfg.Signer)
	if err != nil {
		return nil, err
	}
	if err := WriteSTHFile(cfg.STHFile, &first); err != nil {
		return nil, err
	}
	if err := atomicfile.Remove(StartupFile(cfg.STHFile)); err != nil {
		return nil, err
	}
	p.signed.Store(&first)
	p.cfg.Metrics.Signed(first.Size)
	if err := p.loadCommitted(loadCtx, first.Size); err != nil {
		return nil, err
	}
	p.publish(sigsum.CosignedTreeHead{SignedTreeHead: first})
	p.logger.Info("primary signed its first tree head", "startup", string(mode), "size", first.Size)
	return p, nil
}

// loadCommitted opens the signed tree of size size at a start (committed.Open: all of it, to hold its upper levels
// and newest tiles, when it is small enough to read in a reasonable time; else only its newest leaves, for answering
// retries).
func (p *Primary) loadCommitted(ctx context.Context, size uint64) error {
	tree, err := committed.Open(ctx, committed.Config{Source: p.cfg.Log, Limits: p.cfg.Committed,
		Timeout: p.cfg.Timeout, OnAdvance: p.pending.remove, Logger: p.logger}, size)
	if err != nil {
		return err
	}
	p.tree = tree
	return nil
}

// checkLocalTree refuses to run on a tree that does not extend the head this log signed last: a wrong storage or
// tree id, or a store that lost data, must not sign anything.
func (p *Primary) checkLocalTree(ctx context.Context, sth *sigsum.SignedTreeHead, own sigsum.TreeHead) error {
	if own.Size < sth.Size {
		return fmt.Errorf("local tree has %d leaves but the sth file signs %d: wrong storage or tree id?", own.Size, sth.Size)
	}
	err := sigsum.Extends(sth.TreeHead, own, func() (sigsum.ConsistencyProof, error) {
		return p.cfg.Log.ConsistencyProof(ctx, sth.Size, own.Size)
	})
	if err != nil {
		return fmt.Errorf("local tree is not consistent with the sth file: %w", err)
	}
	return nil
}

// maxWitnessGrace bounds how long a rotation waits for more cosignatures once the quorum is met.
const maxWitnessGrace = time.Second

// publish makes cth the head get-tree-head and checkpoint serve, and keeps it for the next start. lines are the
// witnesses' note signature lines for the checkpoint, each as the witness signed it under its own name.
func (p *Primary) publish(cth sigsum.CosignedTreeHead, lines ...[]byte) {
	sigsum.SortCosignatures(cth.Cosignatures)
	now := time.Now()
	checkpoint := cth.SignedNote(p.logKey)
	for _, l := range lines {
		checkpoint = append(checkpoint, l...)
	}
	prev := p.published.Swap(newPublished(cth, checkpoint, now))
	if prev != nil && prev.cth.Size != cth.Size {
		p.logPublished(now, cth)
	}
	p.cfg.Metrics.Published(cth.Size)
	if p.cfg.PublishedFile != "" {
		if err := witness.SavePublished(p.cfg.PublishedFile, cth); err != nil {
			// The head is served all the same; a restart then serves the signed head until witnesses cosign it.
			p.logger.Error("keeping the published tree head", "err", err)
		} else if err := atomicfile.Write(checkpointFile(p.cfg.PublishedFile), checkpoint, 0o644); err != nil {
			p.logger.Error("keeping the published checkpoint", "err", err)
		}
	}
}

// publishedLogEvery is the least time between two "published" info lines: a busy log publishes every interval.
const publishedLogEvery = 5 * time.Second

// logPublished tells, at info level, that the log published a larger head: at most once every publishedLogEvery,
// with the number of heads published since the last line.
func (p *Primary) logPublished(now time.Time, cth sigsum.CosignedTreeHead) {
	p.publishedLogMu.Lock()
	defer p.publishedLogMu.Unlock()
	p.publishedSince++
	if now.Sub(p.publishedLogged) < publishedLogEvery {
		return
	}
	p.logger.Info("published tree head", "size", cth.Size, "cosignatures", len(cth.Cosignatures),
		"heads_since_last_line", p.publishedSince)
	p.publishedLogged, p.publishedSince = now, 0
}

// restorePublished serves, after a restart, the head published before it, with its cosignatures: a restart
// must not replace a cosigned head by a bare one. Without a usable file, the signed head is served until
// witnesses cosign it (the first rotation asks them at once).
func (p *Primary) restorePublished(sth *sigsum.SignedTreeHead) {
	if w := p.witnessing.Load(); w.collector != nil && p.cfg.PublishedFile != "" {
		cth, err := witness.LoadPublished(p.cfg.PublishedFile, p.logKey)
		switch {
		case err == nil && cth.Size <= sth.Size:
			if w.policy != nil {
				cth.Cosignatures = witness.VerifyCosignatures(p.logKey, &cth.TreeHead, w.policy.Witnesses(), cth.Cosignatures)
			}
			p.published.Store(newPublished(cth, p.restoreCheckpoint(&cth), time.Now()))
			p.cfg.Metrics.Published(cth.Size)
			return
		case err == nil:
			p.logger.Warn("published tree head file is ahead of the sth file; ignoring it", "published", cth.Size, "signed", sth.Size)
		case !errors.Is(err, fs.ErrNotExist):
			p.logger.Warn("published tree head file unusable", "err", err)
		}
	}
	cth := sigsum.CosignedTreeHead{SignedTreeHead: *sth}
	p.published.Store(newPublished(cth, sth.SignedNote(p.logKey), time.Now()))
	p.cfg.Metrics.Published(cth.Size)
}

// checkpointFile is where the published head's checkpoint is kept beside the published head file: the witnesses'
// note lines name them as they named themselves, which the published head (its cosignatures by key hash) does not.
func checkpointFile(published string) string { return published + ".checkpoint" }

// restoreCheckpoint returns the checkpoint of cth, restored from disk: the one kept when it was published, with
// the note lines of the cosignatures still valid. Without it (an older version wrote the published head), the
// checkpoint carries the log's signature only.
func (p *Primary) restoreCheckpoint(cth *sigsum.CosignedTreeHead) []byte {
	b, err := atomicfile.ReadBounded(checkpointFile(p.cfg.PublishedFile), maxCheckpointBytes)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.logger.Warn("not restoring the kept checkpoint: the checkpoint carries the log's signature only", "err", err)
		}
		b = nil
	}
	var witnesses []policy.Witness
	if w := p.witnessing.Load(); w != nil && w.policy != nil {
		witnesses = w.policy.Witnesses()
	}
	return reads.Checkpoint(cth.SignedNote(p.logKey), b, cth.Cosignatures, witnesses...)
}

// maxCheckpointBytes bounds a kept checkpoint: a few hundred bytes per witness.
const maxCheckpointBytes = 64 << 10

// Close saves and releases what the primary holds beyond its tree: the rate-limit counters. Call it after the
// listeners have stopped.
func (p *Primary) Close() error {
	if p.cfg.Limiter == nil {
		return nil
	}
	return p.cfg.Limiter.Close()
}

// Reload re-reads the rate-limit file (SIGHUP). A bad file is refused and the old limits stay.
func (p *Primary) Reload() error {
	if p.cfg.Limiter == nil {
		return nil
	}
	return p.cfg.Limiter.Reload()
}

// Ready reports why the primary should not take traffic, or nil: its storage answers, its signer signs and
// rotations keep completing (one is overdue after three intervals plus the timeout). A ready primary may still be
// degraded (see Degraded).
func (p *Primary) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if _, err := p.cfg.Log.TreeHead(ctx); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if at := p.storageFullAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < storageFullWindow {
		return fmt.Errorf("storage full: add-leaf answers 503 (last %v ago)", time.Since(time.Unix(0, at)).Round(time.Second))
	}
	if last := p.rotated.Load(); last != 0 {
		if late := time.Since(time.Unix(0, last)); late > 3*p.cfg.Interval+p.cfg.Timeout {
			return fmt.Errorf("rotation stalled: the last one completed %v ago", late.Round(time.Second))
		}
	}
	return p.checkSigner()
}

// signerCheckEvery spaces out signer probes: through ssh-agent (or an HSM behind it) each costs a round trip.
const signerCheckEvery = time.Minute

// checkSigner signs a probe message, at most once a minute, and checks the signature.
func (p *Primary) checkSigner() error {
	p.signerMu.Lock()
	defer p.signerMu.Unlock()
	if time.Since(p.signerChecked) < signerCheckEvery {
		return p.signerErr
	}
	msg := []byte("sigsumd readiness probe")
	sig, err := p.cfg.Signer.Sign(msg)
	switch {
	case err != nil:
		p.signerErr = fmt.Errorf("signer: %w", err)
	case !p.logKey.Verify(msg, sig):
		p.signerErr = errors.New("signer: signature does not verify with the log key")
	default:
		p.signerErr = nil
	}
	p.signerChecked = time.Now()
	return p.signerErr
}

// Detail is one line for /readyz: the published and signed sizes, and how long ago this process published the
// head it serves.
func (p *Primary) Detail() string {
	pub := p.published.Load()
	return fmt.Sprintf("published head: size %d with %d cosignatures, published %v ago; signed size %d",
		pub.cth.Size, len(pub.cth.Cosignatures), time.Since(pub.at).Round(time.Second), p.Signed().Size)
}

// Signed returns the latest signed tree head.
func (p *Primary) Signed() sigsum.SignedTreeHead { return *p.signed.Load() }

// Published returns the tree head get-tree-head serves.
func (p *Primary) Published() sigsum.CosignedTreeHead { return p.published.Load().cth }

// startupPeriod is the time between rotations right after a start (or Interval if that is shorter).
const startupPeriod = time.Second

// Run rotates the tree head until ctx is done: at once on start, then every Interval.
//
// A start is often a failover: the new primary must commit the leaves submitted to it within seconds, not an
// interval (30 s by default) later, and its signed head may lack cosignatures. So the first rotation runs at
// once, and the next ones every startupPeriod until one signs a larger tree than the one at start (leaves flow:
// secondaries follow and the signer works) or one Interval has passed, whichever comes first; then every Interval.
// Fast rotations cost the secondaries one cheap request a second for at most one interval; the witnesses are
// asked only for a head that changed or still lacks its cosignatures.
func (p *Primary) Run(ctx context.Context) error {
	defer func() {
		p.rotateMu.Lock()
		p.stopStragglers()
		p.rotateMu.Unlock()
	}()
	started, startSize := time.Now(), p.Signed().Size
	period := min(p.cfg.Interval, startupPeriod)
	starting := period < p.cfg.Interval
	t := time.NewTicker(period)
	defer t.Stop()
	var failures repeatlog.Failures
	for first := true; ; first = false {
		err := p.rotate(ctx, starting && !first)
		if ctx.Err() != nil {
			return nil
		}
		p.logRotation(&failures, err)
		if starting && !fastRotation(time.Since(started), p.cfg.Interval, p.Signed().Size > startSize) {
			starting = false
			t.Reset(p.cfg.Interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// fastRotation says whether rotations still run every startupPeriod, since a start and with the signed tree
// grown beyond the one at start or not.
func fastRotation(sinceStart, interval time.Duration, grown bool) bool {
	return !grown && sinceStart < interval
}

// Rotate signs the largest tree the secondaries have proven they hold, if it is larger than the signed one.
func (p *Primary) Rotate(ctx context.Context) error { return p.rotate(ctx, false) }

// rotate is Rotate; a fast one sends the witnesses only a head that is new or not yet published.
func (p *Primary) rotate(ctx context.Context, fast bool) error {
	p.rotateMu.Lock()
	defer p.rotateMu.Unlock()
	// The last rotation's stragglers had their time (a request to a secondary gets at most half an interval).
	p.stopStragglers()
	start := time.Now()
	cur := p.signed.Load()
	tctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	own, err := p.cfg.Log.TreeHead(tctx)
	cancel()
	if err != nil {
		return fmt.Errorf("reading the local tree: %w", err)
	}
	next := p.replicated(ctx, start, cur, own)
	if err := ctx.Err(); err != nil {
		return err
	}
	if next.Size > cur.Size {
		sth, err := next.Sign(p.cfg.Signer)
		if err != nil {
			return err
		}
		written := time.Now()
		err = WriteSTHFile(p.cfg.STHFile, &sth)
		p.cfg.Metrics.Storage("sth_file_write", time.Since(written))
		if err != nil {
			return err
		}
		if p.witnessing.Load().collector == nil {
			// Without witnesses the signed head is the published one: publish it before any add-leaf answers 200
			// for it, so get-tree-head covers every leaf that got 200. (Reads of the new size come from storage
			// until the tree advances below.)
			p.publish(sigsum.CosignedTreeHead{SignedTreeHead: sth})
		}
		p.signed.Store(&sth)
		p.cfg.Metrics.Signed(sth.Size)
		if err := p.tree.Advance(ctx, sth.Size); err != nil {
			// Committed all the same; reads of these leaves fall back to storage.
			p.logger.Warn("reading the newly signed leaves", "err", err)
		}
		cur = &sth
		p.pending.prune(time.Now().Add(-pendingTTL))
		p.logger.Debug("signed tree head", "size", sth.Size, "local_size", own.Size)
	}
	// Witnesses hear of a head at once when it is new (or not yet published), and again every WitnessInterval
	// while the tree does not grow: their cosignatures stay fresh, a witness that was down catches up, and
	// witnesses, the ecosystem's scarcest resource, are not asked every rotation of an idle log.
	// Never more often than the witnesses' minimum interval (a rotation then waits for the next one, quietly).
	since := time.Since(time.Unix(0, p.witnessed.Load()))
	if (p.Published().SignedTreeHead != *cur || since >= p.cfg.WitnessInterval) && since >= p.witnessGap() {
		p.witness(ctx, cur)
	}
	p.cfg.Metrics.Rotation(time.Since(start))
	p.rotated.Store(time.Now().UnixNano())
	return nil
}

// witnessGap is the least time between two rounds of the witnesses in force (zero without witnesses).
func (p *Primary) witnessGap() time.Duration {
	if w := p.witnessing.Load(); w != nil && w.collector != nil {
		return w.collector.MinInterval()
	}
	return 0
}

// witness publishes the signed head: at once without witnesses, else once its cosignatures satisfy the policy.
// The signed head is sent to the witnesses every rotation, changed or not, so its cosignatures stay fresh and a
// witness that was down catches up; until the quorum is met the previous head stays published.
func (p *Primary) witness(ctx context.Context, sth *sigsum.SignedTreeHead) {
	w := p.witnessing.Load()
	if w.collector == nil {
		if p.Published().SignedTreeHead != *sth {
			p.publish(sigsum.CosignedTreeHead{SignedTreeHead: *sth})
		}
		return
	}
	// Witnesses get at most one interval, and the rotation goes on as soon as the quorum is met (after a short
	// grace for the rest): a hung witness holds up neither the others nor the next rotation.
	start := time.Now()
	p.witnessed.Store(start.UnixNano())
	wctx, cancel := context.WithTimeout(ctx, p.cfg.Interval)
	var enough func(map[sigsum.Hash]bool) bool
	if w.policy != nil {
		enough = w.policy.Satisfied
	}
	cs, asked := w.collector.CosignUntil(wctx, *sth, enough, min(p.cfg.Interval/4, maxWitnessGrace))
	cancel()
	if asked == 0 {
		// Every witness was asked less than its minimum interval ago, or is still answering: not a round.
		p.logger.Debug("witnesses not asked this rotation: within their minimum interval or still answering", "size", sth.Size)
		return
	}
	cosigners := make(map[sigsum.Hash]bool, len(cs))
	for _, c := range cs {
		cosigners[c.KeyHash] = true
	}
	reached := w.policy == nil || w.policy.Satisfied(cosigners)
	p.cfg.Metrics.WitnessQuorum(reached, time.Since(start))
	if !reached {
		if ctx.Err() == nil {
			p.logger.Warn("tree head lacks the witness quorum; the previous head stays published",
				"size", sth.Size, "cosignatures", len(cs), "published", p.Published().Size)
		}
		return
	}
	lines := make([][]byte, len(cs))
	for i := range cs {
		lines[i] = cs[i].NoteLine
	}
	p.publish(sigsum.CosignedTreeHead{SignedTreeHead: *sth, Cosignatures: witness.Cosignatures(cs)}, lines...)
}

func compareDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// checkSecondary fetches and verifies a secondary's tree head (PROTOCOL.md §4): its own signature, a size between
// the signed size and ours, and a root consistent with our tree. With wait, a secondary that holds less than our
// tree may hold the answer until it holds all of it (sigsum.WaitBeyondHeader). ctx bounds the whole check.
func (p *Primary) checkSecondary(ctx context.Context, sec *Secondary, cur *sigsum.SignedTreeHead, own sigsum.TreeHead, wait bool) (sigsum.TreeHead, error) {
	var sth sigsum.SignedTreeHead
	var err error
	if wait && own.Size > 0 {
		sth, err = sec.Client.GetSecondaryTreeHeadWaiting(ctx, own.Size-1)
	} else {
		sth, err = sec.Client.GetSecondaryTreeHead(ctx)
	}
	if err != nil {
		return sigsum.TreeHead{}, err
	}
	if !sth.Verify(sec.Key) {
		return sigsum.TreeHead{}, errors.New("tree head signature does not verify with the secondary's key")
	}
	if sth.Size > own.Size {
		// Under steady load the secondary copies leaves our tree integrated after own was read: check it against
		// the tree as it is now, or a busy secondary would never count.
		fresh, err := p.cfg.Log.TreeHead(ctx)
		if err != nil {
			return sigsum.TreeHead{}, fmt.Errorf("reading the local tree: %w", err)
		}
		own = fresh
	}
	switch {
	case sth.Size < cur.Size:
		return sigsum.TreeHead{}, fmt.Errorf("size %d is below the signed size %d (still catching up?)", sth.Size, cur.Size)
	case sth.Size > own.Size:
		return sigsum.TreeHead{}, fmt.Errorf("size %d is larger than the primary's %d", sth.Size, own.Size)
	}
	err = sigsum.Extends(sth.TreeHead, own, func() (sigsum.ConsistencyProof, error) {
		proof, err := p.cfg.Log.ConsistencyProof(ctx, sth.Size, own.Size)
		if err != nil {
			return proof, fmt.Errorf("consistency proof %d→%d: %w", sth.Size, own.Size, err)
		}
		return proof, nil
	})
	if err != nil {
		return sigsum.TreeHead{}, fmt.Errorf("inconsistent with the primary's tree: %w", err)
	}
	return sth.TreeHead, nil
}

// pendingTTL bounds how long a queued leaf is remembered; a retry after that costs one signature check again.
const pendingTTL = 15 * time.Minute

// maxPending bounds the memory the pending set may use (about 100 bytes an entry).
const maxPending = 1 << 20

// pendingLeaves remembers leaves queued but not yet committed, so a submitter's retries cost no signature check.
type pendingLeaves struct {
	mu sync.RWMutex // add-leaf reads it first: parallel retries of signed leaves must not queue on it
	m  map[sigsum.Hash]time.Time
}

func (pl *pendingLeaves) init() { pl.m = make(map[sigsum.Hash]time.Time) }

func (pl *pendingLeaves) has(h sigsum.Hash) bool {
	pl.mu.RLock()
	defer pl.mu.RUnlock()
	_, ok := pl.m[h]
	return ok
}

func (pl *pendingLeaves) add(h sigsum.Hash) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.m) < maxPending {
		pl.m[h] = time.Now()
	}
}

// remove forgets leaves that are committed.
func (pl *pendingLeaves) remove(hs []sigsum.Hash) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, h := range hs {
		delete(pl.m, h)
	}
}

// prune forgets leaves queued before cutoff.
func (pl *pendingLeaves) prune(cutoff time.Time) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for h, t := range pl.m {
		if t.Before(cutoff) {
			delete(pl.m, h)
		}
	}
}

// Package primary is the primary role of a log: it accepts leaves, rotates the signed tree head once its
// secondaries have proven they hold the leaves, and serves the public API and the internal get-leaves.
package primary

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/tiletree"
	"github.com/sigsumd/sigsumd/internal/trillian"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults for Config fields left zero.
const (
	DefaultInterval = 30 * time.Second
	DefaultTimeout  = 10 * time.Second
	DefaultMaxRange = 512
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

// Config configures a Primary.
type Config struct {
	// Log is the node's LOG tree.
	Log *trillian.Log
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
	// Timeout bounds each backend call and each request to a secondary (default DefaultTimeout).
	Timeout time.Duration
	// MaxRange is the most leaves one get-leaves answer holds (default DefaultMaxRange).
	MaxRange uint64
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger

	// Witnesses gathers cosignatures for each signed head; nil publishes signed heads at once, bare.
	Witnesses *witness.Collector
	// Policy decides when a head has enough cosignatures to be published; nil (or quorum none) publishes the
	// head with whatever cosignatures it got. SetWitnessing changes both later.
	Policy *policy.Policy
	// PublishedFile keeps the published head with its cosignatures across restarts (needed with Witnesses).
	PublishedFile string
	// Limiter rate-limits new leaves; nil means no rate limiting.
	Limiter *ratelimit.Limiter
	// Metrics records what the primary does (nil: nothing).
	Metrics *metrics.Metrics
}

// Primary is a running primary node. Its handlers are safe for concurrent use.
type Primary struct {
	cfg    Config
	logKey sigsum.PublicKey
	log    *slog.Logger

	rotateMu  sync.Mutex   // one rotation at a time
	rotated   atomic.Int64 // unix nanoseconds of the last rotation that completed
	signed    atomic.Pointer[sigsum.SignedTreeHead]
	published atomic.Pointer[publishedHead]
	pending   pendingLeaves
	committed *committedLeaves
	tree      *tiletree.Tree // the committed tree in bounded memory; nil for a log too large to load at start
	text      *leafText      // get-leaves text of leaves in tree
	// witnessing is the policy and witnesses in force; SetWitnessing swaps them (SIGHUP).
	witnessing atomic.Pointer[witnessing]

	leavesWaiters slots        // internal get-leaves held for new leaves
	leavesWait    atomic.Int64 // how long one is held at most (maxLeavesWait; tests change it)

	signerMu      sync.Mutex
	signerChecked time.Time
	signerErr     error
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

// publishedHead is the head get-tree-head serves, with its body encoded once.
type publishedHead struct {
	cth  sigsum.CosignedTreeHead
	body []byte
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
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRange == 0 {
		cfg.MaxRange = DefaultMaxRange
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i := range cfg.Secondaries {
		if cfg.Secondaries[i].Name == "" {
			cfg.Secondaries[i].Name = fmt.Sprintf("secondary %d", i+1)
		}
	}
	p := &Primary{cfg: cfg, logKey: cfg.Signer.Public(), log: cfg.Logger, leavesWaiters: make(slots, maxLeavesWaiters)}
	p.pending.init()
	p.leavesWait.Store(int64(maxLeavesWait))
	p.committed = newCommittedLeaves()
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
		p.log.Info("primary resumes from sth file", "size", sth.Size, "published", p.Published().Size, "local_size", own.Size)
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
	p.log.Info("primary signed its first tree head", "startup", string(mode), "size", first.Size)
	return p, nil
}

// loadCommitted reads the signed tree at a start: all of it, to hold its upper levels and newest tiles and
// index its newest leaves, when it is small enough to read in a reasonable time; else only its newest leaves, for
// answering retries.
func (p *Primary) loadCommitted(ctx context.Context, size uint64) error {
	if size <= maxLoadTree {
		tree, err := tiletree.New(tiletree.Config{Source: p.cfg.Log})
		if err != nil {
			return err
		}
		p.tree, p.text = tree, newLeafText()
		err = p.indexCommitted(ctx, 0, size)
		// Loading a large log read every leaf through gRPC: hand that garbage back to the system now rather
		// than over the next minutes, so the node's footprint is what it holds.
		debug.FreeOSMemory()
		return err
	}
	p.log.Info("log too large to read at start: proofs come from storage", "size", size)
	return p.indexCommitted(ctx, size-min(size, preloadCommitted), size)
}

// checkLocalTree refuses to run on a tree that does not extend the head this log signed last: a wrong storage or
// tree id, or a store that lost data, must not sign anything.
func (p *Primary) checkLocalTree(ctx context.Context, sth *sigsum.SignedTreeHead, own sigsum.TreeHead) error {
	switch {
	case own.Size < sth.Size:
		return fmt.Errorf("local tree has %d leaves but the sth file signs %d: wrong storage or tree id?", own.Size, sth.Size)
	case own.Size == sth.Size && own.RootHash != sth.RootHash, sth.Size == 0 && sth.RootHash != sigsum.RootHash(nil):
		return fmt.Errorf("local tree's root differs from the sth file's at size %d", sth.Size)
	case own.Size == sth.Size || sth.Size == 0:
		return nil
	}
	proof, err := p.cfg.Log.ConsistencyProof(ctx, sth.Size, own.Size)
	if err != nil {
		return fmt.Errorf("checking the local tree against the sth file: %w", err)
	}
	if err := proof.Verify(&sth.TreeHead, &own); err != nil {
		return fmt.Errorf("local tree is not consistent with the sth file: %w", err)
	}
	return nil
}

// publish makes cth the head get-tree-head serves, and keeps it for the next start.
func (p *Primary) publish(cth sigsum.CosignedTreeHead) {
	sigsum.SortCosignatures(cth.Cosignatures)
	p.published.Store(&publishedHead{cth: cth, body: cth.MarshalASCII()})
	p.cfg.Metrics.Published(cth.Size)
	if p.cfg.PublishedFile != "" {
		if err := witness.SavePublished(p.cfg.PublishedFile, cth); err != nil {
			// The head is served all the same; a restart then serves the signed head until witnesses cosign it.
			p.log.Error("keeping the published tree head", "err", err)
		}
	}
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
			p.published.Store(&publishedHead{cth: cth, body: cth.MarshalASCII()})
			p.cfg.Metrics.Published(cth.Size)
			return
		case err == nil:
			p.log.Warn("published tree head file is ahead of the sth file; ignoring it", "published", cth.Size, "signed", sth.Size)
		case !errors.Is(err, fs.ErrNotExist):
			p.log.Warn("published tree head file unusable", "err", err)
		}
	}
	cth := sigsum.CosignedTreeHead{SignedTreeHead: *sth}
	p.published.Store(&publishedHead{cth: cth, body: cth.MarshalASCII()})
	p.cfg.Metrics.Published(cth.Size)
}

// Close saves and releases what the primary holds beyond its tree: the rate-limit counters. Call it after the
// listeners have stopped.
func (p *Primary) Close() error {
	if p.cfg.Limiter == nil {
		return nil
	}
	return p.cfg.Limiter.Close()
}

// Reload re-reads the rate-limit file (SIGHUP). A bad file is refused and the old limits stay.
func (p *Primary) Reload(rateLimitFile string) error {
	if p.cfg.Limiter == nil || rateLimitFile == "" {
		return nil
	}
	return p.cfg.Limiter.Reload(rateLimitFile)
}

// Ready reports why the primary should not take traffic, or nil: its storage answers, its signer signs and
// rotations keep completing (one is overdue after three intervals plus the timeout).
func (p *Primary) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if _, err := p.cfg.Log.TreeHead(ctx); err != nil {
		return fmt.Errorf("storage: %w", err)
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

// Signed returns the latest signed tree head.
func (p *Primary) Signed() sigsum.SignedTreeHead { return *p.signed.Load() }

// Published returns the tree head get-tree-head serves.
func (p *Primary) Published() sigsum.CosignedTreeHead { return p.published.Load().cth }

// Run rotates the tree head every Interval until ctx is done.
func (p *Primary) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	if p.witnessing.Load().collector != nil {
		// After a start the signed head may lack cosignatures: ask the witnesses now, not an interval later.
		if err := p.Rotate(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("rotation failed", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := p.Rotate(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("rotation failed", "err", err)
		}
	}
}

// Rotate signs the largest tree the secondaries have proven they hold, if it is larger than the signed one.
func (p *Primary) Rotate(ctx context.Context) error {
	p.rotateMu.Lock()
	defer p.rotateMu.Unlock()
	start := time.Now()
	cur := p.signed.Load()
	tctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	own, err := p.cfg.Log.TreeHead(tctx)
	cancel()
	if err != nil {
		return fmt.Errorf("reading the local tree: %w", err)
	}
	next := p.replicated(ctx, cur, own, true)
	// Secondaries a little behind (still copying the last leaves) are asked again shortly, for up to a second
	// (half an interval at most): a leaf sequenced just before a rotation then waits a few hundred milliseconds,
	// not a whole interval.
	for deadline := start.Add(min(p.cfg.Interval/2, maxRecheck)); next.Size < own.Size && time.Now().Add(recheckPause).Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(recheckPause):
		}
		if again := p.replicated(ctx, cur, own, false); again.Size > next.Size {
			next = again
		}
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
		p.signed.Store(&sth)
		p.cfg.Metrics.Signed(sth.Size)
		if err := p.indexCommitted(ctx, cur.Size, sth.Size); err != nil {
			// Committed all the same; retries of these leaves fall back to a storage lookup.
			p.log.Warn("indexing committed leaves", "err", err)
		}
		cur = &sth
		p.pending.prune(time.Now().Add(-pendingTTL))
		p.log.Debug("signed tree head", "size", sth.Size, "local_size", own.Size)
	}
	p.witness(ctx, cur)
	p.cfg.Metrics.Rotation(time.Since(start))
	p.rotated.Store(time.Now().UnixNano())
	return nil
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
	// Witnesses get at most one interval: a hung witness must not hold up the next rotation.
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, p.cfg.Interval)
	cs := w.collector.Cosign(wctx, *sth)
	cancel()
	cosigners := make(map[sigsum.Hash]bool, len(cs))
	for _, c := range cs {
		cosigners[c.KeyHash] = true
	}
	reached := w.policy == nil || w.policy.Satisfied(cosigners)
	p.cfg.Metrics.WitnessQuorum(reached, time.Since(start))
	if !reached {
		if ctx.Err() == nil {
			p.log.Warn("tree head lacks the witness quorum; the previous head stays published",
				"size", sth.Size, "cosignatures", len(cs), "published", p.Published().Size)
		}
		return
	}
	p.publish(sigsum.CosignedTreeHead{SignedTreeHead: *sth, Cosignatures: cs})
}

// recheckPause is the wait before asking lagging secondaries again within one rotation; maxRecheck bounds how
// long one rotation keeps asking.
const (
	recheckPause = 100 * time.Millisecond
	maxRecheck   = time.Second
)

// replicated returns the largest tree head, at most own, that enough secondaries have proven they hold. A
// secondary that cannot be reached or fails a check counts as holding nothing; report says whether to log that.
func (p *Primary) replicated(ctx context.Context, cur *sigsum.SignedTreeHead, own sigsum.TreeHead, report bool) sigsum.TreeHead {
	n := len(p.cfg.Secondaries)
	if n == 0 {
		return own
	}
	heads := make([]sigsum.TreeHead, n)
	var wg sync.WaitGroup
	for i := range p.cfg.Secondaries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sec := &p.cfg.Secondaries[i]
			th, err := p.checkSecondary(ctx, sec, cur, own)
			if err != nil {
				if report && ctx.Err() == nil {
					p.log.Warn("secondary does not count toward the next tree head", "secondary", sec.Name, "err", err)
				}
				p.cfg.Metrics.Secondary(sec.Name, 0, own.Size)
				return
			}
			p.cfg.Metrics.Secondary(sec.Name, th.Size, own.Size)
			heads[i] = th
		}()
	}
	wg.Wait()
	k := p.cfg.SecondaryQuorum
	if k == 0 {
		k = n
	}
	// The k-th largest size is held by at least k secondaries; any of them proved the root at that size.
	slices.SortFunc(heads, func(a, b sigsum.TreeHead) int { return compareDesc(a.Size, b.Size) })
	return heads[k-1]
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
// the signed size and ours, and a root consistent with our tree.
func (p *Primary) checkSecondary(ctx context.Context, sec *Secondary, cur *sigsum.SignedTreeHead, own sigsum.TreeHead) (sigsum.TreeHead, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	sth, err := sec.Client.GetSecondaryTreeHead(ctx)
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
	case sth.Size == own.Size:
		if sth.RootHash != own.RootHash {
			return sigsum.TreeHead{}, fmt.Errorf("root at size %d differs from the primary's", sth.Size)
		}
		return sth.TreeHead, nil
	case sth.Size == 0:
		if sth.RootHash != sigsum.RootHash(nil) {
			return sigsum.TreeHead{}, errors.New("root of the empty tree is wrong")
		}
		return sth.TreeHead, nil
	}
	proof, err := p.cfg.Log.ConsistencyProof(ctx, sth.Size, own.Size)
	if err != nil {
		return sigsum.TreeHead{}, fmt.Errorf("consistency proof %d→%d: %w", sth.Size, own.Size, err)
	}
	if err := proof.Verify(&sth.TreeHead, &own); err != nil {
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
	mu sync.Mutex
	m  map[sigsum.Hash]time.Time
}

func (pl *pendingLeaves) init() { pl.m = make(map[sigsum.Hash]time.Time) }

func (pl *pendingLeaves) has(h sigsum.Hash) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
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

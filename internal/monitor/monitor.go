// Package monitor follows a Sigsum log: it verifies every tree head the log publishes (log signature, witness
// quorum, consistency with the last verified head), downloads every leaf and checks that the leaves hash to the
// signed root, and reports the leaves of watched submitter keys. Its state (the last verified head, the next leaf
// to fetch and the Merkle compact range over the leaves before it) is persisted atomically after every step, so a
// restarted monitor resumes where it stopped and never reports a leaf twice.
//
// Alerts are of two kinds. Fatal ones are evidence that the log misbehaved: a bad log signature, a head
// inconsistent with an earlier verified one, leaves that do not hash to the signed root. The monitor stops on them
// and keeps its state at the last verified head. The others are about the monitor not getting a usable head: the
// log cannot be reached, the head lacks the policy's quorum, or the newest head is older than MaxAge. They are
// reported and the monitor keeps going.
//
// A head's age is the age of its newest valid policy-witness cosignature. A head without such cosignatures (quorum
// none) carries no time, so its age is the time since the monitor last verified a head: then only an unreachable
// log turns stale, and a log that serves a frozen old head cannot be told from an idle one.
package monitor

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"filippo.io/torchwood"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/proof"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults for Config fields left zero.
const (
	DefaultBatchSize = 1 << 16
	// maxRangeHashes bounds the compact range read from a state file: one hash per set bit of a 63-bit size.
	maxRangeHashes = 64
	// maxStateFile bounds the state file read.
	maxStateFile = 1 << 20
)

// Config configures a Monitor.
type Config struct {
	// Client talks to the log.
	Client *client.Client
	// LogKey is the log's public key.
	LogKey sigsum.PublicKey
	// Policy gives the witnesses and the quorum every head must meet.
	Policy *policy.Policy
	// Watch are the submitter keys whose leaves are reported.
	Watch []sigsum.PublicKey
	// StateFile persists progress; empty means none (start from an empty log every time).
	StateFile string
	// MaxAge is how old the newest head may be before a stale alert; zero disables the check.
	MaxAge time.Duration
	// BatchSize bounds the leaves fetched in one Once call; zero means DefaultBatchSize. A larger backlog is
	// fetched over several calls, each proven consistent with the signed head.
	BatchSize uint64
	// Tiles makes the monitor read leaves from the log's entry bundles (Sigsum v1.1, C2SP tlog-tiles: whole
	// bundles of 256, which caches keep) instead of get-leaves. They are checked against the signed root the same
	// way.
	Tiles bool
	// OnLeaf is called for every leaf of a watched key, in index order, after the leaves are verified against a
	// signed head and before the state moves past them.
	OnLeaf func(Match)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Match is a leaf by a watched key.
type Match struct {
	Index uint64
	Leaf  sigsum.Leaf
	Key   sigsum.PublicKey
	// SignatureOK reports whether the leaf signature verifies with Key. A log must not accept a leaf whose
	// signature does not, so false means the log misbehaved (or someone else's leaf claims the key hash).
	SignatureOK bool
}

// AlertKind classifies an alert.
type AlertKind string

// Alert kinds.
const (
	AlertSignature    AlertKind = "bad-signature" // the log's signature on a head does not verify
	AlertInconsistent AlertKind = "inconsistent"  // a head contradicts an earlier verified head
	AlertLeaves       AlertKind = "bad-leaves"    // the leaves served do not hash to the signed root
	AlertQuorum       AlertKind = "quorum"        // the head lacks the policy's witness quorum
	AlertStale        AlertKind = "stale"         // the newest verified head is older than MaxAge
	AlertUnreachable  AlertKind = "unreachable"   // the log did not answer usefully
)

// Alert is an error reporting a problem with the log. Fatal alerts are evidence of misbehaviour.
type Alert struct {
	Kind  AlertKind
	Fatal bool
	Err   error
}

func (a *Alert) Error() string { return fmt.Sprintf("alert %s: %v", a.Kind, a.Err) }

// Unwrap returns the underlying error.
func (a *Alert) Unwrap() error { return a.Err }

func fatal(kind AlertKind, format string, args ...any) *Alert {
	return &Alert{Kind: kind, Fatal: true, Err: proof.OneLine(fmt.Errorf(format, args...))}
}

func warn(kind AlertKind, format string, args ...any) *Alert {
	return &Alert{Kind: kind, Err: proof.OneLine(fmt.Errorf(format, args...))}
}

// IsFatal reports whether err is (or wraps) a fatal Alert.
func IsFatal(err error) bool {
	var a *Alert
	return errors.As(err, &a) && a.Fatal
}

// State is what a monitor persists.
type State struct {
	// Head is the last verified tree head (zero before the first).
	Head sigsum.SignedTreeHead
	// Next is the index of the next leaf to fetch; Next <= Head.Size.
	Next uint64
	// Range is the compact range over leaves [0, Next): the root of any tree extending them can be computed from
	// it and the later leaves.
	Range [][]byte
	// Verified is when Head was last fetched and verified.
	Verified time.Time
	// Fresh is the newest verified cosignature time of Head (zero if none).
	Fresh time.Time
}

// Monitor follows one log. It is not safe for concurrent use.
type Monitor struct {
	cfg     Config
	watch   map[sigsum.Hash]sigsum.PublicKey
	state   State
	rf      *compact.RangeFactory
	rng     *compact.Range
	started time.Time
}

// New returns a monitor, resuming from cfg.StateFile if it exists.
func New(cfg Config) (*Monitor, error) {
	if cfg.Client == nil || cfg.Policy == nil {
		return nil, errors.New("monitor needs a client and a policy")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Monitor{cfg: cfg, watch: map[sigsum.Hash]sigsum.PublicKey{},
		rf: &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}, started: cfg.Now()}
	for _, k := range cfg.Watch {
		m.watch[k.KeyHash()] = k
	}
	m.rng = m.rf.NewEmptyRange(0)
	if cfg.StateFile != "" {
		if err := m.load(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// State returns the current state.
func (m *Monitor) State() State {
	s := m.state
	s.Range = append([][]byte(nil), s.Range...)
	return s
}

// stateFile is the JSON form of State.
type stateFile struct {
	LogKeyHash string   `json:"log_key_hash"`
	Size       uint64   `json:"size"`
	RootHash   string   `json:"root_hash"`
	Signature  string   `json:"signature"`
	NextIndex  uint64   `json:"next_index"`
	Range      []string `json:"range"`
	Verified   int64    `json:"verified,omitempty"`
	Fresh      int64    `json:"fresh,omitempty"`
}

func (m *Monitor) load() error {
	b, err := atomicfile.ReadBounded(m.cfg.StateFile, maxStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("monitor state: %w", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("monitor state %s: %s", m.cfg.StateFile, fmt.Sprintf(format, args...))
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return bad("%v", err)
	}
	if f.LogKeyHash != m.cfg.LogKey.KeyHash().String() {
		return bad("it belongs to log %.16s..., not %.16s...", f.LogKeyHash, m.cfg.LogKey.KeyHash())
	}
	var s State
	s.Head.Size = f.Size
	if s.Head.RootHash, err = sigsum.ParseHash(f.RootHash); err != nil {
		return bad("root_hash: %v", err)
	}
	if s.Head.Signature, err = sigsum.ParseSignature(f.Signature); err != nil {
		return bad("signature: %v", err)
	}
	if !s.Head.Verify(m.cfg.LogKey) {
		return bad("its tree head is not signed by the log")
	}
	if f.NextIndex > f.Size || len(f.Range) > maxRangeHashes {
		return bad("next_index %d beyond size %d, or %d range hashes", f.NextIndex, f.Size, len(f.Range))
	}
	for _, h := range f.Range {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sigsum.HashSize {
			return bad("range hash %q is not a hex hash", h)
		}
		s.Range = append(s.Range, b)
	}
	rng, err := m.rf.NewRange(0, f.NextIndex, s.Range)
	if err != nil {
		return bad("range: %v", err)
	}
	if f.NextIndex == f.Size && rootOf(rng) != s.Head.RootHash {
		return bad("its leaves do not hash to its tree head")
	}
	s.Next = f.NextIndex
	if f.Verified != 0 {
		s.Verified = time.Unix(f.Verified, 0)
	}
	if f.Fresh != 0 {
		s.Fresh = time.Unix(f.Fresh, 0)
	}
	m.state, m.rng = s, rng
	return nil
}

func (m *Monitor) save() error {
	if m.cfg.StateFile == "" {
		return nil
	}
	f := stateFile{
		LogKeyHash: m.cfg.LogKey.KeyHash().String(),
		Size:       m.state.Head.Size,
		RootHash:   m.state.Head.RootHash.String(),
		Signature:  m.state.Head.Signature.String(),
		NextIndex:  m.state.Next,
		Range:      []string{},
	}
	for _, h := range m.state.Range {
		f.Range = append(f.Range, hex.EncodeToString(h))
	}
	if !m.state.Verified.IsZero() {
		f.Verified = m.state.Verified.Unix()
	}
	if !m.state.Fresh.IsZero() {
		f.Fresh = m.state.Fresh.Unix()
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("monitor state: %w", err)
	}
	return atomicfile.Write(m.cfg.StateFile, append(b, '\n'), 0o644)
}

// rootOf returns the root of the tree whose leaves r covers from index 0.
func rootOf(r *compact.Range) sigsum.Hash {
	if r.End() == 0 {
		return sigsum.HashBytes(nil)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		// Only a range not starting at 0 fails, and every range here starts at 0.
		panic(fmt.Sprintf("compact range root: %v", err))
	}
	return sigsum.Hash(root)
}

// Once makes one pass: fetch and verify the published head, then fetch and verify up to BatchSize new leaves,
// report the watched ones and persist the progress. It returns an *Alert for problems with the log (IsFatal tells
// evidence of misbehaviour from trouble reaching a usable head) and other errors for local failures.
func (m *Monitor) Once(ctx context.Context) error {
	now := m.cfg.Now()
	cth, err := m.cfg.Client.GetTreeHead(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return m.staleOr(now, warn(AlertUnreachable, "get-tree-head: %w", err))
	}
	if !cth.Verify(m.cfg.LogKey) {
		return fatal(AlertSignature, "tree head of size %d is not signed by the log key", cth.Size)
	}
	valid, err := proof.VerifyCosignatures(m.cfg.LogKey, m.cfg.Policy, &cth)
	if err != nil {
		return m.staleOr(now, warn(AlertQuorum, "tree head of size %d: %w", cth.Size, err))
	}
	if err := m.checkConsistent(ctx, &cth.SignedTreeHead); err != nil {
		return err
	}
	var fresh time.Time
	for _, c := range cth.Cosignatures {
		if t := time.Unix(int64(c.Timestamp), 0); valid[c.KeyHash] && t.After(fresh) && c.Timestamp <= sigsum.MaxInt {
			fresh = t
		}
	}
	m.state.Head, m.state.Verified, m.state.Fresh = cth.SignedTreeHead, now, fresh
	if err := m.save(); err != nil {
		return err
	}
	if err := m.fetchLeaves(ctx); err != nil {
		return err
	}
	if m.cfg.MaxAge > 0 && !fresh.IsZero() && now.Sub(fresh) > m.cfg.MaxAge {
		return warn(AlertStale, "newest cosignature of the tree head of size %d is from %s, older than %s",
			cth.Size, fresh.UTC().Format(time.RFC3339), m.cfg.MaxAge)
	}
	return nil
}

// staleOr returns a stale alert instead of a if the last verified head is older than MaxAge.
func (m *Monitor) staleOr(now time.Time, a *Alert) *Alert {
	if m.cfg.MaxAge <= 0 {
		return a
	}
	last := m.state.Fresh
	if last.IsZero() {
		last = m.state.Verified
	}
	if last.IsZero() {
		last = m.started
	}
	if now.Sub(last) > m.cfg.MaxAge {
		return warn(AlertStale, "no usable tree head for %s (last %s), %v", now.Sub(last).Round(time.Second),
			last.UTC().Format(time.RFC3339), a)
	}
	return a
}

// checkConsistent checks that sth extends the last verified head.
func (m *Monitor) checkConsistent(ctx context.Context, sth *sigsum.SignedTreeHead) error {
	old := &m.state.Head
	switch {
	case old.Size == 0 && old.Signature == (sigsum.Signature{}):
		return nil // first head
	case sth.Size < old.Size:
		return fatal(AlertInconsistent, "tree head of size %d is smaller than the verified size %d", sth.Size, old.Size)
	case sth.Size == old.Size:
		if sth.RootHash != old.RootHash {
			return fatal(AlertInconsistent, "tree head of size %d has root %s, the verified one %s", sth.Size,
				sth.RootHash, old.RootHash)
		}
		return nil
	case old.Size == 0:
		return nil // the empty tree is a prefix of every tree
	}
	p, err := m.cfg.Client.GetConsistencyProof(ctx, old.Size, sth.Size)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return warn(AlertUnreachable, "get-consistency-proof %d→%d: %w", old.Size, sth.Size, err)
	}
	if err := p.Verify(&old.TreeHead, &sth.TreeHead); err != nil {
		return fatal(AlertInconsistent, "tree head of size %d (root %s) is not consistent with the verified head of size %d (root %s): %w",
			sth.Size, sth.RootHash, old.Size, old.RootHash, err)
	}
	return nil
}

// fetchLeaves fetches leaves [Next, min(Head.Size, Next+BatchSize)), proves them part of Head and reports the
// watched ones.
func (m *Monitor) fetchLeaves(ctx context.Context) error {
	head := &m.state.Head
	end := head.Size
	if end-m.state.Next > m.cfg.BatchSize {
		end = m.state.Next + m.cfg.BatchSize
	}
	if end == m.state.Next {
		return nil
	}
	rng := m.rf.NewEmptyRange(0)
	if err := rng.AppendRange(m.rng, nil); err != nil {
		return fmt.Errorf("compact range: %w", err)
	}
	var leaves []sigsum.Leaf
	for i := m.state.Next; i < end; {
		got, err := m.leaves(ctx, i, end, head.Size)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var a *Alert
			if errors.As(err, &a) {
				return a
			}
			return warn(AlertUnreachable, "leaves %d-%d: %w", i, end, err)
		}
		if len(got) == 0 {
			return warn(AlertUnreachable, "get-leaves %d-%d returned no leaves", i, end)
		}
		for j := range got {
			h := got[j].Hash()
			if err := rng.Append(h[:], nil); err != nil {
				return fmt.Errorf("compact range: %w", err)
			}
		}
		leaves = append(leaves, got...)
		i += uint64(len(got))
	}
	root := rootOf(rng)
	if end == head.Size {
		if root != head.RootHash {
			return fatal(AlertLeaves, "leaves 0-%d hash to %s, but the signed root of size %d is %s", end-1, root,
				head.Size, head.RootHash)
		}
	} else {
		p, err := m.cfg.Client.GetConsistencyProof(ctx, end, head.Size)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return warn(AlertUnreachable, "get-consistency-proof %d→%d: %w", end, head.Size, err)
		}
		if err := p.Verify(&sigsum.TreeHead{Size: end, RootHash: root}, &head.TreeHead); err != nil {
			return fatal(AlertLeaves, "leaves 0-%d (root %s) are not a prefix of the signed tree of size %d: %w",
				end-1, root, head.Size, err)
		}
	}
	for j := range leaves {
		k, ok := m.watch[leaves[j].KeyHash]
		if ok && m.cfg.OnLeaf != nil {
			m.cfg.OnLeaf(Match{Index: m.state.Next + uint64(j), Leaf: leaves[j], Key: k, SignatureOK: leaves[j].Verify(k)})
		}
	}
	m.rng, m.state.Next, m.state.Range = rng, end, rng.Hashes()
	return m.save()
}

// leaves returns leaves from start, at most up to end, of the tree of size size: with get-leaves, or from the
// entry bundle that holds start (Config.Tiles).
func (m *Monitor) leaves(ctx context.Context, start, end, size uint64) ([]sigsum.Leaf, error) {
	if !m.cfg.Tiles {
		return m.cfg.Client.GetLeaves(ctx, start, end)
	}
	n := start / torchwood.TileWidth
	w := min(size-n*torchwood.TileWidth, torchwood.TileWidth)
	path := torchwood.TilePath(tlog.Tile{H: torchwood.TileHeight, L: -1, N: int64(n), W: int(w)})
	bundle, err := m.cfg.Client.GetTile(ctx, path)
	if err != nil {
		return nil, err
	}
	var leaves []sigsum.Leaf
	for rest := bundle; len(rest) > 0; {
		var entry []byte
		if entry, rest, err = torchwood.ReadTileEntry(rest); err != nil {
			return nil, fatal(AlertLeaves, "%s: %w", path, err)
		}
		leaf, err := sigsum.ParseLeafBinary(entry)
		if err != nil {
			return nil, fatal(AlertLeaves, "%s: entry %d: %w", path, len(leaves), err)
		}
		leaves = append(leaves, leaf)
	}
	if uint64(len(leaves)) != w {
		return nil, fatal(AlertLeaves, "%s: %d entries, want %d", path, len(leaves), w)
	}
	first := start - n*torchwood.TileWidth
	return leaves[first:min(uint64(len(leaves)), end-n*torchwood.TileWidth)], nil
}

// Run calls Once every interval until ctx ends or a fatal alert, which it returns. Other alerts go to onAlert and
// the monitor keeps going; local errors (the state file cannot be written) end Run.
func (m *Monitor) Run(ctx context.Context, interval time.Duration, onAlert func(*Alert)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := m.Once(ctx)
		var a *Alert
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &a) && !a.Fatal:
			if onAlert != nil {
				onAlert(a)
			}
		case err != nil:
			return err
		}
		// Catch up on a backlog without waiting; otherwise poll at the interval.
		if err == nil && m.state.Next < m.state.Head.Size {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

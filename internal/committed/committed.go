// Package committed owns a log's signed tree: its size, the hashes and tiles of it held in memory, the index of
// its recent leaves by hash, the get-leaves text of the leaves held, and the choice between memory and storage for
// every read of it (inclusion, consistency, leaves, contains). The roles ask; this package decides, once, where the
// answer comes from.
//
// Open reads what a start holds: all of a tree up to Limits.MaxHold leaves (its upper hashes, its newest tiles and
// the index of its newest leaves), or only the newest leaves of a larger one, into the index; such a tree is
// served from storage. Advance reads the leaves a new signed size adds.
package committed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/timeout"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Storage is what the signed tree reads from storage: leaves and leaf hashes by range, a leaf's index by its hash
// (one indexed lookup), and, for a tree too large to hold, the two proofs. Errors wrap engine.ErrNotFound for a
// leaf storage does not hold, and LeafIndex's wrap engine.ErrUnsupported for a storage that cannot find a leaf
// without its proof (an external Trillian). engine.Log is one.
type Storage interface {
	// GetLeaves returns up to count leaves from index start; fewer if the tree ends first.
	GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error)
	// LeafHashes returns up to count leaf hashes from index start; fewer if the tree ends first.
	LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error)
	// LeafIndex returns the index of the first leaf with hash leafHash in the integrated tree.
	LeafIndex(ctx context.Context, leafHash sigsum.Hash) (uint64, error)
	// InclusionProof returns the proof of the leaf with hash leafHash in the tree of size size.
	InclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error)
	// ConsistencyProof returns the proof that the tree of size newSize extends the one of size oldSize.
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
}

// Defaults for Limits and Config fields left zero.
const (
	// DefaultMaxHold bounds the tree a start reads whole to hold its upper levels (32 bytes per 16 leaves) and
	// newest tiles: reading 2^25 leaves takes about a minute. A larger tree serves proofs and leaves from storage.
	DefaultMaxHold = 1 << 25
	// batch is how many leaves one read of Open or Advance asks for.
	batch = 4096
)

// Limits bounds what the signed tree holds in memory; the zero value holds the defaults.
type Limits struct {
	// MaxHold is the largest tree held in memory: a tree larger at Open is served from storage, except for the
	// index of its newest leaves. 0 means DefaultMaxHold; a negative value holds no tree.
	MaxHold int64
	// MaxTiles bounds the completed tiles of 256 leaves held (0: DefaultMaxTiles; must not be negative).
	MaxTiles int
	// MaxIndex bounds the leaves indexed by hash; Open of a tree too large to hold indexes that many of its newest
	// leaves. 0 means DefaultMaxIndex; a negative value indexes none.
	MaxIndex int
}

// Config configures a Tree.
type Config struct {
	// Source is the storage of the tree; required.
	Source Storage
	Limits
	// Timeout bounds each batch Open and Advance read, and the storage calls of each read (timeout.Default when 0),
	// besides the caller's context: a read answered from memory needs no deadline, so that context may have none.
	Timeout time.Duration
	// OnAdvance, if set, is called with the hashes of the leaves each Advance reads, in order (the primary forgets
	// them from its pending leaves).
	OnAdvance func(hs []sigsum.Hash)
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// ErrNotFound is wrapped by the errors for a leaf that is not in the tree of the size asked.
var ErrNotFound = errors.New("leaf not in the tree")

// Tree is a log's signed tree. Open and Advance write it; its reads are safe for concurrent use with them and with
// each other.
type Tree struct {
	src       Storage
	timeout   time.Duration
	onAdvance func([]sigsum.Hash)

	signed atomic.Uint64 // the signed size: Open's, then the last Advance's
	// settled is the signed size whose new leaves OnAdvance has all been given: Open's, then each Advance's once
	// it has read them (Settling).
	settled atomic.Uint64
	mem     *memTree    // the tree in bounded memory; nil for a tree too large to hold at Open
	text    *leafText   // get-leaves text of leaves in mem; nil with mem
	filter  *hashFilter // the hashes of the leaves in mem, before mem has them; nil with mem
	index   *leafIndex

	advanceMu sync.Mutex // one Advance at a time
}

// Open reads the signed tree of size size from cfg.Source: all of it, to hold its upper levels and newest tiles
// and index its newest leaves, when it is at most MaxHold leaves; else only its newest MaxIndex leaves, into the
// index.
func Open(ctx context.Context, cfg Config, size uint64) (*Tree, error) {
	if cfg.Source == nil {
		return nil, errors.New("committed: Source is required")
	}
	if cfg.MaxTiles < 0 {
		return nil, fmt.Errorf("committed: MaxTiles %d: want >= 0", cfg.MaxTiles)
	}
	logger := cmp.Or(cfg.Logger, slog.Default())
	maxIndex := cmp.Or(cfg.MaxIndex, DefaultMaxIndex)
	if maxIndex < 0 {
		maxIndex = 0
	}
	t := &Tree{
		src:       cfg.Source,
		timeout:   cmp.Or(cfg.Timeout, timeout.Default),
		onAdvance: cfg.OnAdvance,
		index:     newLeafIndex(maxIndex),
	}
	if maxHold := cmp.Or(cfg.MaxHold, DefaultMaxHold); maxHold >= 0 && size <= uint64(maxHold) {
		t.mem, t.text, t.filter = newMemTree(cfg.Source, cmp.Or(cfg.MaxTiles, DefaultMaxTiles)), newLeafText(), newHashFilter(size)
		t.signed.Store(size)
		t.settled.Store(size)
		err := t.read(ctx, 0, size, false)
		// Loading a large log read every leaf: hand that garbage back to the system now rather than over the next
		// minutes, so the node's footprint is what it holds.
		debug.FreeOSMemory()
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	if size > 0 {
		logger.Info("log too large to read at start: proofs come from storage", "size", size)
	}
	t.signed.Store(size)
	t.settled.Store(size)
	if err := t.read(ctx, size-min(size, uint64(maxIndex)), size, false); err != nil {
		return nil, err
	}
	return t, nil
}

// Size returns the signed size: Open's, then the last Advance's.
func (t *Tree) Size() uint64 { return t.signed.Load() }

// Advance makes size the signed size and reads the leaves it adds: into the tree in memory (which starts where it
// ends, after an Advance that failed), into the index and to OnAdvance. Reads of sizes the memory does not hold yet
// are served from storage meanwhile. A failed Advance leaves the tree signed all the same; the next one reads what
// it missed.
func (t *Tree) Advance(ctx context.Context, size uint64) error {
	t.advanceMu.Lock()
	defer t.advanceMu.Unlock()
	to := max(size, t.signed.Load())
	if to <= t.settled.Load() && (t.mem == nil || t.mem.sizeHeld() >= to) {
		return nil
	}
	t.signed.Store(to)
	if err := t.read(ctx, t.settled.Load(), to, true); err != nil {
		return err
	}
	t.settled.Store(to)
	return nil
}

// Settling reports whether the last signed size's new leaves are still being read (or their read failed), so that
// OnAdvance has not been given them all yet: a caller that keeps its own set of leaves waiting to be signed, which
// OnAdvance empties, must then ask Contains.
func (t *Tree) Settling() bool { return t.settled.Load() < t.signed.Load() }

// read reads the leaves [from, to) of the tree, adds them to the tree in memory (from where it ends, whatever
// from says) and to the index, and hands their hashes to Config.OnAdvance if advancing.
func (t *Tree) read(ctx context.Context, from, to uint64, advancing bool) error {
	if t.mem != nil {
		from = t.mem.sizeHeld()
	}
	for from < to {
		rctx, cancel := context.WithTimeout(ctx, t.timeout)
		leaves, err := t.src.GetLeaves(rctx, from, min(to-from, batch))
		cancel()
		if err != nil {
			return fmt.Errorf("committed: reading signed leaves from %d: %w", from, err)
		}
		if len(leaves) == 0 {
			return fmt.Errorf("committed: reading signed leaves from %d: storage has none below %d", from, to)
		}
		hs := make([]sigsum.Hash, len(leaves))
		for i := range leaves {
			hs[i] = leaves[i].Hash()
		}
		if t.mem != nil {
			t.filter.add(hs) // first: a leaf the tree in memory holds is in the filter
			t.mem.add(leaves)
		}
		t.index.add(from, hs)
		if advancing && t.onAdvance != nil {
			t.onAdvance(hs)
		}
		from += uint64(len(leaves))
	}
	return nil
}

// bound bounds the storage calls of a read by Config.Timeout, besides ctx.
func (t *Tree) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.timeout)
}

// held reports whether the tree in memory holds the tree of size size.
func (t *Tree) held(size uint64) bool { return t.mem != nil && t.mem.sizeHeld() >= size }

// notFound is the error for a leaf not in the tree of size size.
func notFound(hash sigsum.Hash, size uint64) error {
	return fmt.Errorf("leaf %s is not in the tree of size %d: %w", hash, size, ErrNotFound)
}

// remember indexes a leaf found in storage, if it is signed: the next read of it needs no storage.
func (t *Tree) remember(index uint64, hash sigsum.Hash) {
	if index < t.signed.Load() {
		t.index.add(index, []sigsum.Hash{hash})
	}
}

// Inclusion returns the proof of the leaf with hash leafHash in the tree of size size (2 <= size <= the signed
// size, which the caller checks). An error wrapping ErrNotFound means the leaf is not among its first size leaves.
//
// A tree held in memory proves it; storage finds the index of a leaf the index does not hold with one lookup.
// Trillian's proof by hash reads a proof's worth of subtrees, which made proofs of old leaves a tenth as fast at
// 10^6 leaves: it is left for a tree not held, or a storage that cannot find a leaf's index alone.
func (t *Tree) Inclusion(ctx context.Context, leafHash sigsum.Hash, size uint64) (sigsum.InclusionProof, error) {
	ctx, cancel := t.bound(ctx)
	defer cancel()
	held := t.held(size)
	index, ok := t.index.lookup(leafHash)
	if !ok && held && !t.filter.mayHave(leafHash) {
		return sigsum.InclusionProof{}, notFound(leafHash, size)
	}
	if !ok && held {
		i, err := t.src.LeafIndex(ctx, leafHash)
		switch {
		case err == nil:
			index, ok = i, true
			t.remember(i, leafHash)
		case errors.Is(err, engine.ErrNotFound):
			return sigsum.InclusionProof{}, notFound(leafHash, size)
		case !errors.Is(err, engine.ErrUnsupported):
			return sigsum.InclusionProof{}, err
		}
	}
	if ok && held {
		if index >= size {
			return sigsum.InclusionProof{}, notFound(leafHash, size)
		}
		return t.mem.inclusion(ctx, index, size)
	}
	proof, err := t.src.InclusionProof(ctx, size, leafHash)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return sigsum.InclusionProof{}, notFound(leafHash, size)
	case err != nil:
		return sigsum.InclusionProof{}, err
	}
	// Remembered, so that the next proof of this leaf comes from memory. The index is its first, as in the index:
	// storage finds the first leaf with a hash.
	t.remember(proof.LeafIndex, leafHash)
	return proof, nil
}

// InclusionByIndex returns the proof of the leaf at index in the tree of size size (index < size <= the signed
// size): from memory if it holds the tree, else from storage (the leaf, then its proof by hash).
func (t *Tree) InclusionByIndex(ctx context.Context, index, size uint64) (sigsum.InclusionProof, error) {
	if index >= size {
		return sigsum.InclusionProof{}, fmt.Errorf("committed: leaf %d is not in a tree of size %d: %w", index, size, ErrNotFound)
	}
	ctx, cancel := t.bound(ctx)
	defer cancel()
	if t.held(size) {
		return t.mem.inclusion(ctx, index, size)
	}
	leaves, err := t.src.GetLeaves(ctx, index, 1)
	if err != nil {
		return sigsum.InclusionProof{}, err
	}
	if len(leaves) != 1 {
		return sigsum.InclusionProof{}, fmt.Errorf("committed: reading leaf %d: storage returned %d leaves", index, len(leaves))
	}
	proof, err := t.src.InclusionProof(ctx, size, leaves[0].Hash())
	if err != nil {
		return sigsum.InclusionProof{}, err
	}
	if proof.LeafIndex != index {
		// Only a duplicate leaf could do this; Sigsum leaves are unique.
		return sigsum.InclusionProof{}, fmt.Errorf("committed: leaf %d is also at %d", index, proof.LeafIndex)
	}
	return proof, nil
}

// Consistency returns the proof that the tree of size newSize extends the one of size oldSize (0 < oldSize <
// newSize <= the signed size).
func (t *Tree) Consistency(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	ctx, cancel := t.bound(ctx)
	defer cancel()
	if t.held(newSize) {
		return t.mem.consistency(ctx, oldSize, newSize)
	}
	return t.src.ConsistencyProof(ctx, oldSize, newSize)
}

// Leaves returns the get-leaves text (sigsum.MarshalLeavesASCII) of leaves [start, end): from the text cached or
// the leaves held in memory, else from storage. Storage also serves leaves past the signed size (the primary's
// internal get-leaves gives its secondaries leaves not signed yet); fewer leaves come back if the tree ends first.
func (t *Tree) Leaves(ctx context.Context, start, end uint64) ([]byte, error) {
	if t.held(end) {
		if body, ok := t.text.body(t.mem, start, end); ok {
			return body, nil
		}
	}
	ctx, cancel := t.bound(ctx)
	defer cancel()
	leaves, err := t.src.GetLeaves(ctx, start, end-start)
	if err != nil {
		return nil, err
	}
	return sigsum.MarshalLeavesASCII(leaves), nil
}

// Contains reports whether the leaf with hash leafHash is in the signed tree, and its index: from the index in
// memory, else with at most one indexed lookup in storage (a storage that has none proves the leaf by hash). For a
// tree held in memory, a filter of its leaf hashes answers for almost every leaf it does not have, without storage.
func (t *Tree) Contains(ctx context.Context, leafHash sigsum.Hash) (uint64, bool, error) {
	if i, ok := t.index.lookup(leafHash); ok {
		return i, true, nil
	}
	signed := t.signed.Load()
	if signed == 0 || t.held(signed) && !t.filter.mayHave(leafHash) {
		return 0, false, nil // a new leaf, told apart without storage
	}
	ctx, cancel := t.bound(ctx)
	defer cancel()
	i, err := t.src.LeafIndex(ctx, leafHash)
	switch {
	case err == nil:
		if i >= signed {
			return 0, false, nil // integrated, not signed yet
		}
		t.remember(i, leafHash)
		return i, true, nil
	case errors.Is(err, engine.ErrNotFound):
		return 0, false, nil
	case !errors.Is(err, engine.ErrUnsupported):
		return 0, false, err
	}
	proof, err := t.src.InclusionProof(ctx, signed, leafHash)
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	t.remember(proof.LeafIndex, leafHash)
	return proof.LeafIndex, true, nil
}

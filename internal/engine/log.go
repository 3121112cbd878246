package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/trillian"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Errors the roles tell apart; each wraps the engine's own error.
var (
	// ErrNotFound: the leaf is not in the tree of the asked size.
	ErrNotFound = errors.New("not found")
	// ErrOutOfRange: the asked indices or sizes are beyond the tree.
	ErrOutOfRange = errors.New("out of range")
	// ErrConflict: AddSequencedLeaves found a different leaf at an index, or the same leaf at another index.
	ErrConflict = errors.New("conflicting leaf")
)

// Log is one tree of the engine, seen in Sigsum terms. Implementations are safe for concurrent use: embeddedLog,
// which goes straight to the storage of an engine running in this process where that saves work, and remoteLog,
// which asks Trillian's gRPC API.
type Log interface {
	// QueueLeaf adds a leaf to a LOG tree. It reports whether the leaf was already there (queued or integrated).
	QueueLeaf(ctx context.Context, leaf *sigsum.Leaf) (bool, error)
	// AddSequencedLeaves stores leaves at indices start, start+1, ... of a PREORDERED_LOG tree. The very leaf
	// already stored at its index (a retry after a crash) is fine; a different leaf at an index, or the same leaf at
	// another index, is ErrConflict. The leaves become part of the tree when the sequencer integrates them.
	AddSequencedLeaves(ctx context.Context, start uint64, leaves []sigsum.Leaf) error
	// WaitGrowth waits up to maxWait until the integrated tree holds more than size leaves and returns the latest
	// tree head read: larger than size, or not if the time ran out. An error is the engine's, or ctx's.
	WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error)
	// TreeHead returns the size and root of the tree as last integrated.
	TreeHead(ctx context.Context) (sigsum.TreeHead, error)
	// GetLeaves returns up to count leaves from index start of the integrated tree; fewer if the tree ends first.
	GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error)
	// LeafHashes returns up to count Merkle leaf hashes of the integrated tree from index start; fewer if the tree
	// ends first.
	LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error)
	// InclusionProof returns the proof for the leaf with hash leafHash in the tree of size size. ErrNotFound means
	// the leaf is not among the first size leaves.
	InclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error)
	// LeafIndex returns the index of the first integrated leaf with hash leafHash: ErrNotFound when there is none,
	// ErrUnsupported from an external Trillian, whose API finds a leaf by hash only together with its inclusion
	// proof.
	LeafIndex(ctx context.Context, leafHash sigsum.Hash) (uint64, error)
	// ConsistencyProof returns the proof that the tree of size newSize extends the tree of size oldSize.
	ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
	// MaxStoreBatch returns the most leaves one AddSequencedLeaves call should carry.
	MaxStoreBatch() int
	// TreeID returns the Trillian tree id.
	TreeID() int64
}

// Most leaves one AddSequencedLeaves should carry. By default, about 2.5 MB of Sigsum leaves: within the 4 MB a
// Trillian server accepts through gRPC by default, and a few seconds of work for a MySQL or PostgreSQL store, well
// within a request's timeout. The embedded SQLite store takes them straight (no gRPC) and stores 64k leaves in well
// under a second: larger transactions write each page of its hash indexes once for more leaves.
const (
	maxStoreDefault = 12 << 10
	maxStoreSQLite  = 64 << 10
)

// wrap maps gRPC codes the roles care about onto our errors.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if storageFull(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrStorageFull, err)
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case codes.OutOfRange:
		return fmt.Errorf("%s: %w: %w", what, ErrOutOfRange, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// logLeaf is the Trillian leaf of a Sigsum leaf: LeafValue is the 128-byte binary leaf, and LeafIdentityHash, by
// which Trillian deduplicates, is the RFC 6962 leaf hash H(0x00 ‖ leaf). That is what Trillian fills in itself for
// a leaf without one, and so what the reference log server (sigsum log-go, which sets only LeafValue) has stored:
// sigsumd on a reference server's database recognises the leaves that server queued.
func logLeaf(leaf *sigsum.Leaf) *trillian.LogLeaf {
	h := leaf.Hash()
	return &trillian.LogLeaf{LeafValue: leaf.MarshalBinary(), LeafIdentityHash: h[:]}
}

// sequencedLeaves is the Trillian leaves of Sigsum leaves to store at indices start, start+1, ...
func sequencedLeaves(start uint64, leaves []sigsum.Leaf) []*trillian.LogLeaf {
	out := make([]*trillian.LogLeaf, len(leaves))
	for i := range leaves {
		out[i] = logLeaf(&leaves[i])
		out[i].LeafIndex = int64(start) + int64(i)
	}
	return out
}

// queued reads the storage's answer to queueing one leaf: whether it was there already.
func queued(ret []*trillian.QueuedLogLeaf) (bool, error) {
	if len(ret) != 1 {
		return false, fmt.Errorf("queueing leaf: %d results for 1 leaf", len(ret))
	}
	switch c := codes.Code(ret[0].GetStatus().GetCode()); c {
	case codes.OK:
		return false, nil
	case codes.AlreadyExists:
		return true, nil
	default:
		return false, fmt.Errorf("queueing leaf: status %s: %s", c, ret[0].GetStatus().GetMessage())
	}
}

// storedReader reads the leaves stored in a PREORDERED_LOG tree from the index of first on, integrated or not, as
// far as they are contiguous (at most count): none when nothing is stored at first's index. An error wrapping
// errUnsettled means it cannot tell yet (a remote engine sees only integrated leaves).
type storedReader func(ctx context.Context, first *trillian.LogLeaf, count int64) ([]*trillian.LogLeaf, error)

// errUnsettled is wrapped by the error for a refused leaf that may be a harmless re-store but cannot be read yet.
var errUnsettled = errors.New("cannot read back the refused leaf yet")

// settle reads the storage's per-leaf answers to AddSequencedLeaves. A leaf refused as a duplicate (its identity
// hash, or its index, is taken) is fine only if what is stored at its index is that very leaf, which read tells:
// the storages' answers do not say which of the two was taken, nor where.
func settle(ctx context.Context, leaves []*trillian.LogLeaf, results []*trillian.QueuedLogLeaf, read storedReader) error {
	if len(results) != len(leaves) {
		return fmt.Errorf("adding sequenced leaves: %d results for %d leaves", len(results), len(leaves))
	}
	var refused []*trillian.LogLeaf
	for i, r := range results {
		switch c := codes.Code(r.GetStatus().GetCode()); c {
		case codes.OK:
		case codes.FailedPrecondition, codes.AlreadyExists:
			refused = append(refused, leaves[i])
		default:
			return fmt.Errorf("leaf %d: %w: status %s: %s", leaves[i].LeafIndex, ErrConflict, c, r.GetStatus().GetMessage())
		}
	}
	for len(refused) > 0 {
		first := refused[0]
		stored, err := read(ctx, first, refused[len(refused)-1].LeafIndex-first.LeafIndex+1)
		if err != nil {
			return fmt.Errorf("leaf %d: reading back what is stored at its index: %w", first.LeafIndex, err)
		}
		if len(stored) == 0 || stored[0].LeafIndex != first.LeafIndex {
			return fmt.Errorf("leaf %d: %w: no leaf is stored at its index, the leaf is at another", first.LeafIndex, ErrConflict)
		}
		end := first.LeafIndex + int64(len(stored))
		for len(refused) > 0 && refused[0].LeafIndex < end {
			ll, got := refused[0], stored[refused[0].LeafIndex-first.LeafIndex]
			if got.LeafIndex != ll.LeafIndex {
				return fmt.Errorf("leaf %d: reading back what is stored at its index: got leaf %d", ll.LeafIndex, got.LeafIndex)
			}
			if !bytes.Equal(got.LeafIdentityHash, ll.LeafIdentityHash) || !bytes.Equal(got.LeafValue, ll.LeafValue) {
				return fmt.Errorf("leaf %d: %w: another leaf is stored at its index", ll.LeafIndex, ErrConflict)
			}
			refused = refused[1:]
		}
	}
	return nil
}

// waitGrowth is WaitGrowth for a tree whose head is read by head and whose possible growth next announces.
func waitGrowth(ctx context.Context, size uint64, maxWait time.Duration, next func() <-chan struct{},
	head func(context.Context) (sigsum.TreeHead, error)) (sigsum.TreeHead, error) {
	timeout := time.NewTimer(maxWait)
	defer timeout.Stop()
	for {
		changed := next() // taken before the read: a commit after the read closes it
		th, err := head(ctx)
		if err != nil || th.Size > size {
			return th, err
		}
		select {
		case <-ctx.Done():
			return th, ctx.Err()
		case <-timeout.C:
			return th, nil
		case <-changed:
		}
	}
}

// toLeaves decodes leaves read from index start.
func toLeaves(start uint64, got []*trillian.LogLeaf) ([]sigsum.Leaf, error) {
	values := make([][]byte, len(got))
	for i, ll := range got {
		if ll.LeafIndex != int64(start)+int64(i) {
			return nil, fmt.Errorf("getting leaves: leaf %d has index %d", start+uint64(i), ll.LeafIndex)
		}
		values[i] = ll.LeafValue
	}
	return parseLeaves(start, values)
}

// parseLeaves decodes the stored values of the leaves from index start; none is ErrOutOfRange.
func parseLeaves(start uint64, values [][]byte) ([]sigsum.Leaf, error) {
	if len(values) == 0 {
		return nil, fmt.Errorf("getting leaves from %d: %w", start, ErrOutOfRange)
	}
	leaves := make([]sigsum.Leaf, len(values))
	for i, v := range values {
		var err error
		if leaves[i], err = sigsum.ParseLeafBinary(v); err != nil {
			return nil, fmt.Errorf("stored leaf %d: %w", start+uint64(i), err)
		}
	}
	return leaves, nil
}

func hashes(bs [][]byte) ([]sigsum.Hash, error) {
	out := make([]sigsum.Hash, len(bs))
	for i, b := range bs {
		if len(b) != sigsum.HashSize {
			return nil, fmt.Errorf("hash %d has %d bytes", i, len(b))
		}
		out[i] = sigsum.Hash(b)
	}
	return out, nil
}

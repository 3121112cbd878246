package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// remoteLog is a tree reached through Trillian's gRPC API only: that of an external Trillian, and operator tools'
// view of any tree (Engine.OpenTreeByID).
type remoteLog struct {
	client trillian.TrillianLogClient
	id     int64
	// growth announces when the tree may have grown: polling for an external Trillian, which cannot tell.
	growth growthSignal
	// maxStore is MaxStoreBatch.
	maxStore int
	// settleWait bounds how long AddSequencedLeaves waits for a refused leaf to be integrated (defaultSettleWait).
	settleWait time.Duration
}

var _ Log = (*remoteLog)(nil)

// growthSignal returns a channel closed when a tree may have grown.
type growthSignal interface {
	next() <-chan struct{}
}

// polling is the growth signal of an engine that cannot tell: a tick every interval.
type polling struct{ interval time.Duration }

func (p polling) next() <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(p.interval, func() { close(ch) })
	return ch
}

// pollInterval is how often an external engine's tree is read by a waiter.
const pollInterval = 20 * time.Millisecond

// MaxStoreBatch implements Log.
func (l *remoteLog) MaxStoreBatch() int { return l.maxStore }

// TreeID implements Log.
func (l *remoteLog) TreeID() int64 { return l.id }

// QueueLeaf implements Log.
func (l *remoteLog) QueueLeaf(ctx context.Context, leaf *sigsum.Leaf) (bool, error) {
	rsp, err := l.client.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: l.id, Leaf: logLeaf(leaf)})
	if err != nil {
		return false, wrap("queueing leaf", err)
	}
	return queued([]*trillian.QueuedLogLeaf{rsp.GetQueuedLeaf()})
}

// AddSequencedLeaves implements Log. A refused leaf is read back through the API, which sees integrated leaves
// only: one stored by an earlier attempt but not integrated yet is waited for (the engine's signer integrates
// stored leaves) up to l.settleWait; after that the call fails, as neither fine nor ErrConflict.
func (l *remoteLog) AddSequencedLeaves(ctx context.Context, start uint64, leaves []sigsum.Leaf) error {
	if len(leaves) == 0 {
		return nil
	}
	req := &trillian.AddSequencedLeavesRequest{LogId: l.id, Leaves: sequencedLeaves(start, leaves)}
	rsp, err := l.client.AddSequencedLeaves(ctx, req)
	if err != nil {
		return wrap("adding sequenced leaves", err)
	}
	return settle(ctx, req.Leaves, rsp.Results, l.readStored)
}

// defaultSettleWait is how long a remote AddSequencedLeaves waits for a refused leaf to be integrated.
const defaultSettleWait = 10 * time.Second

// readStored is the storedReader of a remote tree. Once first's index is integrated, it reads the leaves from
// there; once first is integrated at another index, there is nothing to read (first's own index is not integrated,
// so it holds no leaf of the tree as far as the API can tell, and first is not there).
func (l *remoteLog) readStored(ctx context.Context, first *trillian.LogLeaf, count int64) ([]*trillian.LogLeaf, error) {
	timeout := time.NewTimer(l.settleWait)
	defer timeout.Stop()
	for {
		changed := l.growth.next()
		rsp, err := l.client.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: l.id, StartIndex: first.LeafIndex, Count: count})
		if err != nil {
			return nil, wrap("getting leaves", err)
		}
		if len(rsp.Leaves) > 0 {
			return rsp.Leaves, nil
		}
		var root types.LogRootV1
		if err := root.UnmarshalBinary(rsp.GetSignedLogRoot().GetLogRoot()); err != nil {
			return nil, fmt.Errorf("decoding log root: %w", err)
		}
		if root.TreeSize > 0 {
			_, err := l.InclusionProof(ctx, root.TreeSize, sigsum.Hash(first.LeafIdentityHash))
			if err == nil {
				return nil, nil
			}
			if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", errUnsettled, ctx.Err())
		case <-timeout.C:
			return nil, fmt.Errorf("%w: neither it nor its index is integrated after %v", errUnsettled, l.settleWait)
		case <-changed:
		}
	}
}

// WaitGrowth implements Log.
func (l *remoteLog) WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error) {
	return waitGrowth(ctx, size, maxWait, l.growth.next, l.TreeHead)
}

// TreeHead implements Log.
func (l *remoteLog) TreeHead(ctx context.Context) (sigsum.TreeHead, error) {
	rsp, err := l.client.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: l.id})
	if err != nil {
		return sigsum.TreeHead{}, wrap("getting tree head", err)
	}
	var root types.LogRootV1
	if err := root.UnmarshalBinary(rsp.GetSignedLogRoot().GetLogRoot()); err != nil {
		return sigsum.TreeHead{}, fmt.Errorf("decoding log root: %w", err)
	}
	if len(root.RootHash) != sigsum.HashSize {
		return sigsum.TreeHead{}, fmt.Errorf("log root hash has %d bytes", len(root.RootHash))
	}
	return sigsum.TreeHead{Size: root.TreeSize, RootHash: sigsum.Hash(root.RootHash)}, nil
}

// GetLeaves implements Log.
func (l *remoteLog) GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error) {
	rsp, err := l.client.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: l.id, StartIndex: int64(start), Count: int64(count)})
	if err != nil {
		return nil, wrap("getting leaves", err)
	}
	return toLeaves(start, rsp.Leaves)
}

// LeafHashes implements Log. Trillian's API has no call for leaf hashes alone: the leaves are read and hashed.
func (l *remoteLog) LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error) {
	leaves, err := l.GetLeaves(ctx, start, count)
	if err != nil {
		return nil, err
	}
	hs := make([]sigsum.Hash, len(leaves))
	for i := range leaves {
		hs[i] = leaves[i].Hash()
	}
	return hs, nil
}

// InclusionProof implements Log.
func (l *remoteLog) InclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error) {
	rsp, err := l.client.GetInclusionProofByHash(ctx, &trillian.GetInclusionProofByHashRequest{
		LogId: l.id, LeafHash: leafHash[:], TreeSize: int64(size), OrderBySequence: true})
	if err != nil {
		return sigsum.InclusionProof{}, wrap("getting inclusion proof", err)
	}
	// Trillian answers with every index the hash has; a Sigsum leaf hash appears once.
	for _, p := range rsp.Proof {
		if p.LeafIndex < 0 || uint64(p.LeafIndex) >= size {
			continue
		}
		path, err := hashes(p.Hashes)
		if err != nil {
			return sigsum.InclusionProof{}, err
		}
		return sigsum.InclusionProof{LeafIndex: uint64(p.LeafIndex), Path: path}, nil
	}
	return sigsum.InclusionProof{}, fmt.Errorf("getting inclusion proof: %w", ErrNotFound)
}

// LeafIndex implements Log: ErrUnsupported, as Trillian's API finds a leaf by hash only with its inclusion proof.
func (l *remoteLog) LeafIndex(context.Context, sigsum.Hash) (uint64, error) { return 0, ErrUnsupported }

// ConsistencyProof implements Log.
func (l *remoteLog) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	rsp, err := l.client.GetConsistencyProof(ctx, &trillian.GetConsistencyProofRequest{
		LogId: l.id, FirstTreeSize: int64(oldSize), SecondTreeSize: int64(newSize)})
	if err != nil {
		return sigsum.ConsistencyProof{}, wrap("getting consistency proof", err)
	}
	if rsp.Proof == nil {
		return sigsum.ConsistencyProof{}, fmt.Errorf("getting consistency proof %d→%d: %w", oldSize, newSize, ErrOutOfRange)
	}
	path, err := hashes(rsp.Proof.Hashes)
	if err != nil {
		return sigsum.ConsistencyProof{}, err
	}
	return sigsum.ConsistencyProof{Path: path}, nil
}

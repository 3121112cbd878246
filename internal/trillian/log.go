package trillian

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/types"
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

// Log is one tree of the engine, seen in Sigsum terms. It is safe for concurrent use.
type Log struct {
	client  tpb.TrillianLogClient
	id      int64
	direct  *directQueue // embedded engine, LOG tree: queue without gRPC
	store   *directQueue // embedded engine, PREORDERED_LOG tree: store without gRPC
	changes *changes     // embedded engine: commit announcements
	// maxStore is MaxStoreBatch.
	maxStore int
}

func (e *Engine) log(id int64) *Log {
	return &Log{client: e.Log, id: id, changes: e.changes, maxStore: cmp.Or(e.storeBatch, maxStoreDefault)}
}

// logFor is log with the fast paths into the storage when the engine is embedded: queueing for a LOG tree,
// storing preordered leaves for a PREORDERED_LOG tree.
func (e *Engine) logFor(tree *tpb.Tree) *Log {
	l := e.log(tree.TreeId)
	if e.storage != nil {
		switch tree.TreeType {
		case tpb.TreeType_LOG:
			l.direct = &directQueue{storage: e.storage, tree: tree}
		case tpb.TreeType_PREORDERED_LOG:
			l.store = &directQueue{storage: e.storage, tree: tree}
		}
	}
	return l
}

// Most leaves one AddSequencedLeaves should carry. By default, about 2.5 MB of Sigsum leaves: within the 4 MB a
// Trillian server accepts through gRPC by default, and a few seconds of work for a MySQL or PostgreSQL store, well
// within a request's timeout. The embedded SQLite store takes them straight (no gRPC) and stores 64k leaves in well
// under a second: larger transactions write each page of its hash indexes once for more leaves.
const (
	maxStoreDefault = 12 << 10
	maxStoreSQLite  = 64 << 10
)

// MaxStoreBatch returns the most leaves one AddSequencedLeaves call should carry.
func (l *Log) MaxStoreBatch() int { return l.maxStore }

// TreeID returns the Trillian tree id.
func (l *Log) TreeID() int64 { return l.id }

// wrap maps gRPC codes the roles care about onto our errors.
func wrap(what string, err error) error {
	if err == nil {
		return nil
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
func logLeaf(leaf *sigsum.Leaf) *tpb.LogLeaf {
	h := leaf.Hash()
	return &tpb.LogLeaf{LeafValue: leaf.MarshalBinary(), LeafIdentityHash: h[:]}
}

// QueueLeaf adds a leaf to a LOG tree. It reports whether the leaf was already there (queued or integrated).
func (l *Log) QueueLeaf(ctx context.Context, leaf *sigsum.Leaf) (bool, error) {
	if l.direct != nil {
		return l.direct.queue(ctx, leaf)
	}
	rsp, err := l.client.QueueLeaf(ctx, &tpb.QueueLeafRequest{LogId: l.id, Leaf: logLeaf(leaf)})
	if err != nil {
		return false, wrap("queueing leaf", err)
	}
	switch c := codes.Code(rsp.GetQueuedLeaf().GetStatus().GetCode()); c {
	case codes.OK:
		return false, nil
	case codes.AlreadyExists:
		return true, nil
	default:
		return false, fmt.Errorf("queueing leaf: status %s: %s", c, rsp.GetQueuedLeaf().GetStatus().GetMessage())
	}
}

// AddSequencedLeaves stores leaves at indices start, start+1, ... of a PREORDERED_LOG tree. A leaf already stored
// at its index (a retry after a crash) is fine; any other conflict is ErrConflict. The leaves become part of the
// tree when the sequencer integrates them.
func (l *Log) AddSequencedLeaves(ctx context.Context, start uint64, leaves []sigsum.Leaf) error {
	if len(leaves) == 0 {
		return nil
	}
	req := &tpb.AddSequencedLeavesRequest{LogId: l.id, Leaves: make([]*tpb.LogLeaf, len(leaves))}
	for i := range leaves {
		req.Leaves[i] = logLeaf(&leaves[i])
		req.Leaves[i].LeafIndex = int64(start) + int64(i)
	}
	var results []*tpb.QueuedLogLeaf
	if l.store != nil {
		var err error
		if results, err = l.store.addSequenced(ctx, req.Leaves); err != nil {
			return err
		}
	} else {
		rsp, err := l.client.AddSequencedLeaves(ctx, req)
		if err != nil {
			return wrap("adding sequenced leaves", err)
		}
		results = rsp.Results
	}
	if len(results) != len(leaves) {
		return fmt.Errorf("adding sequenced leaves: %d results for %d leaves", len(results), len(leaves))
	}
	for i, r := range results {
		switch c := codes.Code(r.GetStatus().GetCode()); c {
		case codes.OK:
		case codes.FailedPrecondition, codes.AlreadyExists:
			// "conflicting LeafIdentityHash": this very leaf is stored already, normally at this index by an
			// earlier attempt that crashed before integration. (Were it at another index, the root would differ from
			// the primary's, which the replication loop checks.) "conflicting LeafIndex": another leaf holds it.
			if strings.Contains(r.GetStatus().GetMessage(), "LeafIdentityHash") {
				continue
			}
			return fmt.Errorf("leaf %d: %w: %s", start+uint64(i), ErrConflict, r.GetStatus().GetMessage())
		default:
			return fmt.Errorf("leaf %d: %w: status %s: %s", start+uint64(i), ErrConflict, c, r.GetStatus().GetMessage())
		}
	}
	return nil
}

// changed returns a channel closed when the tree may have grown: at the embedded engine's next commit, or, for an
// external engine, after pollInterval (it cannot tell).
func (l *Log) changed() <-chan struct{} {
	if l.changes != nil {
		return l.changes.next()
	}
	ch := make(chan struct{})
	time.AfterFunc(pollInterval, func() { close(ch) })
	return ch
}

// pollInterval is how often an external engine's tree is read by a waiter.
const pollInterval = 20 * time.Millisecond

// WaitGrowth waits up to maxWait until the integrated tree holds more than size leaves and returns the latest tree
// head read: larger than size, or not if the time ran out. An error is the engine's, or ctx's.
func (l *Log) WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error) {
	timeout := time.NewTimer(maxWait)
	defer timeout.Stop()
	for {
		changed := l.changed() // taken before the read: a commit after the read closes it
		th, err := l.TreeHead(ctx)
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

// TreeHead returns the size and root of the tree as last integrated.
func (l *Log) TreeHead(ctx context.Context) (sigsum.TreeHead, error) {
	rsp, err := l.client.GetLatestSignedLogRoot(ctx, &tpb.GetLatestSignedLogRootRequest{LogId: l.id})
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

// GetLeaves returns up to count leaves from index start of the integrated tree; fewer if the tree ends first.
func (l *Log) GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error) {
	var got []*tpb.LogLeaf
	var err error
	if d := l.embedded(); d != nil {
		if got, err = d.leaves(ctx, start, count); err != nil {
			return nil, err
		}
	} else {
		rsp, err := l.client.GetLeavesByRange(ctx, &tpb.GetLeavesByRangeRequest{LogId: l.id, StartIndex: int64(start), Count: int64(count)})
		if err != nil {
			return nil, wrap("getting leaves", err)
		}
		got = rsp.Leaves
	}
	if len(got) == 0 && count > 0 {
		return nil, fmt.Errorf("getting leaves from %d: %w", start, ErrOutOfRange)
	}
	leaves := make([]sigsum.Leaf, len(got))
	for i, ll := range got {
		if ll.LeafIndex != int64(start)+int64(i) {
			return nil, fmt.Errorf("getting leaves: leaf %d has index %d", start+uint64(i), ll.LeafIndex)
		}
		if leaves[i], err = sigsum.ParseLeafBinary(ll.LeafValue); err != nil {
			return nil, fmt.Errorf("stored leaf %d: %w", ll.LeafIndex, err)
		}
	}
	return leaves, nil
}

// LeafHashes returns up to count Merkle leaf hashes of the integrated tree from index start; fewer if the tree ends
// first. An embedded engine reads only the hashes (what a proof needs), which costs a fraction of reading the leaves;
// an external Trillian has no such call, so its leaves are read and hashed.
func (l *Log) LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error) {
	d := l.embedded()
	if d == nil {
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
	hs, err := d.leafHashes(ctx, start, count)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("getting leaf hashes from %d: %w", start, ErrOutOfRange)
	}
	return hs, nil
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

// InclusionProof returns the proof for the leaf with hash leafHash in the tree of size size. ErrNotFound means
// the leaf is not among the first size leaves.
func (l *Log) InclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error) {
	rsp, err := l.client.GetInclusionProofByHash(ctx, &tpb.GetInclusionProofByHashRequest{
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

// LeafIndex returns the index of the first integrated leaf with hash leafHash: ErrNotFound when there is none,
// ErrUnsupported from an external Trillian, whose API finds a leaf by hash only together with its inclusion proof.
func (l *Log) LeafIndex(ctx context.Context, leafHash sigsum.Hash) (uint64, error) {
	d := l.embedded()
	if d == nil {
		return 0, ErrUnsupported
	}
	return d.leafIndex(ctx, leafHash)
}

// embedded is the way into an embedded engine's storage, whatever the tree's type; nil for an external Trillian.
func (l *Log) embedded() *directQueue { return cmp.Or(l.direct, l.store) }

// ConsistencyProof returns the proof that the tree of size newSize extends the tree of size oldSize.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	rsp, err := l.client.GetConsistencyProof(ctx, &tpb.GetConsistencyProofRequest{
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

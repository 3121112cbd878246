package engine

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/trees"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// embeddedLog is a tree of an engine running in this process. It queues leaves straight into the storage (LOG
// tree), stores preordered leaves (PREORDERED_LOG tree) and reads leaves, leaf hashes and leaf indices from it
// (either type), and learns of the tree's growth from the engine's commit announcements. Trillian's QueueLeaf RPC
// costs a gRPC round trip and a read of the tree's metadata on every call, which bounds add-leaf throughput; the
// tree cannot change under a running node (its lock keeps sigsumctl promote out), so its description is read once.
// Tree heads and proofs, which Trillian's log server computes, are asked of it through rpc.
type embeddedLog struct {
	rpc     *remoteLog
	storage storage.LogStorage
	tree    *trillian.Tree
	changes *changes
	// leafHashes reads leaf hashes by range: the storage's own reader when it has one, else nodeHashes.
	leafHashes leafHashReader
	// leafIndex finds a leaf's index by its hash: the storage's own finder when it has one, else nil (a snapshot).
	leafIndex leafIndexReader
	// leafValues reads leaves by range: the storage's own reader when it has one, else nil (a snapshot).
	leafValues leafValueReader
	// lastRoot is the encoded log root a snapshot decoded last, and its size: the decoder works by reflection, and
	// most snapshots see the root the previous one saw.
	lastRoot atomic.Pointer[decodedRoot]
}

var _ Log = (*embeddedLog)(nil)

type decodedRoot struct {
	enc  []byte
	size uint64
}

// leafHashReader reads the Merkle hashes of a tree's integrated leaves [start, start+count) in one snapshot,
// without the leaves: fewer when the tree ends first, none when start is not below its size. sqlitestore's storage
// has such a read of its own, which StartEmbedded takes when it opens the store; for the others, nodeHashes reads
// the bottom level of the tree's stored tiles.
type leafHashReader interface {
	LeafHashesByRange(ctx context.Context, tree *trillian.Tree, start, count int64) ([][]byte, error)
}

// leafIndexReader finds the index of the first integrated leaf of a tree with a Merkle leaf hash, and whether
// there is one, in one snapshot and without the leaf: sqlitestore's storage has such a read of its own.
type leafIndexReader interface {
	LeafIndexByHash(ctx context.Context, tree *trillian.Tree, leafHash []byte) (int64, bool, error)
}

// leafValueReader reads the values of a tree's integrated leaves [start, start+count) in one snapshot, without the
// rest of each stored leaf: fewer when the tree ends first, none when start is not below its size. sqlitestore's
// storage has such a read of its own.
type leafValueReader interface {
	LeafValuesByRange(ctx context.Context, tree *trillian.Tree, start, count int64) ([][]byte, error)
}

// MaxStoreBatch implements Log.
func (l *embeddedLog) MaxStoreBatch() int { return l.rpc.maxStore }

// TreeID implements Log.
func (l *embeddedLog) TreeID() int64 { return l.tree.TreeId }

// errTreeType is the error for an operation the tree's type does not allow, as Trillian's log server answers it.
func (l *embeddedLog) errTreeType(what string, want trillian.TreeType) error {
	return wrap(what, status.Errorf(codes.FailedPrecondition, "tree %d is %s, want %s", l.tree.TreeId, l.tree.TreeType, want))
}

// QueueLeaf implements Log, doing what the log server's QueueLeaf does: hash the leaf, set its identity, hand it
// to the storage.
func (l *embeddedLog) QueueLeaf(ctx context.Context, leaf *sigsum.Leaf) (bool, error) {
	if l.tree.TreeType != trillian.TreeType_LOG {
		return false, l.errTreeType("queueing leaf", trillian.TreeType_LOG)
	}
	ll := logLeaf(leaf)
	ll.MerkleLeafHash = ll.LeafIdentityHash // logLeaf sets the identity to the RFC 6962 leaf hash
	ret, err := l.storage.QueueLeaves(trees.NewContext(ctx, l.tree), l.tree, []*trillian.LogLeaf{ll}, time.Now())
	if err != nil {
		return false, wrap("queueing leaf", err)
	}
	return queued(ret)
}

// AddSequencedLeaves implements Log, doing what the log server's AddSequencedLeaves does for Sigsum leaves (their
// Merkle leaf hash is the identity hash logLeaf sets), without gRPC: no marshalling of megabytes of leaves, and no
// 4 MB message limit, so that a catching-up secondary can store large batches in one transaction. A refused leaf
// is read back from a snapshot of the storage, which holds it whether integrated or not.
func (l *embeddedLog) AddSequencedLeaves(ctx context.Context, start uint64, leaves []sigsum.Leaf) error {
	if len(leaves) == 0 {
		return nil
	}
	if l.tree.TreeType != trillian.TreeType_PREORDERED_LOG {
		return l.errTreeType("adding sequenced leaves", trillian.TreeType_PREORDERED_LOG)
	}
	lls := sequencedLeaves(start, leaves)
	for _, ll := range lls {
		ll.MerkleLeafHash = ll.LeafIdentityHash
	}
	results, err := l.storage.AddSequencedLeaves(trees.NewContext(ctx, l.tree), l.tree, lls, time.Now())
	if err != nil {
		return wrap("adding sequenced leaves", err)
	}
	return settle(ctx, lls, results, l.readStored)
}

// readStored is the storedReader of an embedded tree: a PREORDERED_LOG tree's storage returns the stored leaves
// past the integrated size too, up to the first missing index.
func (l *embeddedLog) readStored(ctx context.Context, first *trillian.LogLeaf, count int64) ([]*trillian.LogLeaf, error) {
	var leaves []*trillian.LogLeaf
	err := l.snapshot(ctx, "reading stored leaves", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, _ uint64) error {
		var err error
		leaves, err = tx.GetLeavesByRange(ctx, first.LeafIndex, count)
		return wrap("reading stored leaves", err)
	})
	return leaves, err
}

// WaitGrowth implements Log: the tree can grow only in a commit of the engine's storage, which l.changes announces.
func (l *embeddedLog) WaitGrowth(ctx context.Context, size uint64, maxWait time.Duration) (sigsum.TreeHead, error) {
	return waitGrowth(ctx, size, maxWait, l.changes.next, l.TreeHead)
}

// TreeHead implements Log.
func (l *embeddedLog) TreeHead(ctx context.Context) (sigsum.TreeHead, error) {
	return l.rpc.TreeHead(ctx)
}

// InclusionProof implements Log.
func (l *embeddedLog) InclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error) {
	return l.rpc.InclusionProof(ctx, size, leafHash)
}

// ConsistencyProof implements Log.
func (l *embeddedLog) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	return l.rpc.ConsistencyProof(ctx, oldSize, newSize)
}

// snapshot runs f in a snapshot of the storage with the size of its latest root.
func (l *embeddedLog) snapshot(ctx context.Context, what string, f func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error) error {
	ctx = trees.NewContext(ctx, l.tree)
	tx, err := l.storage.SnapshotForTree(ctx, l.tree)
	if err != nil {
		return wrap(what, err)
	}
	defer func() { _ = tx.Close() }()
	root, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		return wrap(what, err)
	}
	enc := root.GetLogRoot()
	last := l.lastRoot.Load()
	if last == nil || !bytes.Equal(last.enc, enc) {
		var lr types.LogRootV1
		if err := lr.UnmarshalBinary(enc); err != nil {
			return fmt.Errorf("%s: reading the log root: %w", what, err)
		}
		last = &decodedRoot{enc: bytes.Clone(enc), size: lr.TreeSize}
		l.lastRoot.Store(last)
	}
	if err := f(ctx, tx, last.size); err != nil {
		return err
	}
	return wrap(what, tx.Commit(ctx))
}

// LeafIndex implements Log: the storage's own finder, or one indexed lookup in a snapshot of it. Trillian's only way to it,
// GetInclusionProofByHash, also reads the subtrees of a whole proof.
func (l *embeddedLog) LeafIndex(ctx context.Context, leafHash sigsum.Hash) (uint64, error) {
	if l.leafIndex != nil {
		i, ok, err := l.leafIndex.LeafIndexByHash(ctx, l.tree, leafHash[:])
		switch {
		case err != nil:
			return 0, wrap("finding leaf", err)
		case !ok:
			return 0, fmt.Errorf("finding leaf: %w", ErrNotFound)
		}
		return uint64(i), nil
	}
	var index uint64
	err := l.snapshot(ctx, "finding leaf", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
		leaves, err := tx.GetLeavesByHash(ctx, [][]byte{leafHash[:]}, true)
		if err != nil {
			return wrap("finding leaf", err)
		}
		for _, l := range leaves {
			// A stored leaf is integrated only below the root's size (a preordered tree stores leaves ahead of it).
			if l.LeafIndex >= 0 && uint64(l.LeafIndex) < size {
				index = uint64(l.LeafIndex)
				return nil
			}
		}
		return fmt.Errorf("finding leaf: %w", ErrNotFound)
	})
	return index, err
}

// checkRange refuses a read of no leaves, and one from an index the storage's signed indices cannot hold.
func checkRange(what string, start, count uint64) error {
	switch {
	case count == 0:
		return fmt.Errorf("%s: count 0, want > 0", what)
	case start > math.MaxInt64:
		return fmt.Errorf("%s: %w: start %d", what, ErrOutOfRange, start)
	}
	return nil
}

// GetLeaves implements Log, reading the integrated leaves out of a snapshot of the storage as the log server's
// GetLeavesByRange does, but without gRPC: a range of thousands of leaves cost more to marshal and unmarshal than
// to read, in the primary's read-back of every new leaf and in every batch a secondary fetches.
func (l *embeddedLog) GetLeaves(ctx context.Context, start, count uint64) ([]sigsum.Leaf, error) {
	if err := checkRange("getting leaves", start, count); err != nil {
		return nil, err
	}
	if l.leafValues != nil {
		vs, err := l.leafValues.LeafValuesByRange(ctx, l.tree, int64(start), int64(min(count, math.MaxInt64)))
		if err != nil {
			return nil, wrap("getting leaves", err)
		}
		return parseLeaves(start, vs)
	}
	var leaves []*trillian.LogLeaf
	err := l.snapshot(ctx, "getting leaves", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
		if start >= size {
			return nil
		}
		// Only integrated leaves: a preordered tree's storage also has those stored ahead of its root.
		var err error
		leaves, err = tx.GetLeavesByRange(ctx, int64(start), int64(min(count, size-start)))
		return wrap("getting leaves", err)
	})
	if err != nil {
		return nil, err
	}
	return toLeaves(start, leaves)
}

// maxLeafHashes bounds one read of leaf hashes (4 tiles of the storage).
const maxLeafHashes = 1024

// LeafHashes implements Log, reading only the hashes (what a proof needs), which costs a fraction of reading the
// leaves.
func (l *embeddedLog) LeafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error) {
	if err := checkRange("getting leaf hashes", start, count); err != nil {
		return nil, err
	}
	bs, err := l.leafHashes.LeafHashesByRange(ctx, l.tree, int64(start), int64(min(count, maxLeafHashes)))
	if err != nil {
		return nil, wrap("getting leaf hashes", err)
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("getting leaf hashes from %d: %w", start, ErrOutOfRange)
	}
	hs, err := hashes(bs)
	if err != nil {
		return nil, fmt.Errorf("getting leaf hashes: %w", err)
	}
	return hs, nil
}

// nodeHashes is the leafHashReader of a storage without one of its own: the leaf hashes are the bottom level of
// the tree's stored tiles.
type nodeHashes struct{ l *embeddedLog }

func (n nodeHashes) LeafHashesByRange(ctx context.Context, _ *trillian.Tree, start, count int64) ([][]byte, error) {
	var out [][]byte
	err := n.l.snapshot(ctx, "getting leaf hashes", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
		if uint64(start) >= size {
			return nil
		}
		c := min(uint64(count), size-uint64(start))
		ids := make([]compact.NodeID, c)
		for i := range ids {
			ids[i] = compact.NewNodeID(0, uint64(start)+uint64(i))
		}
		nodes, err := tx.GetMerkleNodes(ctx, ids)
		if err != nil {
			return err
		}
		if len(nodes) != len(ids) {
			return fmt.Errorf("from %d: storage returned %d of %d", start, len(nodes), len(ids))
		}
		out = make([][]byte, c)
		for i, nd := range nodes {
			if nd.ID != ids[i] || len(nd.Hash) != sigsum.HashSize {
				return fmt.Errorf("node %d of %d is %v with %d bytes", i, c, nd.ID, len(nd.Hash))
			}
			out[i] = nd.Hash
		}
		return nil
	})
	return out, err
}

package trillian

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/trees"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"google.golang.org/grpc/codes"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// directQueue queues leaves straight into an embedded engine's storage (LOG tree), or stores preordered leaves
// (PREORDERED_LOG tree), and reads leaves from it (either type). Trillian's QueueLeaf RPC costs a gRPC
// round trip and a read of the tree's metadata on every call, which bounds add-leaf throughput; the tree cannot
// change under a running node (its lock keeps sigsumctl promote out), so its description is read once.
type directQueue struct {
	storage storage.LogStorage
	tree    *tpb.Tree
	// lastRoot is the encoded log root a snapshot decoded last, and its size: the decoder works by reflection, and
	// most snapshots see the root the previous one saw.
	lastRoot atomic.Pointer[decodedRoot]
}

type decodedRoot struct {
	enc  []byte
	size uint64
}

// queue does what the log server's QueueLeaf does: hash the leaf, set its identity, hand it to the storage.
func (d *directQueue) queue(ctx context.Context, leaf *sigsum.Leaf) (bool, error) {
	ll := logLeaf(leaf)
	ll.MerkleLeafHash = ll.LeafIdentityHash // logLeaf sets the identity to the RFC 6962 leaf hash
	ret, err := d.storage.QueueLeaves(trees.NewContext(ctx, d.tree), d.tree, []*tpb.LogLeaf{ll}, time.Now())
	if err != nil {
		return false, wrap("queueing leaf", err)
	}
	if len(ret) != 1 {
		return false, fmt.Errorf("queueing leaf: storage answered %d results for 1 leaf", len(ret))
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

// addSequenced does what the log server's AddSequencedLeaves does for Sigsum leaves (their Merkle leaf hash is the
// identity hash logLeaf sets), without gRPC: no marshalling of megabytes of leaves, and no 4 MB message limit, so
// that a catching-up secondary can store large batches in one transaction.
func (d *directQueue) addSequenced(ctx context.Context, leaves []*tpb.LogLeaf) ([]*tpb.QueuedLogLeaf, error) {
	for _, ll := range leaves {
		ll.MerkleLeafHash = ll.LeafIdentityHash
	}
	ret, err := d.storage.AddSequencedLeaves(trees.NewContext(ctx, d.tree), d.tree, leaves, time.Now())
	if err != nil {
		return nil, wrap("adding sequenced leaves", err)
	}
	return ret, nil
}

// snapshot runs f in a snapshot of the storage with the size of its latest root.
func (d *directQueue) snapshot(ctx context.Context, what string, f func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error) error {
	ctx = trees.NewContext(ctx, d.tree)
	tx, err := d.storage.SnapshotForTree(ctx, d.tree)
	if err != nil {
		return wrap(what, err)
	}
	defer func() { _ = tx.Close() }()
	root, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		return wrap(what, err)
	}
	enc := root.GetLogRoot()
	last := d.lastRoot.Load()
	if last == nil || !bytes.Equal(last.enc, enc) {
		var lr types.LogRootV1
		if err := lr.UnmarshalBinary(enc); err != nil {
			return fmt.Errorf("%s: reading the log root: %w", what, err)
		}
		last = &decodedRoot{enc: bytes.Clone(enc), size: lr.TreeSize}
		d.lastRoot.Store(last)
	}
	if err := f(ctx, tx, last.size); err != nil {
		return err
	}
	return wrap(what, tx.Commit(ctx))
}

// leafIndex finds the index of the first integrated leaf with hash leafHash in a snapshot of the storage: one
// indexed lookup. Trillian's only way to it, GetInclusionProofByHash, also reads the subtrees of a whole proof.
func (d *directQueue) leafIndex(ctx context.Context, leafHash sigsum.Hash) (uint64, error) {
	var index uint64
	err := d.snapshot(ctx, "finding leaf", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
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

// leaves reads up to count integrated leaves from index start out of a snapshot of the storage, as the log
// server's GetLeavesByRange does, but without gRPC: a range of thousands of leaves cost more to marshal and
// unmarshal than to read, in the primary's read-back of every new leaf and in every batch a secondary fetches. No
// leaves means start is not below the tree's size.
func (d *directQueue) leaves(ctx context.Context, start, count uint64) ([]*tpb.LogLeaf, error) {
	if err := checkRange("getting leaves", start, count); err != nil {
		return nil, err
	}
	var leaves []*tpb.LogLeaf
	err := d.snapshot(ctx, "getting leaves", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
		if start >= size {
			return nil
		}
		// Only integrated leaves: a preordered tree's storage also has those stored ahead of its root.
		var err error
		leaves, err = tx.GetLeavesByRange(ctx, int64(start), int64(min(count, size-start)))
		return wrap("getting leaves", err)
	})
	return leaves, err
}

// maxLeafHashes bounds one read of leaf hashes (4 tiles of the storage).
const maxLeafHashes = 1024

// leafHashReader is a storage snapshot that reads leaf hashes by range without the leaves (sqlitestore's).
type leafHashReader interface {
	LeafHashesByRange(ctx context.Context, start, count int64) ([][]byte, error)
}

// leafHashes reads up to count Merkle leaf hashes of integrated leaves from index start out of a snapshot of the
// storage: the bottom level of the tree's stored tiles, without the leaves.
func (d *directQueue) leafHashes(ctx context.Context, start, count uint64) ([]sigsum.Hash, error) {
	if err := checkRange("getting leaf hashes", start, count); err != nil {
		return nil, err
	}
	var out []sigsum.Hash
	err := d.snapshot(ctx, "getting leaf hashes", func(ctx context.Context, tx storage.ReadOnlyLogTreeTX, size uint64) error {
		if start >= size {
			return nil
		}
		n := min(count, size-start, maxLeafHashes)
		if r, ok := tx.(leafHashReader); ok {
			hs, err := r.LeafHashesByRange(ctx, int64(start), int64(n))
			if err != nil {
				return wrap("getting leaf hashes", err)
			}
			if out, err = hashes(hs); err != nil {
				return fmt.Errorf("getting leaf hashes: %w", err)
			}
			return nil
		}
		ids := make([]compact.NodeID, n)
		for i := range ids {
			ids[i] = compact.NewNodeID(0, start+uint64(i))
		}
		nodes, err := tx.GetMerkleNodes(ctx, ids)
		if err != nil {
			return wrap("getting leaf hashes", err)
		}
		if len(nodes) != len(ids) {
			return fmt.Errorf("getting leaf hashes from %d: storage returned %d of %d", start, len(nodes), len(ids))
		}
		out = make([]sigsum.Hash, n)
		for i, nd := range nodes {
			if nd.ID != ids[i] || len(nd.Hash) != sigsum.HashSize {
				return fmt.Errorf("getting leaf hashes: node %d of %d is %v with %d bytes", i, n, nd.ID, len(nd.Hash))
			}
			out[i] = sigsum.Hash(nd.Hash)
		}
		return nil
	})
	return out, err
}

package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Group commit for QueueLeaves.
//
// With synchronous=FULL every commit costs an fsync (0.2-0.5 ms and more on
// real disks), so committing each QueueLeaves call on its own would cap the
// whole node at a few thousand calls per second however many clients there
// are. Instead, callers hand their request to one goroutine; whenever it is
// free it takes every request waiting (up to a leaf budget), runs them all in
// one write transaction, commits once and then answers each caller. Under load
// the requests that arrive during one commit form the next batch, so batches
// grow with concurrency and no artificial delay is ever added.
//
// One failing request does not take the others down (see commitLive), and
// requests are applied in order inside the shared transaction, so
// deduplication by identity hash holds both within a batch (a later request
// sees the leaves of an earlier one) and across batches.

// selectExistingLeafSQL reads a stored leaf by identity hash, with its index
// once sequenced (schemaV3).
const selectExistingLeafSQL = `SELECT l.MerkleLeafHash, l.LeafValue, l.ExtraData, l.QueueTimestampNanos,
	s.SequenceNumber, s.IntegrateTimestampNanos
	FROM LeafData l LEFT JOIN SequencedLeafData s
	ON s.TreeId = l.TreeId AND s.SequenceNumber = l.SequenceNumber AND s.LeafIdentityHash = l.LeafIdentityHash
	WHERE l.TreeId = ? AND l.LeafIdentityHash = ?`

type queueRequest struct {
	ctx    context.Context
	treeID int64
	leaves []*trillian.LogLeaf
	ts     time.Time
	done   chan queueResult // buffered: the batcher never blocks on a caller that left
}

type queueResult struct {
	leaves []*trillian.QueuedLogLeaf
	err    error
}

type queuer struct {
	s         *Store
	maxLeaves int

	mu      sync.Mutex
	pending []*queueRequest
	closing bool

	// commits counts committed batch transactions (tests use it to see that
	// concurrent calls were grouped).
	commits atomic.Int64

	wake     chan struct{} // capacity 1: "there is pending work"
	stop     chan struct{}
	finished chan struct{}
}

func newQueuer(s *Store, maxLeaves int) *queuer {
	return &queuer{
		s:         s,
		maxLeaves: maxLeaves,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		finished:  make(chan struct{}),
	}
}

// submit validates the request in the caller's goroutine, hands it to the
// batcher and waits for its result or for ctx. A caller that gives up early
// may still have its leaves committed, as with any database call.
func (q *queuer) submit(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, ts time.Time) ([]*trillian.QueuedLogLeaf, error) {
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "sqlitestore: nil tree")
	}
	qts := timestamppb.New(ts)
	if err := qts.CheckValid(); err != nil {
		return nil, fmt.Errorf("sqlitestore: invalid queue timestamp: %w", err)
	}
	// Don't accept batches if any of the leaves are invalid (as MySQL).
	for _, leaf := range leaves {
		if len(leaf.GetLeafIdentityHash()) != hashSize {
			return nil, fmt.Errorf("sqlitestore: queued leaf must have a leaf ID hash of length %d", hashSize)
		}
	}
	for _, leaf := range leaves {
		leaf.QueueTimestamp = qts
	}
	if len(leaves) == 0 {
		return []*trillian.QueuedLogLeaf{}, nil
	}
	req := &queueRequest{ctx: ctx, treeID: t.TreeId, leaves: leaves, ts: ts, done: make(chan queueResult, 1)}

	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.pending = append(q.pending, req)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}

	select {
	case r := <-req.done:
		return r.leaves, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stopAndWait refuses new requests, lets the batcher finish the ones already
// submitted and waits for it to exit.
func (q *queuer) stopAndWait() {
	q.mu.Lock()
	if !q.closing {
		q.closing = true
		close(q.stop)
	}
	q.mu.Unlock()
	<-q.finished
}

func (q *queuer) run() {
	defer close(q.finished)
	for {
		select {
		case <-q.wake:
		case <-q.stop:
			for q.runPending() {
			}
			return
		}
		for q.runPending() {
		}
	}
}

// runPending commits one batch of pending requests; it reports whether there
// was any.
func (q *queuer) runPending() bool {
	q.mu.Lock()
	n, leaves := 0, 0
	for n < len(q.pending) && (n == 0 || leaves+len(q.pending[n].leaves) <= q.maxLeaves) {
		leaves += len(q.pending[n].leaves)
		n++
	}
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	if len(q.pending) == 0 {
		q.pending = nil // let the backing array go
	}
	q.mu.Unlock()
	if n == 0 {
		return false
	}
	q.commit(batch)
	return true
}

func (q *queuer) commit(batch []*queueRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- queueResult{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	results, err := q.commitLive(live)
	for i, r := range live {
		if err != nil {
			r.done <- queueResult{err: err}
		} else {
			r.done <- results[i]
		}
	}
}

// queueStmts are the statements of one batch transaction.
type queueStmts struct {
	hasRoot, insLeaf, insQueue, existing *sql.Stmt
}

func (st *queueStmts) close() {
	for _, s := range []*sql.Stmt{st.hasRoot, st.insLeaf, st.insQueue, st.existing} {
		if s != nil {
			_ = s.Close()
		}
	}
}

// commitLive runs the requests in one transaction and returns each one's result. An error return means nothing
// of the batch is stored.
//
// A request that fails (rare: the tree lacks its root, or the database fails a statement) takes the shared
// transaction down with it; the requests are then run again, each in a transaction of its own, so that only the
// failing one fails. This costs nothing in the common case, where a savepoint per request would cost two more
// statements for every leaf.
func (q *queuer) commitLive(reqs []*queueRequest) ([]queueResult, error) {
	results, err := q.commitTx(reqs)
	var failed *requestError
	if !errors.As(err, &failed) {
		return results, err
	}
	results = make([]queueResult, len(reqs))
	for i := range reqs {
		res, err := q.commitTx(reqs[i : i+1])
		switch {
		case errors.As(err, &failed):
			results[i] = queueResult{err: failed.err}
		case err != nil:
			results[i] = queueResult{err: err}
		default:
			results[i] = res[0]
		}
	}
	return results, nil
}

// requestError is one request's failure inside a batch transaction.
type requestError struct{ err error }

func (e *requestError) Error() string { return e.err.Error() }

// commitTx runs the requests in one transaction: all of them are stored, or none (a *requestError names the
// failure of one request, any other error the transaction's).
func (q *queuer) commitTx(reqs []*queueRequest) ([]queueResult, error) {
	// The store's lifetime, not a caller's context: one caller giving up must
	// not roll back the others' leaves.
	ctx := context.Background()
	tx, err := q.s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: begin queue transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	// The statements prepared once on the writer (Store.writeStmts): preparing four statements in every batch
	// cost a sixth of the time of queueing.
	w := q.s.writeStmts
	st := &queueStmts{
		hasRoot:  tx.StmtContext(ctx, w[selectHasRootSQL]),
		insLeaf:  tx.StmtContext(ctx, w[insertLeafDataSQL]),
		insQueue: tx.StmtContext(ctx, w[insertQueuedLeafSQL]),
		existing: tx.StmtContext(ctx, w[selectExistingLeafSQL]),
	}
	defer st.close()

	results := make([]queueResult, len(reqs))
	initialised := make(map[int64]bool)
	for i, r := range reqs {
		res, err := queueInTx(ctx, st, initialised, r)
		if err != nil {
			return nil, &requestError{err: err}
		}
		results[i] = queueResult{leaves: res}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlitestore: commit queue transaction: %w", err)
	}
	q.commits.Add(1)
	return results, nil
}

// queueInTx stores one request's leaves. A leaf whose identity hash is known
// (queued or sequenced, in this batch or before) is not queued again; its
// result is AlreadyExists with the stored leaf, as in the MySQL provider.
func queueInTx(ctx context.Context, st *queueStmts, initialised map[int64]bool, r *queueRequest) ([]*trillian.QueuedLogLeaf, error) {
	// Like MySQL, which starts every QueueLeaves with the tree's root.
	if !initialised[r.treeID] {
		var one int
		switch err := st.hasRoot.QueryRowContext(ctx, r.treeID).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return nil, storage.ErrTreeNeedsInit
		case err != nil:
			return nil, fmt.Errorf("sqlitestore: reading root of tree %d: %w", r.treeID, err)
		}
		initialised[r.treeID] = true
	}
	ts := r.ts.UnixNano()
	ret := make([]*trillian.QueuedLogLeaf, len(r.leaves))
	for i, leaf := range r.leaves {
		res, err := st.insLeaf.ExecContext(ctx, r.treeID, leaf.LeafIdentityHash, nonNil(leaf.MerkleLeafHash),
			nonNil(leaf.LeafValue), leaf.ExtraData, ts)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: queueing leaf: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: queueing leaf: %w", err)
		}
		if n == 0 {
			existing, err := readExisting(ctx, st.existing, r.treeID, leaf.LeafIdentityHash)
			if err != nil {
				return nil, err
			}
			ret[i] = &trillian.QueuedLogLeaf{
				Leaf:   existing,
				Status: status.Newf(codes.AlreadyExists, "leaf already exists: %v", existing.LeafIdentityHash).Proto(),
			}
			continue
		}
		if _, err := st.insQueue.ExecContext(ctx, r.treeID, ts, leaf.LeafIdentityHash, nonNil(leaf.MerkleLeafHash)); err != nil {
			return nil, fmt.Errorf("sqlitestore: queueing leaf: %w", err)
		}
		ret[i] = &trillian.QueuedLogLeaf{Leaf: leaf}
	}
	return ret, nil
}

// readExisting returns the stored leaf with the identity hash. LeafIndex is
// the leaf's index once sequenced and -1 before (MySQL always reports -1);
// IntegrateTimestamp is set once sequenced.
func readExisting(ctx context.Context, stmt *sql.Stmt, treeID int64, idHash []byte) (*trillian.LogLeaf, error) {
	leaf := &trillian.LogLeaf{LeafIdentityHash: idHash, LeafIndex: -1}
	var qts int64
	var seq, its sql.NullInt64
	if err := stmt.QueryRowContext(ctx, treeID, idHash).Scan(&leaf.MerkleLeafHash, &leaf.LeafValue,
		&leaf.ExtraData, &qts, &seq, &its); err != nil {
		return nil, fmt.Errorf("sqlitestore: reading existing leaf %x: %w", idHash, err)
	}
	leaf.QueueTimestamp = timestamppb.New(time.Unix(0, qts))
	if seq.Valid {
		leaf.LeafIndex = seq.Int64
		leaf.IntegrateTimestamp = timestamppb.New(time.Unix(0, its.Int64))
	}
	return leaf, nil
}

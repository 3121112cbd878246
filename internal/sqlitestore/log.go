package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/cache"
	"github.com/google/trillian/storage/storagepb"
	"github.com/google/trillian/storage/tree"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// hashSize is the size of identity and Merkle leaf hashes (RFC 6962,
	// SHA-256), the only hasher Trillian log trees use.
	hashSize = 32

	// maxRangeCount bounds one GetLeavesByRange answer; the interface allows
	// returning a shorter prefix, and the caller asks again.
	maxRangeCount = 1 << 16

	// maxInArgs bounds the number of "?" in one IN (...) list.
	maxInArgs = 500

	selectLatestRootSQL = `SELECT TreeHeadTimestamp, TreeSize, RootHash, TreeRevision FROM TreeHead
		WHERE TreeId = ? ORDER BY TreeHeadTimestamp DESC LIMIT 1`

	// The INDEXED BY clauses matter: without statistics SQLite's planner
	// otherwise prefers scanning all of a tree's rows by primary key.
	leafColumnsSQL = `SELECT s.MerkleLeafHash, l.LeafIdentityHash, l.LeafValue, s.SequenceNumber,
		l.ExtraData, l.QueueTimestampNanos, s.IntegrateTimestampNanos `
	joinLeafDataSQL = ` JOIN LeafData l ON l.TreeId = s.TreeId AND l.LeafIdentityHash = s.LeafIdentityHash `

	// A range walks LeafData's index by leaf index (schemaV4); each LeafData row
	// with an index has its SequencedLeafData row there (AddSequencedLeaves and
	// UpdateSequencedLeaves write both).
	selectLeavesByRangeSQL = leafColumnsSQL + `FROM LeafData l INDEXED BY LeafDataSequenceIdx JOIN SequencedLeafData s
		ON s.TreeId = l.TreeId AND s.SequenceNumber = l.SequenceNumber AND s.LeafIdentityHash = l.LeafIdentityHash
		WHERE l.TreeId = ? AND l.SequenceNumber >= ? AND l.SequenceNumber < ? ORDER BY l.SequenceNumber`

	// Leaves by Merkle leaf hash: those whose identity hash is the same (all of a
	// Sigsum log's) through LeafData's key and its index (schemaV3), the others
	// through the partial Merkle hash index (schemaV2). Both halves take the
	// tree id and the hashes.
	selectLeavesBySameHashSQL = leafColumnsSQL + `FROM LeafData l JOIN SequencedLeafData s
		ON s.TreeId = l.TreeId AND s.SequenceNumber = l.SequenceNumber AND s.LeafIdentityHash = l.LeafIdentityHash
		WHERE l.TreeId = ? AND s.MerkleLeafHash = s.LeafIdentityHash AND l.LeafIdentityHash IN (`
	selectLeavesByOtherHashSQL = leafColumnsSQL + `FROM SequencedLeafData s INDEXED BY SequencedLeafMerkleIdx` +
		joinLeafDataSQL + `WHERE s.TreeId = ? AND s.MerkleLeafHash <> s.LeafIdentityHash AND s.MerkleLeafHash IN (`

	selectSequencedHashesSQL = `SELECT MerkleLeafHash, LeafIdentityHash, SequenceNumber, IntegrateTimestampNanos
		FROM SequencedLeafData WHERE TreeId = ? AND SequenceNumber >= ? AND SequenceNumber < ? ORDER BY SequenceNumber`

	// latestSizeSQL is the size of tree ?1's latest root (selectLatestRootSQL's), for statements bounded by it.
	latestSizeSQL = `(SELECT TreeSize FROM TreeHead WHERE TreeId = ?1 ORDER BY TreeHeadTimestamp DESC LIMIT 1)`

	// The hashes of the integrated leaves [?2, ?3) of tree ?1 (Store.LeafHashesByRange).
	selectIntegratedLeafHashesSQL = `SELECT SequenceNumber, MerkleLeafHash FROM SequencedLeafData
		WHERE TreeId = ?1 AND SequenceNumber >= ?2 AND SequenceNumber < min(?3, ` + latestSizeSQL + `)
		ORDER BY SequenceNumber`

	// The values of the integrated leaves [?2, ?3) of tree ?1 (Store.LeafValuesByRange): selectLeavesByRangeSQL's
	// walk, bounded by the latest root's size, the values only.
	selectIntegratedLeafValuesSQL = `SELECT l.SequenceNumber, l.LeafValue FROM LeafData l INDEXED BY LeafDataSequenceIdx
		JOIN SequencedLeafData s
		ON s.TreeId = l.TreeId AND s.SequenceNumber = l.SequenceNumber AND s.LeafIdentityHash = l.LeafIdentityHash
		WHERE l.TreeId = ?1 AND l.SequenceNumber >= ?2 AND l.SequenceNumber < min(?3, ` + latestSizeSQL + `)
		ORDER BY l.SequenceNumber`

	// The first integrated index of Merkle leaf hash ?2 in tree ?1, or NULL (Store.LeafIndexByHash): the two
	// halves of selectLeavesByMerkleHash, indices only.
	selectLeafIndexByHashSQL = `SELECT min(i) FROM (
		SELECT SequenceNumber AS i FROM LeafData
			WHERE TreeId = ?1 AND LeafIdentityHash = ?2 AND MerkleLeafHash = LeafIdentityHash AND SequenceNumber IS NOT NULL
		UNION ALL
		SELECT SequenceNumber AS i FROM SequencedLeafData INDEXED BY SequencedLeafMerkleIdx
			WHERE TreeId = ?1 AND MerkleLeafHash <> LeafIdentityHash AND MerkleLeafHash = ?2)
		WHERE i < ` + latestSizeSQL

	selectQueuedLeavesSQL = `SELECT LeafIdentityHash, MerkleLeafHash, QueueTimestampNanos FROM Unsequenced
		WHERE TreeId = ? AND QueueTimestampNanos <= ?
		ORDER BY QueueTimestampNanos, LeafIdentityHash LIMIT ?`

	// The inserts of sequenced leaves, up to VALUES: one row here, bulkRows rows in addSequencedInBulk.
	insertSequencedLeafPrefix = `INSERT INTO SequencedLeafData(TreeId, SequenceNumber, LeafIdentityHash,
		MerkleLeafHash, IntegrateTimestampNanos) VALUES `
	insertSequencedLeafDataPrefix = `INSERT INTO LeafData(TreeId, LeafIdentityHash, MerkleLeafHash, LeafValue, ExtraData,
		QueueTimestampNanos, SequenceNumber) VALUES `
	insertSequencedLeafSQL     = insertSequencedLeafPrefix + `(?, ?, ?, ?, ?)`
	insertSequencedLeafDataSQL = insertSequencedLeafDataPrefix + `(?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`

	// The queue's statements (queue.go).
	selectHasRootSQL    = `SELECT 1 FROM TreeHead WHERE TreeId = ? LIMIT 1`
	insertQueuedLeafSQL = `INSERT INTO Unsequenced(TreeId, QueueTimestampNanos, LeafIdentityHash, MerkleLeafHash)
		VALUES(?, ?, ?, ?)`
	insertLeafDataSQL = `INSERT INTO LeafData(TreeId, LeafIdentityHash, MerkleLeafHash, LeafValue, ExtraData,
		QueueTimestampNanos) VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	setLeafIndexSQL = `UPDATE LeafData SET SequenceNumber = ? WHERE TreeId = ? AND LeafIdentityHash = ?`
)

// logStorage implements storage.LogStorage.
type logStorage struct {
	s *Store
	// sequencer: the storage handed to Trillian's sequencer (Store.SequencerLogStorage).
	sequencer bool
}

var _ storage.LogStorage = (*logStorage)(nil)

// CheckDatabaseAccessible implements storage.ReadOnlyLogStorage.
func (ls *logStorage) CheckDatabaseAccessible(ctx context.Context) error {
	return ls.s.checkAccessible(ctx)
}

// GetActiveLogIDs implements storage.ReadOnlyLogStorage: LOG and
// PREORDERED_LOG trees that are ACTIVE or DRAINING (still being integrated)
// and not soft-deleted.
func (ls *logStorage) GetActiveLogIDs(ctx context.Context) ([]int64, error) {
	if ls.s.isClosed() {
		return nil, ErrClosed
	}
	rows, err := ls.s.reader.QueryContext(ctx, `SELECT TreeId FROM Trees
		WHERE TreeType IN (?, ?) AND TreeState IN (?, ?) AND Deleted = 0 ORDER BY TreeId`,
		trillian.TreeType_LOG.String(), trillian.TreeType_PREORDERED_LOG.String(),
		trillian.TreeState_ACTIVE.String(), trillian.TreeState_DRAINING.String())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: listing active logs: %w", err)
	}
	defer rows.Close()
	ids := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlitestore: listing active logs: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: listing active logs: %w", err)
	}
	return ids, nil
}

// begin starts a transaction on the tree and reads its latest root. Like the
// MySQL provider it returns the open transaction together with
// storage.ErrTreeNeedsInit when the tree has no root yet (InitLog needs that
// transaction to write the first root); the caller must Close it.
func (ls *logStorage) begin(ctx context.Context, t *trillian.Tree, readonly bool) (*logTX, error) {
	if ls.s.isClosed() {
		return nil, ErrClosed
	}
	if t == nil {
		return nil, status.Error(codes.InvalidArgument, "sqlitestore: nil tree")
	}
	db := ls.s.writer
	var opts *sql.TxOptions
	var stmts map[string]*sql.Stmt
	if readonly {
		db = ls.s.reader
		opts = &sql.TxOptions{ReadOnly: true}
		stmts = ls.s.readStmts
	}
	// Not ctx itself: database/sql rolls a transaction back the moment the context it began with is done, and
	// Commit then fails with sql.ErrTxDone though every read succeeded (seen as a start failure when a batch of
	// leaves was read right at its caller's timeout). Each statement still runs under ctx, and the caller's Close
	// rolls back whatever was not committed.
	sqlTx, err := db.BeginTx(context.WithoutCancel(ctx), opts)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: begin log transaction: %w", err)
	}
	if err := ctx.Err(); err != nil {
		_ = sqlTx.Rollback()
		return nil, fmt.Errorf("sqlitestore: begin log transaction: %w", err)
	}
	tx := &logTX{
		tx:         sqlTx,
		readonly:   readonly,
		stmts:      stmts,
		lastRoot:   &ls.s.lastRoot,
		treeID:     t.TreeId,
		treeType:   t.TreeType,
		cache:      cache.NewLogSubtreeCache(rfc6962.DefaultHasher),
		dequeued:   make(map[string]dequeuedLeaf),
		writeRev:   -1,
		hashesOnly: ls.sequencer,
	}
	// This first read also pins the snapshot the whole transaction sees.
	err = tx.fetchLatestRoot(ctx)
	if err == storage.ErrTreeNeedsInit {
		tx.writeRev = 0
		return tx, err
	}
	if err != nil {
		_ = sqlTx.Rollback()
		return nil, err
	}
	tx.writeRev = tx.readRev + 1
	return tx, nil
}

// ReadWriteTransaction implements storage.LogStorage. f runs once, on the
// single writer connection.
func (ls *logStorage) ReadWriteTransaction(ctx context.Context, t *trillian.Tree, f storage.LogTXFunc) error {
	tx, err := ls.begin(ctx, t, false)
	if err != nil && err != storage.ErrTreeNeedsInit {
		return err
	}
	defer func() { _ = tx.Close() }()
	if err := f(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// SnapshotForTree implements storage.ReadOnlyLogStorage. As with MySQL, a tree
// without a root gives both a transaction and storage.ErrTreeNeedsInit.
func (ls *logStorage) SnapshotForTree(ctx context.Context, t *trillian.Tree) (storage.ReadOnlyLogTreeTX, error) {
	tx, err := ls.begin(ctx, t, true)
	if err != nil && err != storage.ErrTreeNeedsInit {
		return nil, err
	}
	return tx, err
}

// QueueLeaves implements storage.LogStorage. Concurrent calls are committed
// together in one transaction; see queue.go.
func (ls *logStorage) QueueLeaves(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, queueTimestamp time.Time) ([]*trillian.QueuedLogLeaf, error) {
	return ls.s.queue.submit(ctx, t, leaves, queueTimestamp)
}

// AddSequencedLeaves implements storage.LogStorage with the MySQL provider's
// per-leaf results: OK when stored, FailedPrecondition "conflicting
// LeafIdentityHash" when a leaf with the same identity hash is already stored
// (at any index), FailedPrecondition "conflicting LeafIndex" when the index is
// taken. The call itself succeeds; all stored leaves commit together.
func (ls *logStorage) AddSequencedLeaves(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, timestamp time.Time) ([]*trillian.QueuedLogLeaf, error) {
	res, err := ls.addSequencedLeaves(ctx, t, leaves, timestamp, true)
	if errors.Is(err, errBulkConflict) {
		ls.s.bulkConflicts.Add(1)
		res, err = ls.addSequencedLeaves(ctx, t, leaves, timestamp, false)
	}
	return res, err
}

// addSequencedLeaves stores the leaves in one transaction; bulk lets it try addSequencedInBulk.
func (ls *logStorage) addSequencedLeaves(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, timestamp time.Time, bulk bool) ([]*trillian.QueuedLogLeaf, error) {
	tx, err := ls.begin(ctx, t, false)
	if tx != nil {
		defer func() { _ = tx.Close() }()
	}
	if err != nil {
		return nil, err
	}
	res, err := tx.addSequencedLeaves(ctx, leaves, timestamp, bulk)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if tx.storedInBulk {
		ls.s.bulkStores.Add(1)
	}
	return res, nil
}

type dequeuedLeaf struct {
	queueTimestampNanos int64
	leafIdentityHash    []byte
}

// logTX implements storage.LogTreeTX. Read-only transactions (snapshots) run
// on the reader pool, the others on the writer connection.
type logTX struct {
	// mu serialises use of the transaction and of the (not thread-safe)
	// subtree cache.
	mu       sync.Mutex
	tx       *sql.Tx
	readonly bool
	closed   bool
	stmts    map[string]*sql.Stmt         // statements prepared for read-only transactions (Store.readStmts)
	lastRoot *atomic.Pointer[encodedRoot] // Store.lastRoot

	treeID   int64
	treeType trillian.TreeType
	root     types.LogRootV1
	slr      *trillian.SignedLogRoot
	readRev  int64
	writeRev int64
	cache    *cache.SubtreeCache
	dequeued map[string]dequeuedLeaf
	// hashesOnly: DequeueLeaves of a PREORDERED_LOG tree reads no more than the sequencer needs.
	hashesOnly bool
	// storedInBulk: addSequencedLeaves took addSequencedInBulk.
	storedInBulk bool
}

var _ storage.LogTreeTX = (*logTX)(nil)

// query runs q in the transaction, through its prepared statement when the transaction has one for it.
func (t *logTX) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.stmts[q]; st != nil {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}

// queryRow is query for a single row.
func (t *logTX) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.stmts[q]; st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}

func (t *logTX) fetchLatestRoot(ctx context.Context) error {
	var ts, size, rev int64
	var hash []byte
	err := t.queryRow(ctx, selectLatestRootSQL, t.treeID).Scan(&ts, &size, &hash, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrTreeNeedsInit
	}
	if err != nil {
		return fmt.Errorf("sqlitestore: reading latest root of tree %d: %w", t.treeID, err)
	}
	t.root = types.LogRootV1{RootHash: hash, TimestampNanos: uint64(ts), TreeSize: uint64(size)}
	t.readRev = rev
	// LogRootV1 has a deterministic encoding, so the root is rebuilt exactly. Its encoder works by reflection, and
	// a snapshot of a tree that has not changed since the last one reuses the last encoding.
	last := t.lastRoot.Load()
	if last != nil && last.treeID == t.treeID && last.rev == rev && last.ts == ts && last.size == size &&
		bytes.Equal(last.hash, hash) {
		t.slr = &trillian.SignedLogRoot{LogRoot: last.enc}
		return nil
	}
	b, err := t.root.MarshalBinary()
	if err != nil {
		return fmt.Errorf("sqlitestore: encoding root of tree %d: %w", t.treeID, err)
	}
	t.lastRoot.Store(&encodedRoot{treeID: t.treeID, rev: rev, ts: ts, size: size, hash: hash, enc: b})
	t.slr = &trillian.SignedLogRoot{LogRoot: b}
	return nil
}

// encodedRoot is a tree's root as read, and its encoding.
type encodedRoot struct {
	treeID, rev, ts, size int64
	hash, enc             []byte
}

func (t *logTX) writable() error {
	if t.readonly {
		return status.Error(codes.Internal, "sqlitestore: write in a read-only log transaction")
	}
	if t.closed {
		return errors.New("sqlitestore: log transaction already closed")
	}
	return nil
}

// Commit implements storage.ReadOnlyLogTreeTX. A read-write transaction first
// writes the tiles changed through SetMerkleNodes.
func (t *logTX) Commit(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("sqlitestore: log transaction already closed")
	}
	if !t.readonly && t.writeRev > -1 {
		tiles, err := t.cache.UpdatedTiles()
		if err != nil {
			return fmt.Errorf("sqlitestore: collecting updated tiles: %w", err)
		}
		if err := t.storeSubtrees(ctx, tiles); err != nil {
			return err
		}
	}
	t.closed = true
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: commit log transaction: %w", err)
	}
	return nil
}

// Close implements storage.ReadOnlyLogTreeTX: it rolls back unless committed.
func (t *logTX) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlitestore: rollback log transaction: %w", err)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (t *logTX) getSubtrees(ctx context.Context, ids [][]byte) ([]*storagepb.SubtreeProto, error) {
	ret := make([]*storagepb.SubtreeProto, 0, len(ids))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxInArgs)]
		ids = ids[len(chunk):]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, t.treeID)
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := t.tx.QueryContext(ctx,
			"SELECT Nodes FROM Subtree WHERE TreeId = ? AND SubtreeId IN ("+placeholders(len(chunk))+")", args...)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: reading tiles: %w", err)
		}
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlitestore: reading tiles: %w", err)
			}
			var st storagepb.SubtreeProto
			if err := proto.Unmarshal(raw, &st); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlitestore: decoding tile: %w", err)
			}
			if st.Prefix == nil {
				st.Prefix = []byte{}
			}
			ret = append(ret, &st)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: reading tiles: %w", err)
		}
	}
	return ret, nil
}

func (t *logTX) subtreeGetter(ctx context.Context) cache.GetSubtreesFunc {
	return func(ids [][]byte) ([]*storagepb.SubtreeProto, error) {
		return t.getSubtrees(ctx, ids)
	}
}

func (t *logTX) storeSubtrees(ctx context.Context, tiles []*storagepb.SubtreeProto) error {
	if len(tiles) == 0 {
		return nil
	}
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO Subtree(TreeId, SubtreeId, Nodes) VALUES(?, ?, ?)
		ON CONFLICT(TreeId, SubtreeId) DO UPDATE SET Nodes = excluded.Nodes`)
	if err != nil {
		return fmt.Errorf("sqlitestore: preparing tile write: %w", err)
	}
	defer stmt.Close()
	ectx := context.WithoutCancel(ctx) // see addSequencedLeaves
	for _, st := range tiles {
		if st.Prefix == nil {
			return fmt.Errorf("sqlitestore: tile without prefix")
		}
		raw, err := proto.Marshal(st)
		if err != nil {
			return fmt.Errorf("sqlitestore: encoding tile: %w", err)
		}
		if _, err := stmt.ExecContext(ectx, t.treeID, st.Prefix, raw); err != nil {
			return fmt.Errorf("sqlitestore: writing tile: %w", err)
		}
	}
	return nil
}

// GetMerkleNodes implements storage.ReadOnlyLogTreeTX.
func (t *logTX) GetMerkleNodes(ctx context.Context, ids []compact.NodeID) ([]tree.Node, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cache.GetNodes(ids, t.subtreeGetter(ctx))
}

// SetMerkleNodes implements storage.LogTreeTX. The tiles are written at Commit.
func (t *logTX) SetMerkleNodes(ctx context.Context, nodes []tree.Node) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return err
	}
	return t.cache.SetNodes(nodes, t.subtreeGetter(ctx))
}

// LatestSignedLogRoot implements storage.ReadOnlyLogTreeTX: the root as of the
// start of the transaction.
func (t *logTX) LatestSignedLogRoot(ctx context.Context) (*trillian.SignedLogRoot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.slr == nil {
		return nil, storage.ErrTreeNeedsInit
	}
	return t.slr, nil
}

// StoreSignedLogRoot implements storage.LogTreeTX. Root metadata is refused,
// as by MySQL; a second root in one transaction fails on the revision.
func (t *logTX) StoreSignedLogRoot(ctx context.Context, root *trillian.SignedLogRoot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return err
	}
	var lr types.LogRootV1
	if err := lr.UnmarshalBinary(root.GetLogRoot()); err != nil {
		return fmt.Errorf("sqlitestore: decoding log root: %w", err)
	}
	if len(lr.Metadata) != 0 {
		return errors.New("sqlitestore: log root metadata is not supported")
	}
	if lr.TimestampNanos > math.MaxInt64 || lr.TreeSize > math.MaxInt64 {
		return fmt.Errorf("sqlitestore: log root out of range (size %d, timestamp %d)", lr.TreeSize, lr.TimestampNanos)
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO TreeHead(TreeId, TreeHeadTimestamp, TreeSize, RootHash, TreeRevision)
		VALUES(?, ?, ?, ?, ?)`, t.treeID, int64(lr.TimestampNanos), int64(lr.TreeSize), nonNil(lr.RootHash), t.writeRev); err != nil {
		return fmt.Errorf("sqlitestore: storing log root of tree %d: %w", t.treeID, err)
	}
	return nil
}

// DequeueLeaves implements storage.LogTreeTX. For a LOG tree it returns up to
// limit queued leaves queued at or before cutoff, oldest first (ties by
// identity hash), as MySQL does. For a PREORDERED_LOG tree it returns the
// stored sequenced leaves from the tree size upward, stopping at the first
// missing index, so a gap holds integration back until it is filled.
func (t *logTX) DequeueLeaves(ctx context.Context, limit int, cutoff time.Time) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return nil, err
	}
	if t.treeType == trillian.TreeType_PREORDERED_LOG {
		if t.hashesOnly {
			return t.sequencedHashes(ctx, int64(t.root.TreeSize), int64(limit))
		}
		return t.getLeavesByRange(ctx, int64(t.root.TreeSize), int64(limit))
	}
	if limit <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid limit %d, want > 0", limit)
	}
	rows, err := t.tx.QueryContext(ctx, selectQueuedLeavesSQL, t.treeID, cutoff.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: dequeueing leaves: %w", err)
	}
	defer rows.Close()
	leaves := make([]*trillian.LogLeaf, 0, min(limit, 4096))
	for rows.Next() {
		var idHash, merkleHash []byte
		var qts int64
		if err := rows.Scan(&idHash, &merkleHash, &qts); err != nil {
			return nil, fmt.Errorf("sqlitestore: dequeueing leaves: %w", err)
		}
		if len(idHash) != hashSize {
			return nil, errors.New("sqlitestore: dequeued a leaf with incorrect hash size")
		}
		k := string(idHash)
		if _, ok := t.dequeued[k]; ok {
			// Already handed out by an earlier DequeueLeaves in this transaction.
			continue
		}
		t.dequeued[k] = dequeuedLeaf{queueTimestampNanos: qts, leafIdentityHash: idHash}
		leaves = append(leaves, &trillian.LogLeaf{
			LeafIdentityHash: idHash,
			MerkleLeafHash:   merkleHash,
			QueueTimestamp:   timestamppb.New(time.Unix(0, qts)),
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: dequeueing leaves: %w", err)
	}
	return leaves, nil
}

// sequencedHashes is the sequencer's DequeueLeaves of a PREORDERED_LOG tree: the stored leaves from start on, up
// to the first missing index, with their index and hashes only. The sequencer integrates a leaf by its Merkle leaf
// hash and reads nothing else, nor writes anything back for a preordered tree (log.preorderedLogSequencingTask).
// The full leaves, as LogStorage's DequeueLeaves returns them like the MySQL provider, need a join with LeafData
// by identity hash: a random lookup per leaf, which cost a catching-up secondary a sixth of its time.
func (t *logTX) sequencedHashes(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	if count <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid limit %d, want > 0", count)
	}
	count = min(count, maxRangeCount)
	rows, err := t.tx.QueryContext(ctx, selectSequencedHashesSQL, t.treeID, start, start+count)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: reading sequenced leaves: %w", err)
	}
	defer rows.Close()
	ret := make([]*trillian.LogLeaf, 0, min(count, 4096))
	for want := start; rows.Next(); want++ {
		leaf := &trillian.LogLeaf{}
		var its int64
		if err := rows.Scan(&leaf.MerkleLeafHash, &leaf.LeafIdentityHash, &leaf.LeafIndex, &its); err != nil {
			return nil, fmt.Errorf("sqlitestore: reading sequenced leaves: %w", err)
		}
		if leaf.LeafIndex != want {
			break // a gap: the leaves past it wait until it is filled
		}
		leaf.IntegrateTimestamp = timestamppb.New(time.Unix(0, its))
		ret = append(ret, leaf)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: reading sequenced leaves: %w", err)
	}
	return ret, nil
}

// UpdateSequencedLeaves implements storage.LogTreeTX: it records the indices
// the sequencer assigned and removes the leaves from the queue. A taken index
// is an error (the whole integration rolls back), as with MySQL.
func (t *logTX) UpdateSequencedLeaves(ctx context.Context, leaves []*trillian.LogLeaf) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return err
	}
	ins, err := t.tx.PrepareContext(ctx, insertSequencedLeafSQL)
	if err != nil {
		return fmt.Errorf("sqlitestore: preparing sequenced leaf insert: %w", err)
	}
	defer ins.Close()
	del, err := t.tx.PrepareContext(ctx,
		"DELETE FROM Unsequenced WHERE TreeId = ? AND QueueTimestampNanos = ? AND LeafIdentityHash = ?")
	if err != nil {
		return fmt.Errorf("sqlitestore: preparing queue delete: %w", err)
	}
	defer del.Close()
	setIndex, err := t.tx.PrepareContext(ctx, setLeafIndexSQL)
	if err != nil {
		return fmt.Errorf("sqlitestore: preparing leaf index update: %w", err)
	}
	defer setIndex.Close()
	ectx := context.WithoutCancel(ctx) // see addSequencedLeaves
	for n, leaf := range leaves {
		if n%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("sqlitestore: storing sequenced leaves: %w", err)
			}
		}
		if len(leaf.LeafIdentityHash) != hashSize {
			return errors.New("sqlitestore: sequenced leaf has incorrect hash size")
		}
		if err := leaf.IntegrateTimestamp.CheckValid(); err != nil {
			return fmt.Errorf("sqlitestore: invalid integrate timestamp: %w", err)
		}
		dq, ok := t.dequeued[string(leaf.LeafIdentityHash)]
		if !ok {
			return fmt.Errorf("sqlitestore: attempting to update leaf that wasn't dequeued, identity hash %x", leaf.LeafIdentityHash)
		}
		if _, err := ins.ExecContext(ectx, t.treeID, leaf.LeafIndex, leaf.LeafIdentityHash,
			nonNil(leaf.MerkleLeafHash), leaf.IntegrateTimestamp.AsTime().UnixNano()); err != nil {
			return fmt.Errorf("sqlitestore: storing sequenced leaf %d of tree %d: %w", leaf.LeafIndex, t.treeID, err)
		}
		if res, err := setIndex.ExecContext(ectx, leaf.LeafIndex, t.treeID, leaf.LeafIdentityHash); err != nil {
			return fmt.Errorf("sqlitestore: recording index %d of leaf %x: %w", leaf.LeafIndex, leaf.LeafIdentityHash, err)
		} else if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("sqlitestore: recording index %d of leaf %x: %d rows affected (%v), want 1", leaf.LeafIndex, leaf.LeafIdentityHash, n, err)
		}
		res, err := del.ExecContext(ectx, t.treeID, dq.queueTimestampNanos, dq.leafIdentityHash)
		if err != nil {
			return fmt.Errorf("sqlitestore: removing leaf from queue: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("sqlitestore: removing leaf %x from queue: %d rows affected (%v), want 1", leaf.LeafIdentityHash, n, err)
		}
	}
	return nil
}

// GetLeavesByRange implements storage.ReadOnlyLogTreeTX. For a LOG tree the
// range is clipped to the tree size (and must start inside it); for a
// PREORDERED_LOG tree stored leaves past the tree size are returned too, up to
// the first missing index.
func (t *logTX) GetLeavesByRange(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLeavesByRange(ctx, start, count)
}

func (t *logTX) getLeavesByRange(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	if count <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid count %d, want > 0", count)
	}
	if start < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid start %d, want >= 0", start)
	}
	treeSize := int64(t.root.TreeSize)
	if t.treeType == trillian.TreeType_LOG {
		if treeSize <= 0 {
			return nil, status.Errorf(codes.OutOfRange, "empty tree")
		} else if start >= treeSize {
			return nil, status.Errorf(codes.OutOfRange, "invalid start %d, want < TreeSize(%d)", start, treeSize)
		}
		count = min(count, treeSize-start)
	}
	count = min(count, maxRangeCount)
	end := start + count
	if end < start { // overflow
		end = math.MaxInt64
	}
	rows, err := t.query(ctx, selectLeavesByRangeSQL, t.treeID, start, end)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: reading leaves by range: %w", err)
	}
	defer rows.Close()
	ret := make([]*trillian.LogLeaf, 0, min(count, 1024))
	for want := start; rows.Next(); want++ {
		leaf, err := scanSequencedLeaf(rows)
		if err != nil {
			return nil, err
		}
		if leaf.LeafIndex != want {
			if want < treeSize {
				return nil, fmt.Errorf("sqlitestore: tree %d: got leaf index %d, want %d: integrated leaf missing", t.treeID, leaf.LeafIndex, want)
			}
			// A gap past the integrated size: stop, the rest is not contiguous.
			break
		}
		ret = append(ret, leaf)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: reading leaves by range: %w", err)
	}
	return ret, nil
}

// LeafHashesByRange reads the Merkle leaf hashes of tree's integrated leaves [start, start+count): fewer when the
// tree ends first, none when start is not below its size. It is what the engine reads for proofs, which Trillian's
// storage interface has no call for (its providers read whole leaves or tiles). One statement, one walk of
// SequencedLeafData's key bounded by the latest root's size, on a reader connection: no transaction to begin,
// and no root to read and decode first, which cost as much as the read itself.
func (s *Store) LeafHashesByRange(ctx context.Context, t *trillian.Tree, start, count int64) ([][]byte, error) {
	return s.readRange(ctx, selectIntegratedLeafHashesSQL, "leaf hashes", hashSize, t, start, count)
}

// LeafValuesByRange reads the values of tree's integrated leaves [start, start+count): fewer when the tree ends
// first, none when start is not below its size. It is GetLeavesByRange for a reader that wants the values only (a
// Sigsum leaf is its value): one statement on a reader connection, bounded by the latest root's size, with no
// transaction, no root to read and decode, and no LogLeaf with two timestamps per leaf.
func (s *Store) LeafValuesByRange(ctx context.Context, t *trillian.Tree, start, count int64) ([][]byte, error) {
	return s.readRange(ctx, selectIntegratedLeafValuesSQL, "leaves by range", 0, t, start, count)
}

// readRange runs query, a read statement of the (index, value) rows of tree's integrated leaves [start,
// start+count) in index order (at most maxRangeCount of them), and returns the values, each size bytes long unless
// size is 0. what names the read in errors. The values are read into one buffer (sql.RawBytes: no copy per row),
// then sliced.
func (s *Store) readRange(ctx context.Context, query, what string, size int, t *trillian.Tree, start, count int64) ([][]byte, error) {
	switch {
	case count <= 0:
		return nil, status.Errorf(codes.InvalidArgument, "invalid count %d, want > 0", count)
	case start < 0:
		return nil, status.Errorf(codes.InvalidArgument, "invalid start %d, want >= 0", start)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	count = min(count, maxRangeCount)
	// Without ctx's cancellation: with it, the driver starts a goroutine per statement to interrupt it (see
	// addSequencedLeaves); the statement reads at most maxRangeCount rows by key.
	rows, err := s.readStmts[query].QueryContext(context.WithoutCancel(ctx), t.TreeId, start, start+count)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: reading %s: %w", what, err)
	}
	defer rows.Close()
	var all []byte
	ends := make([]int, 0, min(count, 1024))
	for want := start; rows.Next(); want++ {
		var index int64
		var value sql.RawBytes
		if err := rows.Scan(&index, &value); err != nil {
			return nil, fmt.Errorf("sqlitestore: reading %s: %w", what, err)
		}
		if index != want {
			return nil, fmt.Errorf("sqlitestore: tree %d: got leaf index %d, want %d: integrated leaf missing", t.TreeId, index, want)
		}
		if size > 0 && len(value) != size {
			return nil, fmt.Errorf("sqlitestore: reading %s: tree %d: leaf %d has %d bytes, want %d", what, t.TreeId, index, len(value), size)
		}
		if all == nil {
			all = make([]byte, 0, cap(ends)*len(value))
		}
		all = append(all, value...)
		ends = append(ends, len(all))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: reading %s: %w", what, err)
	}
	if len(ends) == 0 {
		return nil, nil
	}
	ret := make([][]byte, len(ends))
	from := 0
	for i, end := range ends {
		ret[i] = all[from:end:end]
		from = end
	}
	return ret, nil
}

// LeafIndexByHash returns the index of the first integrated leaf of tree with Merkle leaf hash leafHash, and
// whether there is one: one statement on a reader connection (LeafData's key for a leaf whose identity hash is its
// Merkle hash, as all of a Sigsum log's are, the partial Merkle hash index for the others), bounded by the latest
// root's size, without the leaf itself. GetLeavesByHash in a snapshot costs a transaction, a root and the leaves.
func (s *Store) LeafIndexByHash(ctx context.Context, t *trillian.Tree, leafHash []byte) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	var index sql.NullInt64
	if err := s.readStmts[selectLeafIndexByHashSQL].QueryRowContext(context.WithoutCancel(ctx), t.TreeId, nonNil(leafHash)).Scan(&index); err != nil {
		return 0, false, fmt.Errorf("sqlitestore: finding leaf %x: %w", leafHash, err)
	}
	return index.Int64, index.Valid, nil
}

func scanSequencedLeaf(r rowScanner) (*trillian.LogLeaf, error) {
	leaf := &trillian.LogLeaf{}
	var qts, its int64
	if err := r.Scan(&leaf.MerkleLeafHash, &leaf.LeafIdentityHash, &leaf.LeafValue, &leaf.LeafIndex,
		&leaf.ExtraData, &qts, &its); err != nil {
		return nil, fmt.Errorf("sqlitestore: reading leaf: %w", err)
	}
	leaf.QueueTimestamp = timestamppb.New(time.Unix(0, qts))
	leaf.IntegrateTimestamp = timestamppb.New(time.Unix(0, its))
	return leaf, nil
}

// GetLeavesByHash implements storage.ReadOnlyLogTreeTX: sequenced leaves by
// Merkle leaf hash.
func (t *logTX) GetLeavesByHash(ctx context.Context, leafHashes [][]byte, orderBySequence bool) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ret []*trillian.LogLeaf
	for len(leafHashes) > 0 {
		chunk := leafHashes[:min(len(leafHashes), maxInArgs)]
		leafHashes = leafHashes[len(chunk):]
		args := make([]any, 0, 2*len(chunk)+2)
		for range 2 {
			args = append(args, t.treeID)
			for _, h := range chunk {
				args = append(args, nonNil(h))
			}
		}
		rows, err := t.query(ctx, selectLeavesByMerkleHash(len(chunk)), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: reading leaves by hash: %w", err)
		}
		for rows.Next() {
			leaf, err := scanSequencedLeaf(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			ret = append(ret, leaf)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: reading leaves by hash: %w", err)
		}
	}
	if orderBySequence {
		sort.Slice(ret, func(i, j int) bool { return ret[i].LeafIndex < ret[j].LeafIndex })
	}
	return ret, nil
}

// selectLeavesByMerkleHash is the query for n hashes.
func selectLeavesByMerkleHash(n int) string {
	return selectLeavesBySameHashSQL + placeholders(n) + ") UNION ALL " + selectLeavesByOtherHashSQL + placeholders(n) + ")"
}

// addSequencedLeaves stores preordered leaves in this transaction. Each leaf
// either lands completely (LeafData and SequencedLeafData) or not at all.
func (t *logTX) addSequencedLeaves(ctx context.Context, leaves []*trillian.LogLeaf, timestamp time.Time, bulk bool) ([]*trillian.QueuedLogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.writable(); err != nil {
		return nil, err
	}
	for i, leaf := range leaves {
		if got := len(leaf.GetLeafIdentityHash()); got != hashSize {
			return nil, status.Errorf(codes.FailedPrecondition, "leaves[%d] has incorrect hash size %d, want %d", i, got, hashSize)
		}
	}
	ts := timestamp.UnixNano()
	res := make([]*trillian.QueuedLogLeaf, len(leaves))
	// The statements run without ctx's cancellation: with it, the driver (modernc.org/sqlite) starts a goroutine
	// per statement to interrupt it, which cost a catching-up secondary a quarter of its CPU time. ctx is checked
	// between leaves instead.
	ectx := context.WithoutCancel(ctx)
	order := insertOrder(leaves)
	if bulk && bulkable(leaves) {
		stored, err := t.addSequencedInBulk(ctx, ectx, leaves, order, ts)
		if err != nil {
			return nil, err
		}
		if stored {
			t.storedInBulk = true
			for i := range res {
				res[i] = okLeaf()
			}
			return res, nil
		}
	}
	insLeaf, err := t.tx.PrepareContext(ctx, insertSequencedLeafDataSQL)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: preparing leaf insert: %w", err)
	}
	defer insLeaf.Close()
	insSeq, err := t.tx.PrepareContext(ctx, insertSequencedLeafSQL+" ON CONFLICT DO NOTHING")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: preparing sequenced leaf insert: %w", err)
	}
	defer insSeq.Close()
	undoLeaf, err := t.tx.PrepareContext(ctx, "DELETE FROM LeafData WHERE TreeId = ? AND LeafIdentityHash = ?")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: preparing leaf delete: %w", err)
	}
	defer undoLeaf.Close()
	for n, i := range order {
		if n%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("sqlitestore: storing leaves: %w", err)
			}
		}
		leaf := leaves[i]
		if leaf.LeafIndex < 0 {
			res[i] = &trillian.QueuedLogLeaf{Status: status.Newf(codes.OutOfRange, "invalid LeafIndex %d", leaf.LeafIndex).Proto()}
			continue
		}
		r, err := insLeaf.ExecContext(ectx, t.treeID, leaf.LeafIdentityHash, nonNil(leaf.MerkleLeafHash),
			nonNil(leaf.LeafValue), leaf.ExtraData, ts, leaf.LeafIndex)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: storing leaves[%d]: %w", i, err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return nil, fmt.Errorf("sqlitestore: storing leaves[%d]: %w", i, err)
		} else if n == 0 {
			res[i] = &trillian.QueuedLogLeaf{Status: status.New(codes.FailedPrecondition, "conflicting LeafIdentityHash").Proto()}
			continue
		}
		r, err = insSeq.ExecContext(ectx, t.treeID, leaf.LeafIndex, leaf.LeafIdentityHash, nonNil(leaf.MerkleLeafHash), 0)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: storing leaves[%d]: %w", i, err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return nil, fmt.Errorf("sqlitestore: storing leaves[%d]: %w", i, err)
		} else if n == 0 {
			// The index is taken: take back the LeafData row so that this leaf
			// leaves no trace, like MySQL's rollback to the savepoint.
			if _, err := undoLeaf.ExecContext(ectx, t.treeID, leaf.LeafIdentityHash); err != nil {
				return nil, fmt.Errorf("sqlitestore: undoing leaves[%d]: %w", i, err)
			}
			res[i] = &trillian.QueuedLogLeaf{Status: status.New(codes.FailedPrecondition, "conflicting LeafIndex").Proto()}
			continue
		}
		res[i] = okLeaf()
	}
	return res, nil
}

// nonNil maps a nil slice to an empty one: the driver binds nil as NULL, which
// NOT NULL BLOB columns refuse.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

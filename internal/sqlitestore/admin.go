package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const selectTreesSQL = `SELECT TreeId, TreeState, TreeType, DisplayName, Description,
	CreateTimeMillis, UpdateTimeMillis, MaxRootDurationNanos, StorageSettings, Deleted, DeleteTimeMillis
	FROM Trees`

// adminStorage implements storage.AdminStorage. Snapshots read from the reader
// pool; read-write transactions run on the single writer connection, so an
// update that is rejected rolls back and leaves the stored tree untouched.
type adminStorage struct {
	s *Store
}

var _ storage.AdminStorage = (*adminStorage)(nil)

func (a *adminStorage) begin(ctx context.Context, readonly bool) (*adminTX, error) {
	if a.s.isClosed() {
		return nil, ErrClosed
	}
	db := a.s.writer
	var opts *sql.TxOptions
	if readonly {
		db = a.s.reader
		opts = &sql.TxOptions{ReadOnly: true}
	}
	// Not ctx itself, as for log transactions (logStorage.begin): a Commit after ctx ended must not fail with
	// sql.ErrTxDone once the reads are done.
	tx, err := db.BeginTx(context.WithoutCancel(ctx), opts)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: begin admin transaction: %w", err)
	}
	if err := ctx.Err(); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("sqlitestore: begin admin transaction: %w", err)
	}
	return &adminTX{tx: tx, readonly: readonly}, nil
}

// Snapshot implements storage.AdminStorage.
func (a *adminStorage) Snapshot(ctx context.Context) (storage.ReadOnlyAdminTX, error) {
	return a.begin(ctx, true)
}

// ReadWriteTransaction implements storage.AdminStorage. f runs once: with a
// single writer there are no conflicts to retry.
func (a *adminStorage) ReadWriteTransaction(ctx context.Context, f storage.AdminTXFunc) error {
	tx, err := a.begin(ctx, false)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Close() }()
	if err := f(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

// CheckDatabaseAccessible implements storage.AdminStorage.
func (a *adminStorage) CheckDatabaseAccessible(ctx context.Context) error {
	return a.s.checkAccessible(ctx)
}

func (s *Store) checkAccessible(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlitestore: ping: %w", err)
	}
	return nil
}

// adminTX implements storage.AdminTX.
type adminTX struct {
	tx       *sql.Tx
	readonly bool

	// mu guards closed; the sql.Tx itself is safe for concurrent use.
	mu     sync.Mutex
	closed bool
}

func (t *adminTX) Commit() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("sqlitestore: admin transaction already closed")
	}
	t.closed = true
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: commit admin transaction: %w", err)
	}
	return nil
}

func (t *adminTX) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlitestore: rollback admin transaction: %w", err)
	}
	return nil
}

func (t *adminTX) writable() error {
	if t.readonly {
		return status.Error(codes.Internal, "sqlitestore: write in a read-only admin transaction")
	}
	return nil
}

type rowScanner interface {
	Scan(dest ...any) error
}

func scanTree(r rowScanner) (*trillian.Tree, error) {
	var (
		tree                    trillian.Tree
		state, typ              string
		createMillis, updMillis int64
		maxRootNanos            int64
		settings                []byte
		deleted                 int64
		deleteMillis            sql.NullInt64
	)
	if err := r.Scan(&tree.TreeId, &state, &typ, &tree.DisplayName, &tree.Description,
		&createMillis, &updMillis, &maxRootNanos, &settings, &deleted, &deleteMillis); err != nil {
		return nil, err
	}
	sv, ok := trillian.TreeState_value[state]
	if !ok {
		return nil, fmt.Errorf("sqlitestore: tree %d has unknown state %q", tree.TreeId, state)
	}
	tv, ok := trillian.TreeType_value[typ]
	if !ok {
		return nil, fmt.Errorf("sqlitestore: tree %d has unknown type %q", tree.TreeId, typ)
	}
	tree.TreeState = trillian.TreeState(sv)
	tree.TreeType = trillian.TreeType(tv)
	tree.CreateTime = timestamppb.New(time.UnixMilli(createMillis))
	tree.UpdateTime = timestamppb.New(time.UnixMilli(updMillis))
	tree.MaxRootDuration = durationpb.New(time.Duration(maxRootNanos))
	if settings != nil {
		var a anypb.Any
		if err := proto.Unmarshal(settings, &a); err != nil {
			return nil, fmt.Errorf("sqlitestore: tree %d storage settings: %w", tree.TreeId, err)
		}
		tree.StorageSettings = &a
	}
	tree.Deleted = deleted != 0
	if deleteMillis.Valid {
		tree.DeleteTime = timestamppb.New(time.UnixMilli(deleteMillis.Int64))
	}
	return &tree, nil
}

// GetTree implements storage.ReadOnlyAdminTX. An unknown tree is NotFound.
func (t *adminTX) GetTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	tree, err := scanTree(t.tx.QueryRowContext(ctx, selectTreesSQL+" WHERE TreeId = ?", treeID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, status.Errorf(codes.NotFound, "tree %v not found", treeID)
	case err != nil:
		return nil, fmt.Errorf("sqlitestore: reading tree %d: %w", treeID, err)
	}
	return tree, nil
}

// ListTrees implements storage.ReadOnlyAdminTX.
func (t *adminTX) ListTrees(ctx context.Context, includeDeleted bool) ([]*trillian.Tree, error) {
	q := selectTreesSQL
	if !includeDeleted {
		q += " WHERE Deleted = 0"
	}
	rows, err := t.tx.QueryContext(ctx, q+" ORDER BY TreeId")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: listing trees: %w", err)
	}
	defer rows.Close()
	trees := []*trillian.Tree{}
	for rows.Next() {
		tree, err := scanTree(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: listing trees: %w", err)
		}
		trees = append(trees, tree)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: listing trees: %w", err)
	}
	return trees, nil
}

func marshalSettings(a *anypb.Any) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: marshalling storage settings: %w", err)
	}
	return b, nil
}

// CreateTree implements storage.AdminWriter. Times are truncated to
// milliseconds, as stored (and as MySQL does), so the returned tree equals what
// GetTree reads back.
func (t *adminTX) CreateTree(ctx context.Context, tree *trillian.Tree) (*trillian.Tree, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	if err := storage.ValidateTreeForCreation(ctx, tree); err != nil {
		return nil, err
	}
	id, err := storage.NewTreeID()
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: generating tree id: %w", err)
	}
	nowMillis := time.Now().UnixMilli()
	now := time.UnixMilli(nowMillis)

	newTree := proto.Clone(tree).(*trillian.Tree)
	newTree.TreeId = id
	newTree.CreateTime = timestamppb.New(now)
	newTree.UpdateTime = timestamppb.New(now)
	settings, err := marshalSettings(newTree.StorageSettings)
	if err != nil {
		return nil, err
	}
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO Trees(TreeId, TreeState, TreeType, DisplayName, Description,
		CreateTimeMillis, UpdateTimeMillis, MaxRootDurationNanos, StorageSettings, Deleted, DeleteTimeMillis)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL)`,
		id, newTree.TreeState.String(), newTree.TreeType.String(), newTree.DisplayName, newTree.Description,
		nowMillis, nowMillis, newTree.MaxRootDuration.AsDuration().Nanoseconds(), settings); err != nil {
		return nil, fmt.Errorf("sqlitestore: inserting tree: %w", err)
	}
	return newTree, nil
}

// UpdateTree implements storage.AdminWriter. updateFunc works on a copy read
// from the database; if the result is invalid nothing is written, and the
// caller's ReadWriteTransaction rolls back whatever else it did.
func (t *adminTX) UpdateTree(ctx context.Context, treeID int64, updateFunc func(*trillian.Tree)) (*trillian.Tree, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	stored, err := t.GetTree(ctx, treeID)
	if err != nil {
		return nil, err
	}
	tree := proto.Clone(stored).(*trillian.Tree)
	updateFunc(tree)
	if err := storage.ValidateTreeForUpdate(ctx, stored, tree); err != nil {
		return nil, err
	}
	nowMillis := time.Now().UnixMilli()
	tree.UpdateTime = timestamppb.New(time.UnixMilli(nowMillis))
	settings, err := marshalSettings(tree.StorageSettings)
	if err != nil {
		return nil, err
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE Trees SET TreeState = ?, TreeType = ?, DisplayName = ?,
		Description = ?, UpdateTimeMillis = ?, MaxRootDurationNanos = ?, StorageSettings = ? WHERE TreeId = ?`,
		tree.TreeState.String(), tree.TreeType.String(), tree.DisplayName, tree.Description, nowMillis,
		tree.MaxRootDuration.AsDuration().Nanoseconds(), settings, treeID); err != nil {
		return nil, fmt.Errorf("sqlitestore: updating tree %d: %w", treeID, err)
	}
	return tree, nil
}

// SoftDeleteTree implements storage.AdminWriter.
func (t *adminTX) SoftDeleteTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	return t.setDeleted(ctx, treeID, true, sql.NullInt64{Int64: time.Now().UnixMilli(), Valid: true})
}

// UndeleteTree implements storage.AdminWriter.
func (t *adminTX) UndeleteTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	return t.setDeleted(ctx, treeID, false, sql.NullInt64{})
}

func (t *adminTX) setDeleted(ctx context.Context, treeID int64, deleted bool, deleteMillis sql.NullInt64) (*trillian.Tree, error) {
	if err := t.writable(); err != nil {
		return nil, err
	}
	if err := t.checkDeleted(ctx, treeID, !deleted); err != nil {
		return nil, err
	}
	flag := 0
	if deleted {
		flag = 1
	}
	if _, err := t.tx.ExecContext(ctx, "UPDATE Trees SET Deleted = ?, DeleteTimeMillis = ? WHERE TreeId = ?",
		flag, deleteMillis, treeID); err != nil {
		return nil, fmt.Errorf("sqlitestore: updating deletion of tree %d: %w", treeID, err)
	}
	return t.GetTree(ctx, treeID)
}

// HardDeleteTree implements storage.AdminWriter: it removes the tree and all
// of its data; the tree must be soft-deleted first.
func (t *adminTX) HardDeleteTree(ctx context.Context, treeID int64) error {
	if err := t.writable(); err != nil {
		return err
	}
	if err := t.checkDeleted(ctx, treeID, true); err != nil {
		return err
	}
	for _, table := range []string{"Unsequenced", "SequencedLeafData", "LeafData", "Subtree", "TreeHead", "Trees"} {
		if _, err := t.tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE TreeId = ?", treeID); err != nil {
			return fmt.Errorf("sqlitestore: deleting tree %d from %s: %w", treeID, table, err)
		}
	}
	return nil
}

// checkDeleted returns NotFound for an unknown tree and FailedPrecondition if
// its soft-deletion state is not wantDeleted, with MySQL's messages.
func (t *adminTX) checkDeleted(ctx context.Context, treeID int64, wantDeleted bool) error {
	var deleted bool
	switch err := t.tx.QueryRowContext(ctx, "SELECT Deleted FROM Trees WHERE TreeId = ?", treeID).Scan(&deleted); {
	case errors.Is(err, sql.ErrNoRows):
		return status.Errorf(codes.NotFound, "tree %v not found", treeID)
	case err != nil:
		return fmt.Errorf("sqlitestore: reading tree %d: %w", treeID, err)
	}
	switch {
	case wantDeleted && !deleted:
		return status.Errorf(codes.FailedPrecondition, "tree %v is not soft deleted", treeID)
	case !wantDeleted && deleted:
		return status.Errorf(codes.FailedPrecondition, "tree %v already soft deleted", treeID)
	}
	return nil
}

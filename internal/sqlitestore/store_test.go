package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian/log"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/util/clock"

	"github.com/sigsumd/sigsumd/internal/lockfile"
)

func TestOpenLockExclusive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "trillian.db")
	s, err := Open(ctx, Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	_, err = Open(ctx, Config{Path: path, Logger: quietLogger()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("lock error %q does not name the holder PID %d", err, os.Getpid())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2, err := Open(ctx, Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestOpenConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		desc string
		path string
	}{
		{"empty path", ""},
		{"missing directory", filepath.Join(dir, "nope", "trillian.db")},
		{"query in path", filepath.Join(dir, "x.db?mode=ro")},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			if s, err := Open(context.Background(), Config{Path: tc.path, Logger: quietLogger()}); err == nil {
				s.Close()
				t.Errorf("Open(%q) succeeded", tc.path)
			}
		})
	}
}

// TestReopenKeepsData: what one Store committed, the next one reads back.
func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "trillian.db")
	s, err := Open(ctx, Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tree := createTree(ctx, t, s, stestonly.LogTree, true)
	leaves := testLeaves("keep", 0, 40)
	if _, err := s.LogStorage().QueueLeaves(ctx, tree, cloneLeaves(leaves), time.Now()); err != nil {
		t.Fatalf("QueueLeaves: %v", err)
	}
	integrate(ctx, t, s, tree, 30)
	before := latestRoot(ctx, t, s, tree)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openAt(t, path)
	after := latestRoot(ctx, t, s, tree)
	if after.TreeSize != 30 || !bytes.Equal(after.RootHash, before.RootHash) {
		t.Errorf("after reopen: size %d root %x, want 30 and %x", after.TreeSize, after.RootHash, before.RootHash)
	}
	integrate(ctx, t, s, tree, 30)
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != 40 {
		t.Errorf("queued leaves lost across reopen: size %d, want 40", r.TreeSize)
	}
	got, err := storage.GetTree(ctx, s.AdminStorage(), tree.TreeId)
	if err != nil || got.DisplayName != tree.DisplayName {
		t.Errorf("GetTree after reopen = %v, %v", got, err)
	}
}

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawExec runs statements on the file without going through Store.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestSchemaChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	newer := filepath.Join(dir, "newer.db")
	s, err := Open(ctx, Config{Path: newer, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rawExec(t, newer, "PRAGMA user_version = 99")

	foreign := filepath.Join(dir, "foreign.db")
	rawExec(t, foreign, "CREATE TABLE t(x)")

	tests := []struct {
		desc, path, want string
	}{
		{"newer schema", newer, "newer"},
		{"foreign database", foreign, "not a sigsumd store"},
	}
	for _, tc := range tests {
		_, err := Open(ctx, Config{Path: tc.path, Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open = %v, want an error containing %q", tc.desc, err, tc.want)
		}
		// A refused open must not keep the lock.
		if l, err := lockfile.Acquire(tc.path + ".lock"); err != nil {
			t.Errorf("%s: lock still held after a refused Open: %v", tc.desc, err)
		} else {
			l.Release()
		}
	}
}

// TestConnectionSettings checks the durability settings of the writer and
// that the readers cannot write.
func TestConnectionSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	var mode string
	var syncMode int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := s.writer.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil || syncMode != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", syncMode, err)
	}
	if st := s.writer.Stats(); st.MaxOpenConnections != 1 {
		t.Errorf("writer pool allows %d connections, want 1", st.MaxOpenConnections)
	}
	if _, err := s.reader.ExecContext(ctx, "DELETE FROM Trees"); err == nil {
		t.Error("a reader connection could write")
	}
}

// TestSnapshotDoesNotBlockWriter holds a read snapshot open while the writer
// queues and integrates: the writer is not blocked and the snapshot keeps
// seeing the old state.
func TestSnapshotDoesNotBlockWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)

	snap, err := s.LogStorage().SnapshotForTree(ctx, tree)
	if err != nil {
		t.Fatalf("SnapshotForTree: %v", err)
	}
	defer snap.Close()

	done := make(chan error, 1)
	go func() {
		if _, err := s.LogStorage().QueueLeaves(ctx, tree, testLeaves("w", 0, 10), time.Now()); err != nil {
			done <- err
			return
		}
		log.InitMetrics(nil)
		_, err := log.IntegrateBatch(ctx, tree, 100, 0, 0, clock.System, s.LogStorage(), quota.Noop())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writing while a snapshot is open: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writer blocked by an open snapshot")
	}
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != 10 {
		t.Errorf("new snapshot sees size %d, want 10", r.TreeSize)
	}
	var n int64
	if err := snap.(*logTX).tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM SequencedLeafData").Scan(&n); err != nil || n != 0 {
		t.Errorf("old snapshot sees %d sequenced leaves (%v), want 0", n, err)
	}
}

func TestClosedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "trillian.db"), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tree := createTree(ctx, t, s, stestonly.LogTree, true)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checks := []struct {
		desc string
		err  error
	}{
		{"QueueLeaves", func() error {
			_, err := s.LogStorage().QueueLeaves(ctx, tree, testLeaves("c", 0, 1), time.Now())
			return err
		}()},
		{"SnapshotForTree", func() error { _, err := s.LogStorage().SnapshotForTree(ctx, tree); return err }()},
		{"ReadWriteTransaction", s.LogStorage().ReadWriteTransaction(ctx, tree, func(context.Context, storage.LogTreeTX) error { return nil })},
		{"admin Snapshot", func() error { _, err := s.AdminStorage().Snapshot(ctx); return err }()},
		{"GetActiveLogIDs", func() error { _, err := s.LogStorage().GetActiveLogIDs(ctx); return err }()},
		{"PendingSequencedLeaves", func() error { _, err := s.PendingSequencedLeaves(ctx, tree.TreeId); return err }()},
		{"CheckDatabaseAccessible", s.AdminStorage().CheckDatabaseAccessible(ctx)},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.desc, c.err)
		}
	}
}

func TestPendingSequencedLeavesUnknownTree(t *testing.T) {
	t.Parallel()
	s := openTestStore(t)
	if _, err := s.PendingSequencedLeaves(context.Background(), 12345); err == nil {
		t.Error("PendingSequencedLeaves of an unknown tree succeeded")
	}
	// A tree without a root has nothing integrated: every stored leaf is pending.
	ctx := context.Background()
	tree := createTree(ctx, t, s, stestonly.PreorderedLogTree, false)
	if n, err := s.PendingSequencedLeaves(ctx, tree.TreeId); err != nil || n != 0 {
		t.Errorf("PendingSequencedLeaves of an empty uninitialised tree = %d, %v", n, err)
	}
}

// TestMigrateV1: a version 1 store opens at the current version: its Merkle hash index becomes partial (v2), LeafData
// learns every sequenced leaf's index and the identity hash index of SequencedLeafData goes (v3), LeafData is
// indexed by leaf index (v4), and its leaves are still found by Merkle leaf hash, whether that hash is their
// identity hash or not, by identity hash, and by range.
func TestMigrateV1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.db")
	same, other, id := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	stmts := append([]string{}, schemaV1...)
	stmts = append(stmts,
		fmt.Sprintf("PRAGMA application_id = %d", applicationID), "PRAGMA user_version = 1",
		fmt.Sprintf(`INSERT INTO LeafData VALUES(7, x'%x', x'%x', x'aa', NULL, 1), (7, x'%x', x'%x', x'bb', NULL, 1)`,
			same, same, id, other),
		fmt.Sprintf(`INSERT INTO SequencedLeafData VALUES(7, 0, x'%x', x'%x', 2), (7, 1, x'%x', x'%x', 2)`,
			same, same, id, other))
	rawExec(t, path, stmts...)

	s, err := Open(context.Background(), Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open of a v1 store: %v", err)
	}
	defer s.Close()
	if v := count(t, s, "PRAGMA user_version"); v != schemaVersion {
		t.Errorf("user_version %d after open, want %d", v, schemaVersion)
	}
	var def string
	if err := s.reader.QueryRow("SELECT sql FROM sqlite_schema WHERE name = 'SequencedLeafMerkleIdx'").Scan(&def); err != nil ||
		!strings.Contains(def, "WHERE MerkleLeafHash <> LeafIdentityHash") {
		t.Errorf("SequencedLeafMerkleIdx = %q, %v; want the partial index", def, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'SequencedLeafIdentityIdx'"); n != 0 {
		t.Error("SequencedLeafIdentityIdx still exists")
	}
	if got := queryLeafIndices(t, s, selectLeavesByRangeSQL, 7, 0, 10); len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("by range 0..10: indices %v, want [0 1]", got)
	}
	for _, c := range []struct {
		id    []byte
		index int64
	}{{same, 0}, {id, 1}} {
		leaf, err := readExisting(context.Background(), mustPrepare(t, s, selectExistingLeafSQL), 7, c.id)
		if err != nil || leaf.LeafIndex != c.index {
			t.Errorf("by identity hash %x: %v, %v; want index %d", c.id[:2], leaf, err, c.index)
		}
	}
	for _, c := range []struct {
		hash  []byte
		index int64
	}{{same, 0}, {other, 1}} {
		if got := queryLeafIndices(t, s, selectLeavesByMerkleHash(1), 7, c.hash, 7, c.hash); len(got) != 1 || got[0] != c.index {
			t.Errorf("by Merkle hash %x: leaves at %v; want one at %d", c.hash[:2], got, c.index)
		}
	}
}

// queryLeafIndices runs a query of sequenced leaves on a reader and returns their indices.
func queryLeafIndices(t *testing.T, s *Store, query string, args ...any) []int64 {
	t.Helper()
	rows, err := s.reader.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int64
	for rows.Next() {
		leaf, err := scanSequencedLeaf(rows)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, leaf.LeafIndex)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func mustPrepare(t *testing.T, s *Store, query string) *sql.Stmt {
	t.Helper()
	stmt, err := s.reader.Prepare(query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stmt.Close() })
	return stmt
}

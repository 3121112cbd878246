// Package sqlitestore is a Trillian storage provider on SQLite (modernc.org/sqlite,
// pure Go). It implements storage.LogStorage, storage.AdminStorage and
// storage.Provider with the semantics of Trillian's MySQL provider, so that an
// embedded Trillian can run on a single durable file with no external service.
//
// Durability and concurrency model:
//   - The database runs in WAL mode with synchronous=FULL: a transaction that has
//     committed survives a crash of the process or of the machine.
//   - Exactly one writer connection exists. Every write transaction (sequencer
//     passes, admin updates, AddSequencedLeaves, queueing) is serialised on it,
//     so SQLite never has to arbitrate between writers.
//   - Reads (snapshots) run on a separate pool of read-only connections; in WAL
//     mode they see a consistent snapshot and never block the writer.
//   - Concurrent QueueLeaves calls are grouped into one write transaction (one
//     fsync for many callers), see queue.go.
//   - An exclusive flock on "<path>.lock" keeps a second process from opening
//     the same store; the kernel releases it when the holder dies.
//
// Because there is a single writer connection, code running inside a
// ReadWriteTransaction callback (log or admin) must not start another write
// (QueueLeaves, AddSequencedLeaves, another ReadWriteTransaction) on the same
// Store: it would wait for the connection it is holding. Trillian's servers and
// sequencer never do; reads (snapshots) inside a callback are fine.
//
// Usage:
//
//	st, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: "/var/lib/sigsumd/trillian.db"})
//	if err != nil { ... }
//	defer st.Close()
//	reg := extension.Registry{
//		AdminStorage: st.AdminStorage(),
//		LogStorage:   st.LogStorage(),
//		QuotaManager: quota.Noop(),
//	}
//
// No metrics are exported; Trillian's own server and sequencer metrics cover
// the operations.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/trillian/storage"

	// The pure Go SQLite driver, registered as "sqlite".
	_ "modernc.org/sqlite"

	"github.com/sigsumd/sigsumd/internal/lockfile"
)

// ErrClosed is returned by operations on a Store after Close.
var ErrClosed = errors.New("sqlitestore: store is closed")

// Defaults for the zero values of Config.
const (
	DefaultReadConns     = 8
	DefaultBusyTimeout   = 10 * time.Second
	DefaultMaxQueueBatch = 4096
)

// Config configures a Store.
type Config struct {
	// Path is the SQLite database file. It is created, with its schema, if it
	// does not exist. The lock file is Path + ".lock"; SQLite itself also
	// creates Path + "-wal" and Path + "-shm".
	Path string
	// ReadConns is the size of the read-only connection pool (default
	// DefaultReadConns).
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection of this store before failing (default DefaultBusyTimeout). With
	// one writer and WAL this is only reached during checkpoints.
	BusyTimeout time.Duration
	// MaxQueueBatch caps the number of leaves grouped into one QueueLeaves
	// write transaction (default DefaultMaxQueueBatch). A single call larger
	// than this is still committed in one transaction.
	MaxQueueBatch int
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Store is a Trillian storage provider on one SQLite file. It implements
// storage.Provider. Use LogStorage and AdminStorage to get the Trillian
// interfaces; all of them share the store's connections. Close it when done.
type Store struct {
	path   string
	logger *slog.Logger
	writer *sql.DB // exactly one connection: all writes are serialised here
	reader *sql.DB // read-only pool for snapshots
	// writeStmts (the queue's) and readStmts (those of read-only transactions) are prepared once, keyed by their
	// SQL text: SQLite compiles a statement in about the time a short read takes, and every snapshot runs two or
	// three. A transaction takes one with Tx.StmtContext, which prepares it on the transaction's connection the
	// first time and keeps it.
	writeStmts, readStmts map[string]*sql.Stmt
	// lastRoot is the root a transaction read last, with its encoding (see fetchLatestRoot).
	lastRoot atomic.Pointer[encodedRoot]
	lock     *lockfile.Lock
	queue    *queuer

	logStorage   *logStorage
	seqStorage   *logStorage
	adminStorage *adminStorage

	// bulkStores and bulkConflicts count AddSequencedLeaves batches stored by addSequencedInBulk, and those it gave
	// back to the leaf-by-leaf path after writing (tests use them to see which path a batch took).
	bulkStores, bulkConflicts atomic.Int64

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

var _ storage.Provider = (*Store)(nil)

// Open opens (creating if needed) the store at cfg.Path. It takes the store's
// exclusive lock, so a second Open of the same path, in this process or
// another, fails with an error wrapping ErrLocked that names the holder's PID.
// A store whose schema is newer than this binary understands is refused.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlitestore: Config.Path is empty")
	}
	if strings.ContainsAny(cfg.Path, "?#") {
		return nil, fmt.Errorf("sqlitestore: path %q must not contain '?' or '#'", cfg.Path)
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = DefaultReadConns
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.MaxQueueBatch <= 0 {
		cfg.MaxQueueBatch = DefaultMaxQueueBatch
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: resolving %q: %w", cfg.Path, err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("sqlitestore: directory of the store: %w", err)
		}
	}

	// The lock comes first: nothing may touch the database files while another
	// process owns them.
	lock, err := lockfile.Acquire(path + ".lock")
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, logger: logger, lock: lock, closed: make(chan struct{})}
	fail := func(err error) (*Store, error) {
		s.closeDBs()
		if lerr := s.lock.Release(); lerr != nil {
			err = errors.Join(err, lerr)
		}
		return nil, err
	}

	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)
	wq := url.Values{}
	wq.Set("_busy_timeout", busy)
	wq.Set("_journal_mode", "WAL")
	wq.Set("_synchronous", "FULL")
	// IMMEDIATE takes the write lock at BEGIN, so a write transaction never
	// fails half-way on a lock upgrade.
	wq.Set("_txlock", "immediate")
	wq.Add("_pragma", "foreign_keys(0)")
	// A page cache of 16 MiB of pages, which takes 32 MiB of memory: the pure-Go SQLite allocates each cached
	// 4 KiB page with its header in an 8 KiB slot. Twice as many pages made neither a catch-up of 10^6 leaves nor
	// add-leaf faster, and cost a secondary a third of its memory.
	wq.Add("_pragma", "cache_size(-16384)")
	// Statement journals in memory: a statement that writes many rows (addSequencedInBulk) journals each page it
	// changes, so that it can be undone alone; SQLite keeps the first 64 KiB of that in memory and writes the rest
	// to a temporary file. One such statement changes at most a few hundred pages, so memory bounds it well.
	wq.Add("_pragma", "temp_store(2)")
	s.writer, err = sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return fail(fmt.Errorf("sqlitestore: opening writer: %w", err))
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetMaxIdleConns(1)
	s.writer.SetConnMaxLifetime(0)
	s.writer.SetConnMaxIdleTime(0)

	if err := checkJournalMode(ctx, s.writer); err != nil {
		return fail(err)
	}
	if err := ensureSchema(ctx, s.writer, s.logger); err != nil {
		return fail(err)
	}

	rq := url.Values{}
	rq.Set("_busy_timeout", busy)
	rq.Set("_query_only", "1")
	// Readers keep a small private cache (1 MiB of pages each, 2 MiB of memory,
	// as for the writer): what they read is in the operating system's page
	// cache anyway, and proofs and recent leaves are served from memory above
	// this store, so a larger cache per connection only adds to the process's
	// size without making reads faster (these and the writer's cache twice as
	// large took 47 MB more on a primary of 10^6 leaves after a scan of its
	// leaves, for the same proofs per second).
	rq.Add("_pragma", "cache_size(-1024)")
	s.reader, err = sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		return fail(fmt.Errorf("sqlitestore: opening readers: %w", err))
	}
	s.reader.SetMaxOpenConns(cfg.ReadConns)
	s.reader.SetMaxIdleConns(cfg.ReadConns)
	if err := s.reader.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlitestore: connecting reader: %w", err))
	}
	if s.writeStmts, err = prepareStmts(ctx, s.writer,
		selectHasRootSQL, insertLeafDataSQL, insertQueuedLeafSQL, selectExistingLeafSQL); err != nil {
		return fail(err)
	}
	if s.readStmts, err = prepareStmts(ctx, s.reader,
		selectLatestRootSQL, selectLeavesByRangeSQL, selectIntegratedLeafHashesSQL, selectIntegratedLeafValuesSQL,
		selectLeafIndexByHashSQL, selectLeavesByMerkleHash(1)); err != nil {
		return fail(err)
	}

	s.logStorage = &logStorage{s: s}
	s.seqStorage = &logStorage{s: s, sequencer: true}
	s.adminStorage = &adminStorage{s: s}
	s.queue = newQueuer(s, cfg.MaxQueueBatch)
	go s.queue.run()
	return s, nil
}

// prepareStmts prepares queries on db, which must have a connection free (the writer's only one is, outside a
// transaction), and returns them by SQL text.
func prepareStmts(ctx context.Context, db *sql.DB, queries ...string) (map[string]*sql.Stmt, error) {
	stmts := make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			closeStmts(stmts)
			return nil, fmt.Errorf("sqlitestore: preparing statement: %w", err)
		}
		stmts[q] = st
	}
	return stmts, nil
}

func closeStmts(stmts map[string]*sql.Stmt) error {
	var errs []error
	for _, st := range stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

func checkJournalMode(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlitestore: reading journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlitestore: journal mode is %q, want wal (is the file on a filesystem without shared memory support?)", mode)
	}
	var syncMode int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("sqlitestore: reading synchronous: %w", err)
	}
	if syncMode < 2 {
		return fmt.Errorf("sqlitestore: synchronous is %d, want FULL (2)", syncMode)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// LogStorage returns the store's storage.LogStorage.
func (s *Store) LogStorage() storage.LogStorage { return s.logStorage }

// SequencerLogStorage returns the storage for Trillian's sequencer alone. It differs from LogStorage in one way:
// DequeueLeaves of a PREORDERED_LOG tree returns each leaf's index and hashes only (see sequencedHashes), which is
// all the sequencer reads.
func (s *Store) SequencerLogStorage() storage.LogStorage { return s.seqStorage }

// AdminStorage returns the store's storage.AdminStorage.
func (s *Store) AdminStorage() storage.AdminStorage { return s.adminStorage }

// Close finishes the queue requests already submitted, checkpoints the WAL,
// closes all connections and releases the lock. It is safe to call more than
// once; later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.queue.stopAndWait()
		var errs []error
		// A truncating checkpoint leaves a compact main file behind. It is an
		// optimisation only: the WAL is durable either way.
		if _, err := s.writer.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			s.logger.Warn("sqlitestore: checkpoint on close failed", "path", s.path, "err", err)
		}
		errs = append(errs, s.closeDBs())
		errs = append(errs, s.lock.Release())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Store) closeDBs() error {
	errs := []error{closeStmts(s.readStmts), closeStmts(s.writeStmts)}
	if s.reader != nil {
		if err := s.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlitestore: closing readers: %w", err))
		}
	}
	if s.writer != nil {
		if err := s.writer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlitestore: closing writer: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// PendingSequencedLeaves reports how many sequenced leaves are stored for the
// tree at an index at or above its integrated tree size (the size of its latest
// log root; 0 if it has none). For a PREORDERED_LOG tree these are leaves
// written by AddSequencedLeaves that the sequencer has not integrated yet.
//
// Promotion of a PREORDERED_LOG tree to LOG must only happen when this is 0:
// the LOG sequencer would otherwise try to assign the indices of those leaves
// again and fail on every pass. The count and the tree size come from one
// consistent snapshot.
func (s *Store) PendingSequencedLeaves(ctx context.Context, treeID int64) (int64, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: begin snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var exists int
	switch err := tx.QueryRowContext(ctx, "SELECT 1 FROM Trees WHERE TreeId = ?", treeID).Scan(&exists); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("sqlitestore: tree %d not found", treeID)
	case err != nil:
		return 0, fmt.Errorf("sqlitestore: looking up tree %d: %w", treeID, err)
	}
	var size int64
	err = tx.QueryRowContext(ctx, selectLatestRootSQL, treeID).Scan(new(int64), &size, new([]byte), new(int64))
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlitestore: reading root of tree %d: %w", treeID, err)
	}
	var n int64
	if err := tx.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM SequencedLeafData WHERE TreeId = ? AND SequenceNumber >= ?",
		treeID, size).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlitestore: counting sequenced leaves of tree %d: %w", treeID, err)
	}
	return n, nil
}

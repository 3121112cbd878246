// Package engine reaches the Trillian engine a node runs on, embedded in the process or external over gRPC, and
// gives the roles a narrow view of one tree (Log) in Sigsum terms.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/extension"
	tlog "github.com/google/trillian/log"
	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/server"
	"github.com/google/trillian/server/admin"
	"github.com/google/trillian/server/interceptor"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/memory"
	"github.com/google/trillian/util/clock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/sigsumd/sigsumd/internal/sqlitestore"
)

// Defaults for EmbeddedConfig fields left zero.
const (
	DefaultSequencerInterval = 50 * time.Millisecond
	DefaultBatchSize         = 1000
	// guardWindow is how old a queued leaf must be before the sequencer takes it. Zero: a node has one sequencer
	// per store, so there is no racing writer to wait for.
	guardWindow = 0
)

// Engine is a reachable Trillian: its log and admin APIs, embedded or external.
type Engine struct {
	Log   trillian.TrillianLogClient
	Admin trillian.TrillianAdminClient

	pending func(ctx context.Context, treeID int64) (int64, error)
	closers []func() error
	// growth announces when a tree may have grown: the embedded engine's commits, polling for an external one.
	growth growthSignal
	// storeBatch is the most leaves one AddSequencedLeaves should carry (Log.MaxStoreBatch).
	storeBatch int
	// embedded opens the trees of an embedded engine; an external one has none (its trees are remoteLog).
	embedded *embeddedTrees
}

// embeddedTrees is what an embedded engine's trees share: its storage and commit announcements.
type embeddedTrees struct {
	storage storage.LogStorage
	changes *changes
	// leafHashes is the storage's own reader of leaf hashes; nil when it has none (nodeHashes reads them).
	leafHashes leafHashReader
	// leafIndex is the storage's own finder of a leaf's index; nil when it has none (a snapshot finds it).
	leafIndex leafIndexReader
	// leafValues is the storage's own reader of leaves by range; nil when it has none (a snapshot reads them).
	leafValues leafValueReader
}

// EmbeddedConfig configures an in-process Trillian.
type EmbeddedConfig struct {
	// Storage selects the store (ParseStorage): SQLite, MariaDB/MySQL (go-sql-driver DSN), PostgreSQL,
	// CockroachDB (binaries built with -tags crdb), or memory (tests of a primary only). A SQL database gets
	// Trillian's schema on first use, and is locked against a second sigsumd while the engine runs: one node per
	// database.
	Storage Storage
	// SequencerInterval is the time between sequencer passes (default DefaultSequencerInterval).
	SequencerInterval time.Duration
	// NoSequencer runs no sequencer: stored leaves stay pending until an engine with one opens the store. Tests use
	// it to hold the state a node killed between storing and integrating leaves leaves behind, without racing the
	// sequencer's first pass.
	NoSequencer bool
	// BatchSize is the most leaves one sequencer pass integrates per tree (default DefaultBatchSize).
	BatchSize int
	// MetricFactory receives Trillian's metrics; nil means none.
	MetricFactory monitoring.MetricFactory
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// StartEmbedded opens the storage and runs Trillian's log server, admin server and sequencer in this process,
// reached over an in-memory gRPC connection. Close stops them and closes the storage.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Engine, error) {
	if cfg.SequencerInterval <= 0 {
		cfg.SequencerInterval = DefaultSequencerInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MetricFactory == nil {
		cfg.MetricFactory = monitoring.InertMetricFactory{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{}
	trees := &embeddedTrees{}
	reg := extension.Registry{QuotaManager: quota.Noop(), MetricFactory: cfg.MetricFactory}
	// seqStorage, when set, is the storage the sequencer gets instead of reg.LogStorage.
	var seqStorage storage.LogStorage
	switch cfg.Storage.Scheme {
	case StorageSQLite:
		if cfg.Storage.Target == "" {
			return nil, errors.New("storage sqlite: needs a path, e.g. sqlite:/var/lib/sigsumd/trillian.db")
		}
		st, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: cfg.Storage.Target, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("opening storage: %w", err)
		}
		reg.LogStorage, reg.AdminStorage = st.LogStorage(), st.AdminStorage()
		seqStorage = st.SequencerLogStorage()
		trees.leafHashes, trees.leafIndex, trees.leafValues = st, st, st
		e.storeBatch = maxStoreSQLite
		e.pending = st.PendingSequencedLeaves
		e.closers = append(e.closers, st.Close)
	case StorageMemory:
		ts := memory.NewTreeStorage()
		reg.LogStorage = cloningQueue{memory.NewLogStorage(ts, cfg.MetricFactory)}
		reg.AdminStorage = memory.NewAdminStorage(ts)
	default:
		st, err := openSQLStore(ctx, cfg.Storage, cfg.MetricFactory, sqlOptions{lock: true, migrate: true}, cfg.Logger)
		if err != nil {
			return nil, err
		}
		reg.LogStorage, reg.AdminStorage = st.log, st.admin
		e.pending = st.pending
		e.closers = append(e.closers, st.close)
	}

	trees.changes = newChanges()
	reg.LogStorage = notifyingStorage{LogStorage: reg.LogStorage, changes: trees.changes}
	trees.storage = reg.LogStorage
	e.embedded, e.growth = trees, trees.changes
	seqReg := reg
	if seqStorage != nil {
		seqReg.LogStorage = notifyingStorage{LogStorage: seqStorage, changes: trees.changes}
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(interceptor.ErrorWrapper))
	trillian.RegisterTrillianAdminServer(gs, admin.New(reg, nil))
	trillian.RegisterTrillianLogServer(gs, server.NewTrillianLogRPCServer(reg, clock.System))
	lis := bufconn.Listen(1 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) { // stopped: closed before it began
			cfg.Logger.Error("embedded trillian gRPC server stopped", "err", err)
		}
	}()

	seqCtx, stopSeq := context.WithCancel(context.Background())
	passes := &fullPasses{op: tlog.NewSequencerManager(seqReg, guardWindow)}
	om := tlog.NewOperationManager(tlog.OperationInfo{
		Registry:    seqReg,
		BatchSize:   cfg.BatchSize,
		NumWorkers:  1,
		RunInterval: cfg.SequencerInterval,
		TimeSource:  clock.System,
	}, passes)
	if !cfg.NoSequencer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSequencer(seqCtx, om, passes, cfg.SequencerInterval)
		}()
	}

	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stopSeq()
		gs.Stop()
		wg.Wait()
		e.close()
		return nil, fmt.Errorf("connecting to embedded trillian: %w", err)
	}
	// Stop order: clients first, then the sequencer and server, then the storage they use.
	e.closers = append([]func() error{func() error {
		err := cc.Close()
		stopSeq()
		gs.GracefulStop()
		wg.Wait()
		return err
	}}, e.closers...)
	e.Log, e.Admin = trillian.NewTrillianLogClient(cc), trillian.NewTrillianAdminClient(cc)
	return e, nil
}

// cloningQueue gives Trillian's memory storage copies of queued leaves: it keeps the very leaf objects it is given,
// which the log server then marshals into its response while the sequencer writes indices into them (a data race).
type cloningQueue struct{ storage.LogStorage }

func (c cloningQueue) QueueLeaves(ctx context.Context, tree *trillian.Tree, leaves []*trillian.LogLeaf, ts time.Time) ([]*trillian.QueuedLogLeaf, error) {
	copies := make([]*trillian.LogLeaf, len(leaves))
	for i, l := range leaves {
		copies[i] = proto.Clone(l).(*trillian.LogLeaf)
	}
	ret, err := c.LogStorage.QueueLeaves(ctx, tree, copies, ts)
	for i, r := range ret {
		if i < len(leaves) && r.GetLeaf() == copies[i] {
			r.Leaf = leaves[i] // the response must not share the stored copy either
		}
	}
	return ret, err
}

// DialExternal connects to an external Trillian log server (trillian_log_server) at addr (host:port). Its trees
// are integrated by the operator's trillian_log_signer, which a secondary's PREORDERED_LOG tree needs too.
func DialExternal(addr string) (*Engine, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to trillian at %s: %w", addr, err)
	}
	return &Engine{
		Log:     trillian.NewTrillianLogClient(cc),
		Admin:   trillian.NewTrillianAdminClient(cc),
		closers: []func() error{cc.Close},
		growth:  polling{pollInterval},
	}, nil
}

// openSQLStore opens the SQL database a storage names.
func openSQLStore(ctx context.Context, st Storage, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error) {
	if b, ok := sqlBackends[st.Scheme]; ok {
		return b.open(ctx, st.Target, mf, opt, logger)
	}
	return nil, unsupportedStorage(ErrUnsupportedStorage, st.Scheme)
}

// AttachStorage gives an engine reached over gRPC (DialExternal) read access to its Trillian's database, given
// as mysql:<dsn>, postgresql:<uri> or crdb:<uri>, so that it can answer PendingSequencedLeaves (which sigsumctl
// promote needs). The schema is checked, never changed, and no lock is taken: the external Trillian keeps the
// database.
func (e *Engine) AttachStorage(ctx context.Context, storage Storage) error {
	if e.pending != nil {
		return errors.New("engine already has a storage")
	}
	st, err := openSQLStore(ctx, storage, monitoring.InertMetricFactory{}, sqlOptions{}, slog.Default())
	if err != nil {
		return err
	}
	e.pending = st.pending
	// Closed before the gRPC connection: the order does not matter for a read-only pool.
	e.closers = append([]func() error{st.close}, e.closers...)
	return nil
}

// ErrUnsupported is returned for a question the engine cannot answer (for example on external Trillian).
var ErrUnsupported = errors.New("not supported by this trillian engine")

// PendingSequencedLeaves counts leaves stored in a PREORDERED_LOG tree but not yet integrated (at an index at or
// above the integrated size). Embedded SQL stores (SQLite, MySQL, PostgreSQL, CockroachDB) answer it; an external
// Trillian only after AttachStorage; the memory store never (ErrUnsupported).
func (e *Engine) PendingSequencedLeaves(ctx context.Context, treeID int64) (int64, error) {
	if e.pending == nil {
		return 0, ErrUnsupported
	}
	return e.pending(ctx, treeID)
}

// Close releases the engine: the connection, and for an embedded one the sequencer, servers and storage.
func (e *Engine) Close() error { return e.close() }

func (e *Engine) close() error {
	var errs []error
	for _, c := range e.closers {
		errs = append(errs, c())
	}
	e.closers = nil
	return errors.Join(errs...)
}

// fullPasses is the sequencer's operation, recording whether a pass integrated a full batch for some tree.
type fullPasses struct {
	op   tlog.Operation
	full atomic.Bool
}

func (p *fullPasses) ExecutePass(ctx context.Context, logID int64, info *tlog.OperationInfo) (int, error) {
	n, err := p.op.ExecutePass(ctx, logID, info)
	if err == nil && n >= info.BatchSize {
		p.full.Store(true)
	}
	return n, err
}

// runSequencer runs sequencer passes until ctx is done: one every interval, and the next at once after a pass that
// integrated a full batch, which means more is waiting (a secondary catching up, a burst of submissions). Trillian's
// own loop waits out the interval after every pass; a secondary storing 64k leaves at a time, integrated 8k a pass,
// spent a third longer waiting for integration. There is no election to run: the embedded engine owns its trees.
// passGrace bounds how long a sequencer pass under way may go on after the engine is closed.
const passGrace = 5 * time.Second

// pass runs one sequencer pass, to its end even when ctx is cancelled meanwhile (a pass takes milliseconds; one on
// storage that hangs is cut passGrace later): cancelled midway, Trillian logs errors about the cancelled context
// that tell an operator nothing about a clean shutdown.
func pass(ctx context.Context, om *tlog.OperationManager) {
	passCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(passGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-passCtx.Done():
		}
	})
	defer stop()
	om.OperationSingle(passCtx)
}

func runSequencer(ctx context.Context, om *tlog.OperationManager, passes *fullPasses, interval time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		start := time.Now()
		passes.full.Store(false)
		pass(ctx, om)
		if ctx.Err() != nil {
			return
		}
		if passes.full.Load() {
			continue
		}
		t.Reset(interval - time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

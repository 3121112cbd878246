// Package trillian reaches the Trillian engine a node runs on, embedded in the process or external over gRPC, and
// gives the roles a narrow view of one tree (Log) in Sigsum terms.
package trillian

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tpb "github.com/google/trillian"
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
	DefaultSequencerInterval = 100 * time.Millisecond
	DefaultBatchSize         = 1000
	// guardWindow is how old a queued leaf must be before the sequencer takes it. Zero: a node has one sequencer
	// per store, so there is no racing writer to wait for.
	guardWindow = 0
)

// Engine is a reachable Trillian: its log and admin APIs, embedded or external.
type Engine struct {
	Log   tpb.TrillianLogClient
	Admin tpb.TrillianAdminClient

	pending func(ctx context.Context, treeID int64) (int64, error)
	closers []func() error
	// storage is the embedded engine's log storage, for queueing without a gRPC round trip; nil when external.
	storage storage.LogStorage
	// changes announces the embedded engine's commits; nil when external.
	changes *changes
	// storeBatch is the most leaves one AddSequencedLeaves should carry (Log.MaxStoreBatch).
	storeBatch int
}

// EmbeddedConfig configures an in-process Trillian.
type EmbeddedConfig struct {
	// Storage selects the store: "sqlite:<path>", "mysql:<dsn>" (MariaDB/MySQL, go-sql-driver DSN),
	// "postgresql:<uri>" or a "postgresql://..." URI, "crdb:<uri>" (binaries built with -tags crdb), or "memory:"
	// (tests of a primary only). A SQL database gets Trillian's schema on first use, and is locked against a
	// second sigsumd while the engine runs: one node per database.
	Storage string
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
	reg := extension.Registry{QuotaManager: quota.Noop(), MetricFactory: cfg.MetricFactory}
	// seqStorage, when set, is the storage the sequencer gets instead of reg.LogStorage.
	var seqStorage storage.LogStorage
	scheme, rest, _ := strings.Cut(cfg.Storage, ":")
	switch scheme {
	case "sqlite":
		if rest == "" {
			return nil, errors.New("storage sqlite: needs a path, e.g. sqlite:/var/lib/sigsumd/trillian.db")
		}
		st, err := sqlitestore.Open(ctx, sqlitestore.Config{Path: rest, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("opening storage: %w", err)
		}
		reg.LogStorage, reg.AdminStorage = st.LogStorage(), st.AdminStorage()
		seqStorage = st.SequencerLogStorage()
		e.storeBatch = maxStoreSQLite
		e.pending = st.PendingSequencedLeaves
		e.closers = append(e.closers, st.Close)
	case "memory":
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

	e.changes = newChanges()
	reg.LogStorage = notifyingStorage{LogStorage: reg.LogStorage, changes: e.changes}
	e.storage = reg.LogStorage
	seqReg := reg
	if seqStorage != nil {
		seqReg.LogStorage = notifyingStorage{LogStorage: seqStorage, changes: e.changes}
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(interceptor.ErrorWrapper))
	tpb.RegisterTrillianAdminServer(gs, admin.New(reg, nil))
	tpb.RegisterTrillianLogServer(gs, server.NewTrillianLogRPCServer(reg, clock.System))
	lis := bufconn.Listen(1 << 20)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(lis); err != nil {
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
	e.Log, e.Admin = tpb.NewTrillianLogClient(cc), tpb.NewTrillianAdminClient(cc)
	return e, nil
}

// cloningQueue gives Trillian's memory storage copies of queued leaves: it keeps the very leaf objects it is given,
// which the log server then marshals into its response while the sequencer writes indices into them (a data race).
type cloningQueue struct{ storage.LogStorage }

func (c cloningQueue) QueueLeaves(ctx context.Context, tree *tpb.Tree, leaves []*tpb.LogLeaf, ts time.Time) ([]*tpb.QueuedLogLeaf, error) {
	copies := make([]*tpb.LogLeaf, len(leaves))
	for i, l := range leaves {
		copies[i] = proto.Clone(l).(*tpb.LogLeaf)
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
		Log:     tpb.NewTrillianLogClient(cc),
		Admin:   tpb.NewTrillianAdminClient(cc),
		closers: []func() error{cc.Close},
	}, nil
}

// openSQLStore opens the SQL database a storage URI names.
func openSQLStore(ctx context.Context, uri string, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error) {
	scheme, rest, _ := strings.Cut(uri, ":")
	switch scheme {
	case "mysql":
		return openMySQL(ctx, rest, mf, opt, logger)
	case "postgresql":
		if strings.HasPrefix(rest, "//") {
			rest = uri // the URI itself: postgresql://user@host/db
		}
		return openPostgreSQL(ctx, rest, mf, opt, logger)
	case "crdb":
		return openCRDB(ctx, rest, mf, opt, logger)
	}
	return nil, fmt.Errorf("storage %q: unsupported storage (want sqlite:<path>, mysql:<dsn>, postgresql:<uri>, crdb:<uri> or memory:)", uri)
}

// AttachStorage gives an engine reached over gRPC (DialExternal) read access to its Trillian's database, given
// as mysql:<dsn>, postgresql:<uri> or crdb:<uri>, so that it can answer PendingSequencedLeaves (which sigsumctl
// promote needs). The schema is checked, never changed, and no lock is taken: the external Trillian keeps the
// database.
func (e *Engine) AttachStorage(ctx context.Context, storage string) error {
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
func runSequencer(ctx context.Context, om *tlog.OperationManager, passes *fullPasses, interval time.Duration) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		start := time.Now()
		passes.full.Store(false)
		om.OperationSingle(ctx)
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

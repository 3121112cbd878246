//go:build !nopostgresql

package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/google/trillian/monitoring"
	tpostgresql "github.com/google/trillian/storage/postgresql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgLockKey is the PostgreSQL advisory lock key sigsumd holds on its database ("sigsumd" in ASCII). Advisory
// locks are per database, so one key serves every node's database on a server.
const pgLockKey int64 = 0x73696773756d64

// openPostgreSQL opens a PostgreSQL database (a URI "postgresql://user@host:5432/dbname" or key=value DSN) as
// Trillian's storage, with Trillian's own PostgreSQL provider.
func openPostgreSQL(ctx context.Context, uri string, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error) {
	cfg, err := pgxpool.ParseConfig(uri)
	if err != nil {
		return nil, fmt.Errorf("storage postgresql: bad URI (want postgresql://user@host:port/dbname): %w", err)
	}
	dbName := cfg.ConnConfig.Database
	where := fmt.Sprintf("%s at %s:%d", dbName, cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	pool, err := tpostgresql.OpenDB(uri)
	if err != nil {
		return nil, fmt.Errorf("storage postgresql: opening %s: %w", where, err)
	}
	sdb := stdlib.OpenDBFromPool(pool)
	st := &sqlStore{close: func() error {
		err := sdb.Close()
		pool.Close()
		return err
	}}
	fail := func(err error) (*sqlStore, error) {
		st.close()
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		return fail(fmt.Errorf("storage postgresql: connecting to %s: %w", where, err))
	}
	if opt.lock {
		release, err := lockPostgreSQL(ctx, cfg.ConnConfig, dbName)
		if err != nil {
			return fail(err)
		}
		closeDB := st.close
		st.close = func() error { return errors.Join(release(), closeDB()) }
	}
	if err := ensurePostgreSQLSchema(ctx, pool, dbName, opt.migrate, logger); err != nil {
		return fail(fmt.Errorf("storage postgresql: %w", err))
	}
	st.log, st.admin = tpostgresql.NewLogStorage(pool, mf), tpostgresql.NewAdminStorage(pool)
	st.pending = func(ctx context.Context, treeID int64) (int64, error) {
		tx, err := sdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
		if err != nil {
			return 0, fmt.Errorf("storage postgresql: begin snapshot: %w", err)
		}
		defer tx.Rollback()
		n, err := pendingSQL(ctx, tx, treeID, func(n int) string { return "$" + strconv.Itoa(n) })
		if err != nil {
			return 0, fmt.Errorf("storage postgresql: %w", err)
		}
		return n, nil
	}
	return st, nil
}

// lockPostgreSQL takes sigsumd's advisory lock on the database, on a connection outside the pool, so that a
// second sigsumd (or sigsumctl) cannot run a second sequencer over the same trees. The server releases it when
// the connection ends, also when the process dies.
func lockPostgreSQL(ctx context.Context, cc *pgx.ConnConfig, dbName string) (func() error, error) {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return nil, fmt.Errorf("storage postgresql: connection for the node lock: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", pgLockKey).Scan(&got); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("storage postgresql: taking the node lock: %w", err)
	}
	if !got {
		conn.Close(ctx)
		var pid sql.NullInt64
		_ = pgxQueryPID(ctx, cc, &pid)
		return nil, fmt.Errorf("storage postgresql: database %s is in use by another sigsumd (advisory lock %d held by backend pid %d): one node per database",
			dbName, pgLockKey, pid.Int64)
	}
	return func() error { return conn.Close(context.Background()) }, nil
}

// pgxQueryPID finds the backend holding sigsumd's advisory lock, for the error message.
func pgxQueryPID(ctx context.Context, cc *pgx.ConnConfig, pid *sql.NullInt64) error {
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1`, pgLockKey).Scan(pid)
}

// pgFunctions are the PL/pgSQL functions of Trillian's PostgreSQL schema that its provider calls.
var pgFunctions = []string{"queue_leaves", "add_sequenced_leaves"}

// ensurePostgreSQLSchema checks that the database holds Trillian's PostgreSQL schema, and applies it (in one
// transaction) when the database has none of its tables and migrate is set.
func ensurePostgreSQLSchema(ctx context.Context, pool *pgxpool.Pool, dbName string, migrate bool, logger *slog.Logger) error {
	rows, err := pool.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		return fmt.Errorf("listing the tables of %s: %w", dbName, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("listing the tables of %s: %w", dbName, err)
	}
	state := classifyTables(tables)
	schema := schemaSQL("postgresql.sql")
	switch {
	case len(state.present) == 0 && len(state.others) > 0:
		return refuseForeign(dbName, state)
	case len(state.present) == 0 && !migrate:
		return fmt.Errorf("database %s has no Trillian schema: apply Trillian's storage/postgresql/schema/storage.sql (the node does so itself on start)", dbName)
	case len(state.present) == 0:
		logger.Info("applying Trillian's PostgreSQL schema", "database", dbName)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, stmt := range splitStatements(schema) {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%.60s...: %w", stmt, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("applying Trillian's schema to %s: %w", dbName, err)
		}
	case !state.complete():
		return fmt.Errorf("database %s has some of Trillian's tables but lacks %s: not a Trillian log database sigsumd can complete",
			dbName, strings.Join(state.missing(), ", "))
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT COUNT(DISTINCT proname) FROM pg_proc WHERE proname = ANY($1)", pgFunctions).Scan(&n); err != nil {
		return fmt.Errorf("looking up Trillian's functions in %s: %w", dbName, err)
	}
	if n != len(pgFunctions) {
		return fmt.Errorf("database %s lacks Trillian's functions %s: apply the functions of Trillian v1.8.0's storage/postgresql/schema/storage.sql",
			dbName, strings.Join(pgFunctions, ", "))
	}
	return probeColumns(ctx, func(ctx context.Context, q string) error {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}, schema, dbName, trillianTables)
}

// postgresFull recognises PostgreSQL's disk_full (SQLSTATE 53100).
func postgresFull(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53100"
}

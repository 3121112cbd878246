package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/google/trillian/monitoring"
	tmysql "github.com/google/trillian/storage/mysql"
)

// mysqlDupKeyName is MySQL's error number for CREATE INDEX on an index name that exists (ER_DUP_KEYNAME).
const mysqlDupKeyName = 1061

// openMySQL opens a MariaDB/MySQL database (a go-sql-driver DSN, "user:password@tcp(host:3306)/dbname") as
// Trillian's storage, with Trillian's own MySQL provider: the storage the reference log server uses.
func openMySQL(ctx context.Context, dsn string, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error) {
	cfg, err := mysqldriver.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("storage mysql: bad DSN (want user:password@tcp(host:port)/dbname): %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("storage mysql: the DSN names no database (want user:password@tcp(host:port)/dbname)")
	}
	where := fmt.Sprintf("%s at %s", cfg.DBName, cfg.Addr)
	db, err := tmysql.OpenDB(dsn)
	if err != nil {
		return nil, fmt.Errorf("storage mysql: opening %s: %w", where, err)
	}
	st := &sqlStore{close: db.Close}
	fail := func(err error) (*sqlStore, error) {
		st.close()
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("storage mysql: connecting to %s: %w", where, err))
	}
	if opt.lock {
		release, err := lockMySQL(ctx, db, cfg.DBName)
		if err != nil {
			return fail(err)
		}
		st.close = func() error { return errors.Join(release(), db.Close()) }
	}
	if err := ensureMySQLSchema(ctx, db, cfg.DBName, opt.migrate, logger); err != nil {
		return fail(fmt.Errorf("storage mysql: %w", err))
	}
	st.log, st.admin = tmysql.NewLogStorage(db, mf), tmysql.NewAdminStorage(db)
	st.pending = func(ctx context.Context, treeID int64) (int64, error) {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
		if err != nil {
			return 0, fmt.Errorf("storage mysql: begin snapshot: %w", err)
		}
		defer tx.Rollback()
		n, err := pendingSQL(ctx, tx, treeID, func(int) string { return "?" })
		if err != nil {
			return 0, fmt.Errorf("storage mysql: %w", err)
		}
		return n, nil
	}
	return st, nil
}

// lockMySQL takes the sigsumd lock of a database on a connection of its own, so that a second sigsumd (or
// sigsumctl) cannot run a second sequencer over the same trees. The server releases it when the connection ends,
// also when the process dies.
func lockMySQL(ctx context.Context, db *sql.DB, dbName string) (func() error, error) {
	name := "sigsumd:" + dbName
	if len(name) > 64 { // MySQL's limit on lock names
		name = name[:64]
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage mysql: connection for the node lock: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("storage mysql: taking lock %q: %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		conn.Close()
		var holder sql.NullInt64
		_ = db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&holder)
		return nil, fmt.Errorf("storage mysql: database %s is in use by another sigsumd (lock %q held by connection %d): one node per database",
			dbName, name, holder.Int64)
	}
	return func() error {
		_, _ = conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", name)
		return conn.Close()
	}, nil
}

// ensureMySQLSchema checks that the database holds Trillian's log schema, and applies it when the database has
// none of its tables and migrate is set (or finishes an application a crash interrupted).
func ensureMySQLSchema(ctx context.Context, db *sql.DB, dbName string, migrate bool, logger *slog.Logger) error {
	rows, err := db.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
	if err != nil {
		return fmt.Errorf("listing the tables of %s: %w", dbName, err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fmt.Errorf("listing the tables of %s: %w", dbName, err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing the tables of %s: %w", dbName, err)
	}
	state := classifyTables(tables)
	schema := schemaSQL("mysql.sql")
	probe := func(tables []string) error {
		return probeColumns(ctx, func(ctx context.Context, q string) error {
			rows, err := db.QueryContext(ctx, q)
			if err == nil {
				err = rows.Close()
			}
			return err
		}, schema, dbName, tables)
	}
	// Trillian's tables already there must be Trillian's before anything is added beside them.
	if err := probe(state.present); err != nil {
		return err
	}
	switch {
	case len(state.present) == 0 && len(state.others) > 0:
		return refuseForeign(dbName, state)
	case !state.complete() && !migrate:
		return fmt.Errorf("database %s lacks Trillian's tables %s: apply Trillian's storage/mysql/schema/storage.sql (the node does so itself on start)",
			dbName, strings.Join(state.missing(), ", "))
	case !state.complete():
		logger.Info("applying Trillian's MySQL schema", "database", dbName, "missing", strings.Join(state.missing(), ","))
		for _, stmt := range splitStatements(schema) {
			_, err := db.ExecContext(ctx, stmt)
			var me *mysqldriver.MySQLError
			if errors.As(err, &me) && me.Number == mysqlDupKeyName {
				continue // an index made by an earlier, interrupted application
			}
			if err != nil {
				return fmt.Errorf("applying Trillian's schema to %s: %w", dbName, err)
			}
		}
	}
	return probe(trillianTables)
}

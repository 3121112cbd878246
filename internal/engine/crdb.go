//go:build crdb

package engine

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/trillian/monitoring"
	tcrdb "github.com/google/trillian/storage/crdb"
)

// crdbSchema is Trillian v1.8.0's storage/crdb/schema/storage.sql (Apache License 2.0), unchanged.
//
//go:embed schema/crdb.sql
var crdbSchema string

// CRDBSupported says whether this binary was built with CockroachDB support (-tags crdb).
const CRDBSupported = true

// openCRDB opens a CockroachDB database (a PostgreSQL-style URI, "postgresql://user@host:26257/dbname?sslmode=...")
// as Trillian's storage, with Trillian's own crdb provider. The node lock is not taken: CockroachDB has no session
// advisory locks; run one node per database.
func openCRDB(ctx context.Context, uri string, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error) {
	u, err := url.Parse(uri)
	if err != nil {
		// A *url.Error quotes the whole URI, password included: keep only its reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("storage crdb: bad URI (want postgresql://user@host:26257/dbname): %w", err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if dbName == "" {
		return nil, errors.New("storage crdb: the URI names no database (want postgresql://user@host:26257/dbname)")
	}
	db, err := tcrdb.OpenDB(uri)
	if err != nil {
		return nil, fmt.Errorf("storage crdb: opening %s at %s: %w", dbName, u.Host, err)
	}
	fail := func(err error) (*sqlStore, error) {
		db.Close()
		return nil, fmt.Errorf("storage crdb: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_catalog = current_database()")
	if err != nil {
		return fail(fmt.Errorf("listing the tables of %s: %w", dbName, err))
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fail(err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	state := classifyTables(tables)
	switch {
	case len(state.present) == 0 && len(state.others) > 0:
		return fail(refuseForeign(dbName, state))
	case len(state.present) == 0 && opt.migrate:
		logger.Info("applying Trillian's CockroachDB schema", "database", dbName)
		if _, err := db.ExecContext(ctx, crdbSchema); err != nil {
			return fail(fmt.Errorf("applying Trillian's schema to %s: %w", dbName, err))
		}
	case !state.complete():
		return fail(fmt.Errorf("database %s lacks Trillian's tables %s: apply Trillian's storage/crdb/schema/storage.sql",
			dbName, strings.Join(state.missing(), ", ")))
	}
	if err := probeColumns(ctx, func(ctx context.Context, q string) error {
		rows, err := db.QueryContext(ctx, q)
		if err == nil {
			err = rows.Close()
		}
		return err
	}, crdbSchema, dbName, trillianTables); err != nil {
		return fail(err)
	}
	return &sqlStore{
		log:   tcrdb.NewLogStorage(db, mf),
		admin: tcrdb.NewSQLAdminStorage(db),
		pending: func(ctx context.Context, treeID int64) (int64, error) {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return 0, fmt.Errorf("storage crdb: begin snapshot: %w", err)
			}
			defer tx.Rollback()
			n, err := pendingSQL(ctx, tx, treeID, func(n int) string { return "$" + strconv.Itoa(n) })
			if err != nil {
				return 0, fmt.Errorf("storage crdb: %w", err)
			}
			return n, nil
		},
		close: db.Close,
	}, nil
}

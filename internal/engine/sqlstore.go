package engine

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/trillian/storage"
)

// Trillian's schemas for the SQL stores, copied unchanged from github.com/google/trillian v1.8.0
// (storage/mysql/schema/storage.sql and storage/postgresql/schema/storage.sql, Apache License 2.0).
// TestSchemasMatchTrillian checks them against the module in use.
//
//go:embed schema/mysql.sql schema/postgresql.sql
var schemas embed.FS

// schemaSQL returns an embedded schema file.
func schemaSQL(name string) string {
	b, err := schemas.ReadFile("schema/" + name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return string(b)
}

// sqlStore is an opened SQL database serving as Trillian's storage.
type sqlStore struct {
	log     storage.LogStorage
	admin   storage.AdminStorage
	pending func(ctx context.Context, treeID int64) (int64, error)
	close   func() error
}

// sqlOptions says what opening a SQL store does besides connecting.
type sqlOptions struct {
	// lock takes the database's sigsumd lock, so that no second sigsumd (and no second sequencer) uses it.
	lock bool
	// migrate applies Trillian's schema to a database that lacks it; otherwise a missing schema is an error.
	migrate bool
}

// trillianTables are the tables of Trillian's log schema, in the order the schema creates them.
var trillianTables = []string{"Trees", "TreeControl", "Subtree", "TreeHead", "LeafData", "SequencedLeafData", "Unsequenced"}

var (
	createTableRE = regexp.MustCompile(`(?is)CREATE TABLE IF NOT EXISTS\s+(\w+)\s*\((.*?)\n\);`)
	columnRE      = regexp.MustCompile(`^\s*(\w+)\s+\S`)
)

// schemaColumns returns, for each table a schema creates, the columns it defines.
func schemaColumns(schema string) map[string][]string {
	out := map[string][]string{}
	for _, m := range createTableRE.FindAllStringSubmatch(schema, -1) {
		var cols []string
		for _, line := range strings.Split(m[2], "\n") {
			c := columnRE.FindStringSubmatch(line)
			if c == nil {
				continue
			}
			switch strings.ToUpper(c[1]) {
			case "PRIMARY", "FOREIGN", "CHECK", "CONSTRAINT", "UNIQUE", "KEY", "INDEX":
				continue
			}
			cols = append(cols, c[1])
		}
		out[m[1]] = cols
	}
	return out
}

// splitStatements splits a schema file into statements: each ends with a semicolon at the end of a line, followed
// by a blank line or the end of the file (the rule Trillian's PostgreSQL schema states, so that the semicolons
// inside its PL/pgSQL functions stay put). Comment-only lines are dropped.
func splitStatements(schema string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	lines := strings.Split(schema, "\n")
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") || strings.HasPrefix(t, "#") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") && (i+1 == len(lines) || strings.TrimSpace(lines[i+1]) == "") {
			flush()
		}
	}
	flush()
	return out
}

// schemaState describes which of Trillian's tables a database holds.
type schemaState struct {
	present []string // Trillian's tables found
	others  []string // other tables found
}

func classifyTables(tables []string) schemaState {
	var s schemaState
	for _, t := range tables {
		if i := slices.IndexFunc(trillianTables, func(want string) bool { return strings.EqualFold(want, t) }); i >= 0 {
			s.present = append(s.present, trillianTables[i])
		} else {
			s.others = append(s.others, t)
		}
	}
	return s
}

func (s schemaState) complete() bool { return len(s.present) == len(trillianTables) }

// missing returns Trillian's tables the database lacks.
func (s schemaState) missing() []string {
	var out []string
	for _, t := range trillianTables {
		if !slices.Contains(s.present, t) {
			out = append(out, t)
		}
	}
	return out
}

// refuseForeign is the error for a database that holds tables, none of them Trillian's.
func refuseForeign(db string, s schemaState) error {
	shown := s.others
	if len(shown) > 5 {
		shown = append(slices.Clone(shown[:5]), "...")
	}
	return fmt.Errorf("database %s holds %d tables and none of Trillian's (%s): refusing to add Trillian's schema to a database something else uses; give the node a database of its own",
		db, len(s.others), strings.Join(shown, ", "))
}

// probeColumns checks that every table of schema has the columns the schema gives it, by selecting them with a
// query that returns no rows (plain SQL that MySQL, PostgreSQL and CockroachDB all accept).
// Only the given tables are probed.
func probeColumns(ctx context.Context, query func(ctx context.Context, q string) error, schema, db string, tables []string) error {
	cols := schemaColumns(schema)
	for _, table := range tables {
		c := cols[table]
		if len(c) == 0 {
			return fmt.Errorf("embedded schema defines no columns for %s", table)
		}
		if err := query(ctx, "SELECT "+strings.Join(c, ", ")+" FROM "+table+" WHERE 1=0"); err != nil {
			return fmt.Errorf("database %s: table %s does not have the columns Trillian v1.8.0 uses (%s): not a Trillian log database of a compatible version: %w",
				db, table, strings.Join(c, ","), err)
		}
	}
	return nil
}

// pendingSQL counts, in one snapshot, the stored sequenced leaves of a tree at or above its integrated size. ph
// returns the n-th placeholder of the SQL dialect.
func pendingSQL(ctx context.Context, tx *sql.Tx, treeID int64, ph func(n int) string) (int64, error) {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM Trees WHERE TreeId = "+ph(1), treeID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("tree %d not found", treeID)
	}
	if err != nil {
		return 0, fmt.Errorf("looking up tree %d: %w", treeID, err)
	}
	var size int64
	err = tx.QueryRowContext(ctx, "SELECT TreeSize FROM TreeHead WHERE TreeId = "+ph(1)+
		" ORDER BY TreeHeadTimestamp DESC LIMIT 1", treeID).Scan(&size)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading the root of tree %d: %w", treeID, err)
	}
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM SequencedLeafData WHERE TreeId = "+ph(1)+
		" AND SequenceNumber >= "+ph(2), treeID, size).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the sequenced leaves of tree %d: %w", treeID, err)
	}
	return n, nil
}

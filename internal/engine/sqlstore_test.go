package engine

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine/dbtest"
)

// TestSchemasMatchTrillian checks that the embedded schemas are Trillian's own, of the module version in use.
func TestSchemasMatchTrillian(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/trillian").Output()
	if err != nil {
		t.Fatalf("locating the trillian module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	for embedded, upstream := range map[string]string{
		"mysql.sql":      "storage/mysql/schema/storage.sql",
		"postgresql.sql": "storage/postgresql/schema/storage.sql",
		"crdb.sql":       "storage/crdb/schema/storage.sql",
	} {
		want, err := os.ReadFile(filepath.Join(dir, upstream))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("schema", embedded))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("schema/%s differs from trillian's %s: copy it again", embedded, upstream)
		}
	}
}

func TestSchemaParsing(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]int{"mysql.sql": 9, "postgresql.sql": 14} {
		schema := schemaSQL(name)
		stmts := splitStatements(schema)
		if len(stmts) != want {
			t.Errorf("%s: %d statements, want %d", name, len(stmts), want)
		}
		for _, s := range stmts {
			if !strings.HasSuffix(s, ";") || strings.Count(s, "CREATE ") == 0 {
				t.Errorf("%s: odd statement %.80q", name, s)
			}
		}
		cols := schemaColumns(schema)
		for _, table := range trillianTables {
			if len(cols[table]) < 2 || cols[table][0] != "TreeId" {
				t.Errorf("%s: columns of %s = %v", name, table, cols[table])
			}
		}
		if got := strings.Join(cols["SequencedLeafData"], ","); got != "TreeId,SequenceNumber,LeafIdentityHash,MerkleLeafHash,IntegrateTimestampNanos" {
			t.Errorf("%s: SequencedLeafData columns %s", name, got)
		}
	}
	if got := strings.Join(schemaColumns(schemaSQL("mysql.sql"))["Trees"], ","); !strings.Contains(got, "HashStrategy") {
		t.Errorf("mysql Trees columns %s", got)
	}
}

// sqlCase is one SQL store under test: a scratch database and how to make a table in it.
type sqlCase struct {
	name    string
	scratch func(t testing.TB) (string, *sql.DB)
}

var sqlCases = []sqlCase{{"mysql", dbtest.MySQL}, {"postgresql", dbtest.Postgres}}

// TestSQLStoreSchema: an empty database gets Trillian's schema; a database of something else, or with Trillian's
// table names but other columns, is refused with a reason; a second engine on a database in use is refused.
func TestSQLStoreSchema(t *testing.T) {
	t.Parallel()
	for _, c := range sqlCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()

			foreign, fdb := c.scratch(t)
			if _, err := fdb.Exec("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount INTEGER)"); err != nil {
				t.Fatal(err)
			}
			_, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, foreign)})
			t.Logf("foreign database: %v", err)
			if err == nil || !strings.Contains(err.Error(), "none of Trillian's (invoices)") {
				t.Errorf("database of something else: %v", err)
			}

			lookalike, ldb := c.scratch(t)
			if _, err := ldb.Exec("CREATE TABLE Trees (TreeId BIGINT PRIMARY KEY, Name VARCHAR(20))"); err != nil {
				t.Fatal(err)
			}
			_, err = StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, lookalike)})
			t.Logf("lookalike database: %v", err)
			if err == nil || !(strings.Contains(err.Error(), "does not have the columns") || strings.Contains(err.Error(), "lacks")) {
				t.Errorf("database with a foreign Trees table: %v", err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}

			storage, _ := c.scratch(t)
			e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage)})
			if err != nil {
				t.Fatal(err)
			}
			l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(t.TempDir(), "tree-id"), Type: trillian.TreeType_PREORDERED_LOG, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage)}); err == nil || !strings.Contains(err.Error(), "in use by another sigsumd") {
				t.Errorf("second engine on a database in use: %v", err)
			} else {
				t.Logf("database in use: %v", err)
			}
			leaves := testLeaves(t, 3)
			if err := l.AddSequencedLeaves(ctx, 1, leaves[1:]); err != nil { // a gap at 0: never integrated
				t.Fatal(err)
			}
			if n, err := e.PendingSequencedLeaves(ctx, l.TreeID()); err != nil || n != 2 {
				t.Errorf("pending = %d, %v; want 2", n, err)
			}
			if _, err := e.PendingSequencedLeaves(ctx, 12345); err == nil {
				t.Error("pending of an unknown tree succeeded")
			}

			// An external Trillian's engine answers PendingSequencedLeaves once given the database; the node's lock
			// is not needed for that.
			ext, err := DialExternal("127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ext.PendingSequencedLeaves(ctx, l.TreeID()); err != ErrUnsupported {
				t.Errorf("external without storage: %v", err)
			}
			if err := ext.AttachStorage(ctx, mustStorage(t, storage)); err != nil {
				t.Fatal(err)
			}
			if n, err := ext.PendingSequencedLeaves(ctx, l.TreeID()); err != nil || n != 2 {
				t.Errorf("external pending = %d, %v; want 2", n, err)
			}
			if err := ext.Close(); err != nil {
				t.Error(err)
			}

			// After the engine is closed, the database opens again with its schema as it is.
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e2, err := StartEmbedded(ctx, EmbeddedConfig{Storage: mustStorage(t, storage)})
			if err != nil {
				t.Fatalf("reopening: %v", err)
			}
			if tr, err := e2.Tree(ctx, l.TreeID()); err != nil || tr.TreeType != trillian.TreeType_PREORDERED_LOG {
				t.Errorf("tree after reopening: %v, %v", tr, err)
			}
			if err := e2.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestMySQLSchemaResume: an application of the schema that a crash cut short is finished on the next start.
func TestMySQLSchemaResume(t *testing.T) {
	t.Parallel()
	storage, db := dbtest.MySQL(t)
	stmts := splitStatements(schemaSQL("mysql.sql"))
	for _, s := range stmts[:5] { // Trees, TreeControl, Subtree, TreeHead and its index
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	e, err := StartEmbedded(context.Background(), EmbeddedConfig{Storage: mustStorage(t, storage)})
	if err != nil {
		t.Fatalf("resuming the schema: %v", err)
	}
	e.Close()
}

// Package dbtest makes scratch MariaDB/MySQL and PostgreSQL databases for tests. The tests that need them are
// opt-in: they run only when SIGSUMD_TEST_MYSQL / SIGSUMD_TEST_POSTGRES name a server ("1" for the loopback
// default), and skip otherwise, so that `make test` passes on a machine without database servers.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// The environment variables that opt into the database tests, and what "1" stands for in them.
const (
	EnvMySQL        = "SIGSUMD_TEST_MYSQL"
	EnvPostgres     = "SIGSUMD_TEST_POSTGRES"
	DefaultMySQL    = "root@tcp(127.0.0.1:3306)/"
	DefaultPostgres = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// MySQLServer returns the MariaDB/MySQL server DSN the environment names, or skips the test.
func MySQLServer(t testing.TB) string {
	t.Helper()
	return server(t, EnvMySQL, DefaultMySQL)
}

// PostgresServer returns the PostgreSQL server URI the environment names, or skips the test.
func PostgresServer(t testing.TB) string {
	t.Helper()
	return server(t, EnvPostgres, DefaultPostgres)
}

func server(t testing.TB, env, def string) string {
	t.Helper()
	v := os.Getenv(env)
	switch v {
	case "":
		t.Skipf("set %s=1 (or a server address like %s) to run", env, def)
	case "1":
		return def
	}
	return v
}

// scratchName returns a fresh database name.
func scratchName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "sigsumd_t_" + hex.EncodeToString(b)
}

// MySQL creates a scratch database on the server SIGSUMD_TEST_MYSQL names and drops it when the test ends. It
// returns the storage URI for sigsumd ("mysql:<dsn>") and a connection to the database for the test's own use.
func MySQL(t testing.TB) (string, *sql.DB) {
	t.Helper()
	cfg, err := mysqldriver.ParseDSN(MySQLServer(t))
	if err != nil {
		t.Fatalf("%s: %v", EnvMySQL, err)
	}
	name := scratchName()
	srv, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := srv.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		srv.Close()
		t.Fatalf("creating scratch database on %s (%s): %v", cfg.Addr, EnvMySQL, err)
	}
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if _, err := srv.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("dropping scratch database %s: %v", name, err)
		}
		srv.Close()
	})
	t.Logf("scratch MySQL database %s", name)
	return "mysql:" + cfg.FormatDSN(), db
}

// Postgres creates a scratch database on the server SIGSUMD_TEST_POSTGRES names and drops it when the test ends.
// It returns the storage URI for sigsumd ("postgresql://...") and a connection to the database.
func Postgres(t testing.TB) (string, *sql.DB) {
	t.Helper()
	srvURI := PostgresServer(t)
	u, err := url.Parse(srvURI)
	if err != nil || (u.Scheme != "postgresql" && u.Scheme != "postgres") {
		t.Fatalf("%s: want a postgresql:// URI, got %q (%v)", EnvPostgres, srvURI, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := pgx.Connect(ctx, srvURI)
	if err != nil {
		t.Fatalf("connecting to %s (%s): %v", u.Host, EnvPostgres, err)
	}
	name := scratchName()
	if _, err := srv.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		srv.Close(ctx)
		t.Fatalf("creating scratch database on %s: %v", u.Host, err)
	}
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping scratch database %s: %v", name, err)
		}
		srv.Close(ctx)
	})
	t.Logf("scratch PostgreSQL database %s", name)
	return u.String(), db
}

// Stores returns the storage URIs of a scratch database on every server the environment names; empty when none.
// It never skips: callers run their SQLite cases regardless.
func Stores(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	if os.Getenv(EnvMySQL) != "" {
		out["mysql"], _ = MySQL(t)
	}
	if os.Getenv(EnvPostgres) != "" {
		out["postgresql"], _ = Postgres(t)
	}
	return out
}

// String describes which servers the environment names, for test output.
func String() string {
	return fmt.Sprintf("%s=%q %s=%q", EnvMySQL, os.Getenv(EnvMySQL), EnvPostgres, os.Getenv(EnvPostgres))
}

package engine

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A store out of space is told by the drivers' typed errors, not by their messages, and comes out wrapping
// ErrStorageFull.
func TestStorageFull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		full bool
	}{
		{"ENOSPC", fmt.Errorf("writing: %w", syscall.ENOSPC), true},
		{"MariaDB disk full", fmt.Errorf("exec: %w", &mysqldriver.MySQLError{Number: 1021, Message: "Disk full"}), true},
		{"MariaDB table full", &mysqldriver.MySQLError{Number: 1114, Message: "The table is full"}, true},
		{"MariaDB duplicate key", &mysqldriver.MySQLError{Number: 1062, Message: "Duplicate entry"}, false},
		{"PostgreSQL disk_full", fmt.Errorf("exec: %w", &pgconn.PgError{Code: "53100"}), true},
		{"PostgreSQL unique", &pgconn.PgError{Code: "23505"}, false},
		{"a message that says so is not enough", errors.New("database or disk is full"), false},
		{"an external Trillian's status", status.Error(codes.Unknown, "database or disk is full (13)"), true},
		{"an external Trillian's other status", status.Error(codes.Unknown, "context deadline exceeded"), false},
	} {
		err := wrap("queueing leaf", tc.err)
		if got := errors.Is(err, ErrStorageFull); got != tc.full {
			t.Errorf("%s: errors.Is(ErrStorageFull) = %v, want %v (%v)", tc.name, got, tc.full, err)
		}
	}
}

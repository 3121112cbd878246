package engine

import (
	"errors"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mysqldriver "github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrStorageFull is wrapped by the error of a write the store refused for want of space: retrying may succeed once
// an operator frees some, and it is not the client's fault (add-leaf answers 503).
var ErrStorageFull = errors.New("storage full")

// storageFull recognises, by the drivers' typed errors, a store out of space: SQLite's SQLITE_FULL, MySQL/MariaDB's
// "disk full" and "table is full", PostgreSQL's disk_full (postgresFull), and ENOSPC from any of them. An external
// Trillian says so only in its gRPC status message: that text is all a remote engine gives.
func storageFull(err error) bool {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		msg := s.Message()
		if strings.Contains(msg, "database or disk is full") || strings.Contains(msg, "no space left on device") {
			return true
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return true
	}
	var me *mysqldriver.MySQLError
	if errors.As(err, &me) && (me.Number == 1021 || me.Number == 1114) { // ER_DISK_FULL, ER_RECORD_FILE_FULL
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || postgresFull(err)
}

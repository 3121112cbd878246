package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/trillian/monitoring"
)

// Storage schemes: the stores an embedded engine runs on.
const (
	StorageSQLite     = "sqlite"
	StorageMemory     = "memory"
	StorageMySQL      = "mysql"
	StoragePostgreSQL = "postgresql"
	// StorageCockroachDB needs a binary built with -tags crdb (docs/STORAGE.md).
	StorageCockroachDB = "crdb"
)

// sqlBackend is a SQL database Trillian's storage runs on. Adding one is its file in this package (a scheme
// constant, its open function: connect, check or apply the schema, take the one-node lock) and its line in
// sqlBackends; ParseStorage, the engine and every command then know it.
type sqlBackend struct {
	target string // what follows "<scheme>:", for error messages
	open   func(ctx context.Context, target string, mf monitoring.MetricFactory, opt sqlOptions, logger *slog.Logger) (*sqlStore, error)
}

// sqlBackends are the SQL databases an embedded engine runs on, by scheme.
var sqlBackends = map[string]sqlBackend{
	StorageMySQL:       {"DSN", openMySQL},
	StoragePostgreSQL:  {"URI", openPostgreSQL},
	StorageCockroachDB: {"URI", openCRDB},
}

// Storage names the store of an embedded engine (or the database of an external one, AttachStorage), parsed once
// from "<scheme>:<target>" by ParseStorage.
type Storage struct {
	// Scheme is one of StorageSQLite, StorageMemory, StorageMySQL, StoragePostgreSQL, StorageCockroachDB.
	Scheme string
	// Target is the SQLite file path, the MySQL DSN or the PostgreSQL or CockroachDB URI; empty for memory.
	Target string
}

// String returns the storage in the form ParseStorage takes.
func (s Storage) String() string {
	if s.Scheme == StoragePostgreSQL && strings.HasPrefix(s.Target, "postgresql://") {
		return s.Target
	}
	return s.Scheme + ":" + s.Target
}

// ErrUnsupportedStorage is wrapped by the error for a storage whose scheme the engine does not support, or that
// has none.
var ErrUnsupportedStorage = errors.New("unsupported storage")

// ErrUnknownStorageScheme is wrapped by the error for a storage whose scheme is not one of the known ones. It
// wraps ErrUnsupportedStorage.
var ErrUnknownStorageScheme = fmt.Errorf("%w: unknown storage scheme", ErrUnsupportedStorage)

// storageForms lists the forms of a storage value, for error messages.
const storageForms = "sqlite:<path>, memory:, mysql:<dsn>, postgresql:<uri> or crdb:<uri>"

// ParseStorage parses "sqlite:<path>", "memory:", "mysql:<dsn>", "postgresql:<uri>" or "crdb:<uri>". A PostgreSQL
// URI may also be given as is ("postgresql://user@host/db"): its Target is then the URI itself. Its errors never
// quote the value: a DSN or URI may hold a password.
func ParseStorage(s string) (Storage, error) {
	scheme, target, ok := strings.Cut(s, ":")
	if !ok {
		return Storage{}, fmt.Errorf("%w: the value has no scheme (it is not shown: it may hold a password): want %s",
			ErrUnsupportedStorage, storageForms)
	}
	if scheme == StoragePostgreSQL && strings.HasPrefix(target, "//") {
		target = s // the URI itself: postgresql://...
	}
	switch b, sql := sqlBackends[scheme]; {
	case scheme == StorageMemory:
		if target != "" {
			return Storage{}, errors.New("memory: takes nothing after the colon")
		}
	case scheme == StorageSQLite && target == "":
		return Storage{}, errors.New("sqlite: needs a file path after the colon")
	case scheme == StorageSQLite:
	case !sql:
		return Storage{}, unsupportedStorage(ErrUnknownStorageScheme, scheme)
	case target == "":
		return Storage{}, fmt.Errorf("%s: needs a %s after the colon", scheme, b.target)
	}
	return Storage{Scheme: scheme, Target: target}, nil
}

// unsupportedStorage is the error for a storage with an unsupported scheme. It names the scheme only if it looks
// like one, and never the rest of the value: a DSN may hold a password.
func unsupportedStorage(sentinel error, scheme string) error {
	if !isSchemeName(scheme) {
		return fmt.Errorf("%w: the value does not start with one (it is not shown: it may hold a password): want %s",
			sentinel, storageForms)
	}
	return fmt.Errorf("%w %q (the rest is not shown: it may hold a password): want %s", sentinel, scheme, storageForms)
}

// maxSchemeName bounds the length of a scheme name quoted in an error; real ones are short.
const maxSchemeName = 16

// isSchemeName reports whether s looks like a URI scheme (RFC 3986: a letter, then letters, digits, "+", "-" or
// "."), of at most maxSchemeName characters. Anything else before the first colon is more likely part of a DSN.
func isSchemeName(s string) bool {
	if s == "" || len(s) > maxSchemeName {
		return false
	}
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

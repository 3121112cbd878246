//go:build nopostgresql

package engine

import (
	"context"
	"errors"
	"log/slog"

	"github.com/google/trillian/monitoring"
)

// openPostgreSQL refuses: this binary was built with -tags nopostgresql (6 MB smaller; see docs/STORAGE.md).
func openPostgreSQL(context.Context, string, monitoring.MetricFactory, sqlOptions, *slog.Logger) (*sqlStore, error) {
	return nil, errors.New("storage postgresql: this sigsumd was built with -tags nopostgresql; rebuild without it")
}

// postgresFull is false: this build has no PostgreSQL driver.
func postgresFull(error) bool { return false }

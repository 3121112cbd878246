//go:build !crdb

package engine

import (
	"context"
	"errors"
	"log/slog"

	"github.com/google/trillian/monitoring"
)

// CRDBSupported says whether this binary was built with CockroachDB support (-tags crdb).
const CRDBSupported = false

// openCRDB refuses: CockroachDB support is left out of the default build (see docs/STORAGE.md).
func openCRDB(context.Context, string, monitoring.MetricFactory, sqlOptions, *slog.Logger) (*sqlStore, error) {
	return nil, errors.New("storage crdb: this sigsumd was built without CockroachDB support; rebuild with `go build -tags crdb ./cmd/...`")
}

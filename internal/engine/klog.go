package engine

import (
	"context"
	"log/slog"

	"k8s.io/klog/v2"
)

// RouteKlog sends Trillian's klog output to logger, with its info records lowered to debug: Trillian reports
// every sequencer pass at info level. klog is process-wide, so only commands call this, once, at start.
func RouteKlog(logger *slog.Logger) {
	klog.SetSlogLogger(slog.New(demoteInfo{logger.Handler()}))
}

// demoteInfo lowers a handler's info records to debug.
type demoteInfo struct{ slog.Handler }

func (d demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return d.Handler.Enabled(ctx, demote(l))
}

func (d demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.Handler.Handle(ctx, r)
}

func (d demoteInfo) WithAttrs(as []slog.Attr) slog.Handler {
	return demoteInfo{d.Handler.WithAttrs(as)}
}
func (d demoteInfo) WithGroup(g string) slog.Handler { return demoteInfo{d.Handler.WithGroup(g)} }

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

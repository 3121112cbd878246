package secondary

import (
	"context"
	"time"

	"github.com/sigsumd/sigsumd/internal/status"
)

// Status fills in what the secondary knows for the status page: its own key, the log's newest published head it
// verified, its replica's size and how far behind that head it is. The node adds the primary's URLs, readiness and
// links. ctx bounds its one storage read (the replica's size; the last one seen if it fails).
func (s *Secondary) Status(ctx context.Context, now time.Time) status.Report {
	rep := status.Report{
		Role:        "secondary",
		NodeKeyHash: s.cfg.Signer.Public().KeyHash().String(),
		LocalSize:   s.TreeHead().Size,
		Primary:     &status.Primary{PublishedCheckedAgeSeconds: -1},
	}
	if th, err := s.readHead(ctx); err == nil {
		rep.LocalSize = th.Size
	}
	if s.cfg.LogKey != nil {
		rep.LogKey, rep.LogKeyHash = s.cfg.LogKey.String(), s.cfg.LogKey.KeyHash().String()
	}
	cth, checked, ok := s.Published()
	if ok {
		rep.Published = status.NewHead(&cth, now, time.Time{})
		if cth.Size > rep.LocalSize {
			rep.Primary.Lag = cth.Size - rep.LocalSize
		}
	}
	if !checked.IsZero() {
		rep.Primary.PublishedCheckedAgeSeconds = now.Sub(checked).Seconds()
	}
	return rep
}

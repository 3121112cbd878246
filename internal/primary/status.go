package primary

import (
	"context"
	"time"

	"github.com/sigsumd/sigsumd/internal/status"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Status fills in what the primary knows for the status page: the log key, the published head, the witnesses, each
// secondary's verified size and lag, and the rate limits. The node adds readiness and links.
func (p *Primary) Status(_ context.Context, now time.Time) status.Report {
	pub := p.published.Load()
	rep := status.Report{
		Role:       "primary",
		LogKey:     p.logKey.String(),
		LogKeyHash: p.logKey.KeyHash().String(),
		LocalSize:  p.tree.Size(),
		Published:  status.NewHead(&pub.cth, now, pub.at),
	}
	if w := p.witnessing.Load(); w != nil && w.policy != nil {
		in := make(map[sigsum.Hash]bool, len(pub.cth.Cosignatures))
		for _, c := range pub.cth.Cosignatures {
			in[c.KeyHash] = true
		}
		known := map[sigsum.Hash]witnessStatus{}
		if w.collector != nil {
			for _, s := range w.collector.Status() {
				known[s.KeyHash] = witnessStatus{s.CosignedSize, s.CosignedAt, s.LastError, s.Requests}
			}
		}
		for _, pw := range w.policy.Witnesses() {
			kh := pw.KeyHash()
			s := known[kh]
			ws := status.Witness{Name: pw.Name, KeyHash: kh.String(), InPublished: in[kh], CosignedSize: s.size,
				LastError: s.lastError, Requests: s.requests, AgeSeconds: -1}
			if !s.at.IsZero() {
				ws.CosignedAt, ws.AgeSeconds = s.at.UTC(), now.Sub(s.at).Seconds()
			}
			rep.Witnesses = append(rep.Witnesses, ws)
		}
	}
	p.secMu.Lock()
	for i, sec := range p.cfg.Secondaries {
		st := p.secState[i]
		s := status.Secondary{Name: sec.Name, Asked: st.asked, VerifiedSize: st.verified}
		if !st.verifiedAt.IsZero() {
			s.VerifiedAt = st.verifiedAt.UTC()
		}
		if rep.LocalSize > st.verified {
			s.Lag = rep.LocalSize - st.verified
		}
		if st.err != nil {
			s.Error = st.err.Error()
		}
		rep.Secondaries = append(rep.Secondaries, s)
	}
	p.secMu.Unlock()
	if p.cfg.Limiter != nil {
		s := p.cfg.Limiter.Summary()
		rep.RateLimit = &status.RateLimit{File: s.File, Keys: s.Keys, Domains: s.Domains, Public: s.Public}
	}
	return rep
}

type witnessStatus struct {
	size      uint64
	at        time.Time
	lastError string
	requests  int
}

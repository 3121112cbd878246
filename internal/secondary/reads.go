package secondary

import (
	"context"
	"net/http"

	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/reads"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// readsLoop runs serveReads each time follow wakes it, until ctx is done.
func (s *Secondary) readsLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.readsWake:
			s.serveReads(ctx)
		}
	}
}

// serveReads makes the read API serve the newest published head this secondary verified, once its replica holds
// that tree and extends it (the same check as everywhere, sigsum.Extends): the signed tree advances to its size,
// and the checkpoint is the primary's, keeping the cosignature lines of the cosignatures verified. A failure
// leaves the head served before; the next follow tries again.
func (s *Secondary) serveReads(ctx context.Context) {
	cth, _, ok := s.Published()
	if !ok {
		return
	}
	cur := s.served.Load()
	if cur != nil && cur.Size == cth.Size && string(cur.Body) == string(cth.MarshalASCII()) {
		return
	}
	// Each storage call is bounded by the timeout; reading the tree is bounded per batch by committed, not as a
	// whole: the first head of a large log reads every leaf.
	bctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	own, err := s.readHead(bctx)
	if err != nil || own.Size < cth.Size {
		return // not held yet
	}
	if err := sigsum.Extends(cth.TreeHead, own, func() (sigsum.ConsistencyProof, error) {
		return s.cfg.Log.ConsistencyProof(bctx, cth.Size, own.Size)
	}); err != nil {
		s.warnReads(cth.Size, "not serving the log's published head: this replica does not extend it", err)
		return
	}
	tree := s.tree.Load()
	switch {
	case tree == nil:
		// The first head: the tree is read whole (up to committed's MaxHold), as a primary's start does.
		if tree, err = committed.Open(ctx, committed.Config{Source: s.cfg.Log, Timeout: s.cfg.Timeout, Logger: s.logger}, cth.Size); err != nil {
			s.warnReads(cth.Size, "not serving the log's published head: reading the tree", err)
			return
		}
		s.tree.Store(tree)
	case tree.Size() < cth.Size:
		if err := tree.Advance(ctx, cth.Size); err != nil {
			s.warnReads(cth.Size, "not serving the log's newest published head: reading its leaves", err)
			return
		}
	}
	var from []byte
	if s.cfg.PrimaryPublic != nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		from, _ = s.cfg.PrimaryPublic.GetCheckpoint(cctx) // without it, the checkpoint carries the log's signature only
		cancel()
	}
	s.served.Store(&reads.Head{Size: cth.Size, Body: cth.MarshalASCII(),
		Checkpoint: reads.Checkpoint(cth.SignedNote(*s.cfg.LogKey), from, cth.Cosignatures, s.cfg.Witnesses...)})
}

// warnReads logs why the read API cannot move to the published head of size size: once per size, since the
// follow loop tries again every interval.
func (s *Secondary) warnReads(size uint64, msg string, err error) {
	if s.readsWarned.Swap(size+1) != size+1 { // +1: the zero value stands for none
		s.logger.Warn(msg, "size", size, "err", err)
	}
}

// readsHandler serves the log's read API at the published head this replica holds (see serveReads) under base.
func (s *Secondary) readsHandler(mux *http.ServeMux, base string) {
	reads.Register(mux, base, reads.Config{
		Head: s.served.Load,
		Tree: func() reads.Tree {
			if t := s.tree.Load(); t != nil {
				return t
			}
			return nil
		},
	})
}

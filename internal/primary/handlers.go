package primary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/reads"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// internalMaxRange is the most leaves one internal get-leaves answer holds (about 1 MiB).
const internalMaxRange = 4096

// maxLeavesWait bounds how long an internal get-leaves with sigsum.WaitBeyondHeader is held for new leaves, and
// maxLeavesWaiters how many are held at once (beyond that, answers are immediate).
const (
	maxLeavesWait    = time.Second
	maxLeavesWaiters = 64
)

// maxAddLeafBody bounds an add-leaf body; a valid one is about 300 bytes.
const maxAddLeafBody = 4096

// PublicHandler serves the public API under /<prefix>/ (prefix without slashes; empty for none).
func (p *Primary) PublicHandler(prefix string) http.Handler {
	base := "/"
	if prefix != "" {
		base = "/" + prefix + "/"
	}
	mux := http.NewServeMux()
	reads.Register(mux, base, reads.Config{
		Head:        func() *reads.Head { return &p.published.Load().head },
		Tree:        func() reads.Tree { return p.tree },
		MaxRange:    p.cfg.MaxRange,
		BackendFail: p.backendFail,
	})
	mux.HandleFunc("POST "+base+"add-leaf", p.addLeaf)
	return mux
}

// InternalHandler serves the internal API (get-leaves for secondaries) at the root and, with a prefix, under it
// too, so secondaries configured either way reach it.
func (p *Primary) InternalHandler(prefix string) http.Handler {
	var leaves http.Handler = http.HandlerFunc(p.getLeavesInternal)
	if p.cfg.InternalAccess != nil {
		leaves = p.cfg.InternalAccess(leaves)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /get-leaves/{start}/{end}", leaves)
	if prefix != "" {
		mux.Handle("GET /"+prefix+"/get-leaves/{start}/{end}", leaves)
	}
	return mux
}

func (p *Primary) backendFail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away (a secondary restarting during a held get-leaves, say): nothing failed here.
		reads.Fail(w, http.StatusServiceUnavailable, "request cancelled")
		return
	}
	p.backendFailed(r.URL.Path, err)
	if errors.Is(err, engine.ErrStorageFull) {
		p.storageFullAt.Store(time.Now().UnixNano())
		// Not the submitter's fault and not a bug: say so, and that a retry later may succeed.
		reads.Fail(w, http.StatusServiceUnavailable, "storage full: the log cannot take new leaves now; retry later")
		return
	}
	reads.Fail(w, http.StatusInternalServerError, "backend failure")
}

func (p *Primary) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), p.cfg.Timeout)
}

// serveLeaves answers get-leaves for [start, end) clamped to size and MaxRange.
func (p *Primary) serveLeaves(w http.ResponseWriter, r *http.Request, start, end, size, maxRange uint64) {
	end = min(end, size, start+maxRange)
	body, err := p.tree.Leaves(r.Context(), start, end)
	if err != nil {
		p.backendFail(w, r, err)
		return
	}
	reads.WriteBody(w, http.StatusOK, body)
}

// getLeavesInternal serves secondaries everything the primary's tree holds, signed or not yet.
func (p *Primary) getLeavesInternal(w http.ResponseWriter, r *http.Request) {
	start, end, err := reads.LeafRange(r)
	if err != nil {
		reads.Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := p.ctx(r)
	th, err := p.cfg.Log.TreeHead(ctx)
	if beyond, ok := reads.WaitBeyond(r); ok && err == nil && th.Size <= beyond && p.leavesWaiters.TryAcquire() {
		th, err = p.cfg.Log.WaitGrowth(ctx, beyond, time.Duration(p.leavesWait.Load()))
		p.leavesWaiters.Release()
	}
	cancel()
	switch {
	case err != nil:
		p.backendFail(w, r, err)
		return
	case start == th.Size:
		reads.Fail(w, http.StatusNotFound, "at end of tree")
		return
	case start > th.Size:
		reads.Fail(w, http.StatusBadRequest, "start %d is beyond the tree size %d", start, th.Size)
		return
	}
	// Secondaries may take bigger bites than the public: fewer round trips while catching up.
	p.serveLeaves(w, r, start, end, th.Size, max(p.cfg.MaxRange, internalMaxRange))
}

// slots is a counting semaphore that never blocks: TryAcquire fails when all slots are taken.
type slots chan struct{}

func (s slots) TryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s slots) Release() { <-s }

func (p *Primary) addLeaf(w http.ResponseWriter, r *http.Request) {
	body, err := p.readAddLeafBody(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			reads.Fail(w, http.StatusBadRequest, "request body larger than %d bytes", maxAddLeafBody)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Nothing was queued: the client may send the leaf again.
			reads.Fail(w, http.StatusRequestTimeout, "request body did not arrive within %v; nothing was added", p.cfg.Timeout)
		default:
			reads.Fail(w, http.StatusBadRequest, "reading request body: %v", err)
		}
		return
	}
	req, err := sigsum.ParseAddLeafRequest(body)
	if err != nil {
		reads.Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	// A malformed sigsum-token header is a malformed request, with rate limits or without (as in the reference),
	// and whatever the leaf: checked before anything else is looked at. A well-formed token is checked against
	// DNS only if the rate limiter needs it.
	tokenHeader, err := submitTokenHeader(r.Header)
	if err != nil {
		reads.Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	leaf := req.Leaf()
	hash := leaf.Hash()

	// A retry of a leaf queued and not yet signed is answered from memory, unless a newly signed tree is still
	// being read: the pending set forgets a leaf only once the tree has read it, tens of milliseconds under load,
	// and the tree answers for it before that.
	pending := p.pending.has(hash)
	if pending && !p.tree.Settling() {
		p.cfg.Metrics.LeafResubmitted()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// A retry of a signed leaf is answered without a signature check (the leaf hash covers the signature, so a leaf
	// the log has was verified when it was first added), from the index in memory for the newest leaves, with one
	// indexed lookup in storage for the others: never queued again, never rate-limited.
	if _, ok, err := p.tree.Contains(r.Context(), hash); err != nil {
		p.backendFail(w, r, err)
		return
	} else if ok {
		p.cfg.Metrics.LeafResubmitted()
		w.WriteHeader(http.StatusOK)
		return
	}
	if pending {
		p.cfg.Metrics.LeafResubmitted()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// The answers above need no deadline; the rest waits on storage.
	ctx, cancel := p.ctx(r)
	defer cancel()
	if !req.Verify() {
		reads.Fail(w, http.StatusForbidden, "leaf signature does not verify with the public key")
		return
	}
	var decision *ratelimit.Decision
	if p.cfg.Limiter != nil {
		decision, err = p.cfg.Limiter.Check(ctx, leaf.KeyHash, tokenHeader)
		if err != nil {
			if errors.Is(err, ratelimit.ErrRateLimited) && p.known(ctx, hash) {
				// A resubmission the log forgot it had seen (after a restart): known leaves are never limited.
				p.answerKnown(ctx, w, r, hash)
				return
			}
			p.cfg.Metrics.RateLimited(ratelimit.HTTPStatus(err))
			reads.Fail(w, ratelimit.HTTPStatus(err), "%v", err)
			return
		}
	}
	queued := time.Now()
	dup, err := p.cfg.Log.QueueLeaf(ctx, &leaf)
	p.cfg.Metrics.Storage("queue_leaf", time.Since(queued))
	if decision != nil {
		// Only a new leaf is charged: not a resubmission, not a leaf the backend failed to take.
		if err == nil && !dup {
			p.cfg.Limiter.Charge(decision)
		} else {
			p.cfg.Limiter.Release(decision)
		}
	}
	if err != nil {
		p.backendFail(w, r, err)
		return
	}
	p.backendAnswers()
	if !dup {
		p.cfg.Metrics.LeafQueued()
		p.pending.add(hash)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// A leaf the log had, queued before a restart or integrated and not signed yet (or signed since Contains).
	p.answerKnown(ctx, w, r, hash)
}

// readAddLeafBody reads an add-leaf body of at most maxAddLeafBody bytes, which must arrive within the primary's
// Timeout of the handler's start (a valid body is about 300 bytes). A late body gives an error wrapping
// os.ErrDeadlineExceeded. The read deadline is lifted once the body is in: the connection's background read (which
// notices a client going away) must not time out and cancel the request while the leaf is being stored.
func (p *Primary) readAddLeafBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	// Not every ResponseWriter has a connection (test recorders): then only the server's ReadTimeout applies.
	deadline := rc.SetReadDeadline(time.Now().Add(p.cfg.Timeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAddLeafBody))
	if err == nil && deadline {
		if err := rc.SetReadDeadline(time.Time{}); err != nil {
			p.logger.Warn("add-leaf: lifting the body's read deadline", "err", err)
		}
	}
	return body, err
}

// errTokenHeader is wrapped by submitTokenHeader's errors that are about the header rather than its value.
var errTokenHeader = errors.New("malformed sigsum-token header")

// submitTokenHeader returns the sigsum-token header's value ("" without one), with an error if there is more than
// one, or if it is empty or malformed (ratelimit.ParseToken).
func submitTokenHeader(h http.Header) (string, error) {
	vs := h.Values(sigsum.SubmitTokenHeader)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", fmt.Errorf("%w: %d sigsum-token headers, want at most one", errTokenHeader, len(vs))
	case vs[0] == "":
		return "", fmt.Errorf("%w: empty; want `<domain> <hex signature>`", errTokenHeader)
	}
	if _, _, err := ratelimit.ParseToken(vs[0]); err != nil {
		return "", err
	}
	return vs[0], nil
}

// answerKnown answers add-leaf for a leaf the log has: 200 if it is in the signed tree, else 202.
func (p *Primary) answerKnown(ctx context.Context, w http.ResponseWriter, r *http.Request, hash sigsum.Hash) {
	p.cfg.Metrics.LeafResubmitted()
	if _, ok, err := p.tree.Contains(ctx, hash); err != nil {
		p.backendFail(w, r, err)
		return
	} else if ok {
		w.WriteHeader(http.StatusOK)
		return
	}
	p.pending.add(hash)
	w.WriteHeader(http.StatusAccepted)
}

// known reports whether the leaf is in the integrated tree (signed or not).
func (p *Primary) known(ctx context.Context, hash sigsum.Hash) bool {
	th, err := p.cfg.Log.TreeHead(ctx)
	if err != nil || th.Size == 0 {
		return false
	}
	_, err = p.cfg.Log.InclusionProof(ctx, th.Size, hash)
	return err == nil
}

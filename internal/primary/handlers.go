package primary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/trillian"
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

// Version is reported on the info page.
const Version = "sigsumd/0.1"

// PublicHandler serves the public API under /<prefix>/ (prefix without slashes; empty for none).
func (p *Primary) PublicHandler(prefix string) http.Handler {
	base := "/"
	if prefix != "" {
		base = "/" + prefix + "/"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"{$}", p.info)
	mux.HandleFunc("GET "+base+"get-tree-head", p.getTreeHead)
	mux.HandleFunc("GET "+base+"get-inclusion-proof/{size}/{hash}", p.getInclusionProof)
	mux.HandleFunc("GET "+base+"get-consistency-proof/{old}/{new}", p.getConsistencyProof)
	mux.HandleFunc("GET "+base+"get-leaves/{start}/{end}", p.getLeaves)
	mux.HandleFunc("POST "+base+"add-leaf", p.addLeaf)
	return mux
}

// InternalHandler serves the internal API (get-leaves for secondaries) at the root and, with a prefix, under it
// too, so secondaries configured either way reach it.
func (p *Primary) InternalHandler(prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /get-leaves/{start}/{end}", p.getLeavesInternal)
	if prefix != "" {
		mux.HandleFunc("GET /"+prefix+"/get-leaves/{start}/{end}", p.getLeavesInternal)
	}
	return mux
}

// fail writes a one-line reason with code.
func fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	http.Error(w, msg, code)
}

func (p *Primary) backendFail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away (a secondary restarting during a held get-leaves, say): nothing failed here.
		fail(w, http.StatusServiceUnavailable, "request cancelled")
		return
	}
	p.log.Error("backend failure", "path", r.URL.Path, "err", err)
	if storageFull(err) {
		// Not the submitter's fault and not a bug: say so, and that a retry later may succeed.
		fail(w, http.StatusServiceUnavailable, "storage full: the log cannot take new leaves now; retry later")
		return
	}
	fail(w, http.StatusInternalServerError, "backend failure")
}

// storageFull recognises a store that ran out of space (SQLite's SQLITE_FULL, ENOSPC from any store; both
// arrive as text through Trillian's gRPC errors).
func storageFull(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "database or disk is full") || strings.Contains(msg, "no space left on device")
}

func writeBody(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write(body)
}

func (p *Primary) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), p.cfg.Timeout)
}

func (p *Primary) info(w http.ResponseWriter, _ *http.Request) {
	pub := p.Published()
	fmt.Fprintf(w, "Sigsum v1 log (%s), role primary\nlog key hash: %s\npublic key: %s\ntree size: %d\n",
		Version, p.logKey.KeyHash(), p.logKey, pub.Size)
}

func (p *Primary) getTreeHead(w http.ResponseWriter, _ *http.Request) {
	writeBody(w, http.StatusOK, p.published.Load().body)
}

// pathInt parses a URL path argument with the ASCII integer grammar.
func pathInt(r *http.Request, name string) (uint64, error) {
	n, err := sigsum.ParseInt(r.PathValue(name))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func (p *Primary) getInclusionProof(w http.ResponseWriter, r *http.Request) {
	size, err := pathInt(r, "size")
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	hash, err := sigsum.ParseHash(r.PathValue("hash"))
	if err != nil {
		fail(w, http.StatusBadRequest, "leaf hash: %v", err)
		return
	}
	pub := p.Published().Size
	switch {
	case size < 2:
		fail(w, http.StatusBadRequest, "size %d: inclusion proofs need a tree of at least 2 leaves", size)
		return
	case size > pub:
		fail(w, http.StatusBadRequest, "size %d is larger than the published tree (%d)", size, pub)
		return
	}
	ctx, cancel := p.ctx(r)
	defer cancel()
	inTree := p.tree != nil && p.tree.Size() >= size // the tree in memory can prove it
	index, ok := p.committed.lookup(hash)
	if !ok && inTree {
		// Not among the leaves indexed in memory (an older one): storage finds its index with one lookup, and the
		// proof comes from memory as for any other leaf. Trillian's proof by hash reads a proof's worth of subtrees,
		// which made proofs of old leaves a tenth as fast at 10^6 leaves.
		i, err := p.cfg.Log.LeafIndex(ctx, hash)
		switch {
		case err == nil:
			// Remembered, so that the next proof of this leaf needs no storage at all.
			index, ok = i, true
			p.committed.add(i, []sigsum.Hash{hash})
		case errors.Is(err, trillian.ErrNotFound):
			fail(w, http.StatusNotFound, "leaf %s is not in the tree of size %d", hash, size)
			return
		case !errors.Is(err, trillian.ErrUnsupported):
			p.backendFail(w, r, err)
			return
		}
	}
	if ok && inTree {
		if index >= size {
			fail(w, http.StatusNotFound, "leaf %s is not in the tree of size %d", hash, size)
			return
		}
		proof, err := p.tree.Inclusion(ctx, index, size)
		if err != nil {
			p.backendFail(w, r, err)
			return
		}
		writeBody(w, http.StatusOK, proof.MarshalASCII())
		return
	}
	proof, err := p.cfg.Log.InclusionProof(ctx, size, hash)
	switch {
	case errors.Is(err, trillian.ErrNotFound):
		fail(w, http.StatusNotFound, "leaf %s is not in the tree of size %d", hash, size)
		return
	case err != nil:
		p.backendFail(w, r, err)
		return
	}
	// Remembered, so that the next proof of this leaf comes from memory. The index is its first, as in the
	// index: storage finds the first leaf with a hash.
	p.committed.add(proof.LeafIndex, []sigsum.Hash{hash})
	writeBody(w, http.StatusOK, proof.MarshalASCII())
}

func (p *Primary) getConsistencyProof(w http.ResponseWriter, r *http.Request) {
	oldSize, err := pathInt(r, "old")
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	newSize, err := pathInt(r, "new")
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	pub := p.Published().Size
	switch {
	case oldSize == 0 || oldSize >= newSize:
		fail(w, http.StatusBadRequest, "need 0 < old < new, got old %d, new %d", oldSize, newSize)
		return
	case newSize > pub:
		fail(w, http.StatusBadRequest, "new size %d is larger than the published tree (%d)", newSize, pub)
		return
	}
	ctx, cancel := p.ctx(r)
	defer cancel()
	if p.tree != nil && p.tree.Size() >= newSize {
		proof, err := p.tree.Consistency(ctx, oldSize, newSize)
		if err != nil {
			p.backendFail(w, r, err)
			return
		}
		writeBody(w, http.StatusOK, proof.MarshalASCII())
		return
	}
	proof, err := p.cfg.Log.ConsistencyProof(ctx, oldSize, newSize)
	if err != nil {
		p.backendFail(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, proof.MarshalASCII())
}

// leafRange parses get-leaves arguments: start < end.
func leafRange(r *http.Request) (start, end uint64, err error) {
	if start, err = pathInt(r, "start"); err != nil {
		return 0, 0, err
	}
	if end, err = pathInt(r, "end"); err != nil {
		return 0, 0, err
	}
	if start >= end {
		return 0, 0, fmt.Errorf("need start < end, got start %d, end %d", start, end)
	}
	return start, end, nil
}

// serveLeaves answers get-leaves for [start, end) clamped to size and MaxRange.
func (p *Primary) serveLeaves(w http.ResponseWriter, r *http.Request, start, end, size, maxRange uint64) {
	end = min(end, size, start+maxRange)
	if p.tree != nil && p.tree.Size() >= end {
		if body, ok := p.text.body(p.tree, start, end); ok {
			writeBody(w, http.StatusOK, body)
			return
		}
	}
	ctx, cancel := p.ctx(r)
	defer cancel()
	leaves, err := p.cfg.Log.GetLeaves(ctx, start, end-start)
	if err != nil {
		p.backendFail(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, sigsum.MarshalLeavesASCII(leaves))
}

func (p *Primary) getLeaves(w http.ResponseWriter, r *http.Request) {
	start, end, err := leafRange(r)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	pub := p.Published().Size
	if start >= pub {
		fail(w, http.StatusBadRequest, "start %d is not below the published tree size %d", start, pub)
		return
	}
	p.serveLeaves(w, r, start, end, pub, p.cfg.MaxRange)
}

// getLeavesInternal serves secondaries everything the primary's tree holds, signed or not yet.
func (p *Primary) getLeavesInternal(w http.ResponseWriter, r *http.Request) {
	start, end, err := leafRange(r)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := p.ctx(r)
	th, err := p.cfg.Log.TreeHead(ctx)
	if beyond, ok := waitBeyond(r); ok && err == nil && th.Size <= beyond && p.leavesWaiters.TryAcquire() {
		th, err = p.cfg.Log.WaitGrowth(ctx, beyond, time.Duration(p.leavesWait.Load()))
		p.leavesWaiters.Release()
	}
	cancel()
	switch {
	case err != nil:
		p.backendFail(w, r, err)
		return
	case start == th.Size:
		fail(w, http.StatusNotFound, "at end of tree")
		return
	case start > th.Size:
		fail(w, http.StatusBadRequest, "start %d is beyond the tree size %d", start, th.Size)
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

// waitBeyond reads sigsum.WaitBeyondHeader; a malformed value is ignored (the answer is then immediate).
func waitBeyond(r *http.Request) (uint64, bool) {
	v := r.Header.Get(sigsum.WaitBeyondHeader)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 63)
	return n, err == nil
}

func (p *Primary) addLeaf(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAddLeafBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(w, http.StatusBadRequest, "request body larger than %d bytes", maxAddLeafBody)
		} else {
			fail(w, http.StatusBadRequest, "reading request body: %v", err)
		}
		return
	}
	req, err := sigsum.ParseAddLeafRequest(body)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	leaf := req.Leaf()
	hash := leaf.Hash()

	// A retry of a known leaf is answered from memory without a signature check: the leaf hash covers the
	// signature, so a leaf the log has was verified when it was first added.
	if p.isCommitted(hash) {
		p.cfg.Metrics.LeafResubmitted()
		w.WriteHeader(http.StatusOK)
		return
	}
	if p.pending.has(hash) {
		p.cfg.Metrics.LeafResubmitted()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// The answers from memory above need no deadline; the rest waits on storage.
	ctx, cancel := p.ctx(r)
	defer cancel()
	if !req.Verify() {
		fail(w, http.StatusForbidden, "leaf signature does not verify with the public key")
		return
	}
	var decision *ratelimit.Decision
	if p.cfg.Limiter != nil {
		decision, err = p.cfg.Limiter.Check(ctx, leaf.KeyHash, r.Header.Get(sigsum.SubmitTokenHeader))
		if err != nil {
			if errors.Is(err, ratelimit.ErrRateLimited) && p.known(ctx, hash) {
				// A resubmission the log forgot it had seen (after a restart): known leaves are never limited.
				p.answerKnown(ctx, w, r, hash)
				return
			}
			p.cfg.Metrics.RateLimited(ratelimit.HTTPStatus(err))
			fail(w, ratelimit.HTTPStatus(err), "%v", err)
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
	if !dup {
		p.cfg.Metrics.LeafQueued()
		p.pending.add(hash)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// A leaf the log had but no longer remembers in memory (committed long ago, or queued before a restart).
	p.answerKnown(ctx, w, r, hash)
}

// answerKnown answers add-leaf for a leaf the log has: 200 if it is in the signed tree, else 202.
func (p *Primary) answerKnown(ctx context.Context, w http.ResponseWriter, r *http.Request, hash sigsum.Hash) {
	p.cfg.Metrics.LeafResubmitted()
	if signed := p.signed.Load(); signed.Size > 0 {
		_, err := p.cfg.Log.InclusionProof(ctx, signed.Size, hash)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
			return
		case !errors.Is(err, trillian.ErrNotFound):
			p.backendFail(w, r, err)
			return
		}
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

package secondary

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/reads"
)

// notServed is the public listener's answer: a secondary does not serve the log's API (see the package comment).
const notServed = "this node is a secondary: submit to the log's primary (it serves reads only)"

// InternalHandler serves the secondary's internal listener: GET get-secondary-tree-head, at the root and, when
// prefix is not empty, also under /<prefix>/ (some deployments put the URL prefix on the internal API too).
func (s *Secondary) InternalHandler(prefix string) http.Handler {
	mux := http.NewServeMux()
	// A GET pattern also answers HEAD, and the mux answers other methods with 405 and an Allow header.
	mux.HandleFunc("GET /get-secondary-tree-head", s.serveTreeHead)
	return withPrefix(prefix, mux)
}

// withPrefix serves h at the root and, when prefix is not empty, also under /<prefix>/. The prefix is stripped by
// hand rather than put into a mux pattern, so that no prefix can make pattern registration panic.
func withPrefix(prefix string, h http.Handler) http.Handler {
	p := strings.Trim(prefix, "/")
	if p == "" {
		return h
	}
	stripped := http.StripPrefix("/"+p, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/"+p+"/") {
			stripped.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// PublicHandler serves the secondary's public listener. A secondary that follows the log's published head serves
// the log's read API at it (get-tree-head, proofs, get-leaves, checkpoint, tiles) once its replica holds that tree,
// so that any node can stand behind the log's read URL; add-leaf, and everything on a secondary that does not
// follow the published head, is 404 with a one-line reason. (The node serves its status page at the base.)
func (s *Secondary) PublicHandler(prefix string) http.Handler {
	notHere := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, notServed, http.StatusNotFound)
	})
	if s.cfg.PrimaryPublic == nil {
		return notHere
	}
	base := "/"
	if p := strings.Trim(prefix, "/"); p != "" {
		base = "/" + p + "/"
	}
	mux := http.NewServeMux()
	s.readsHandler(mux, base)
	mux.Handle("/", notHere)
	return mux
}

// serveTreeHead answers get-secondary-tree-head with the integrated tree head signed by the secondary's key.
func (s *Secondary) serveTreeHead(w http.ResponseWriter, r *http.Request) {
	if s.divergedErr() != nil {
		// Our tree disagrees with the primary: no head of it may count toward a commitment.
		http.Error(w, "this secondary diverged from the primary and stopped replicating", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	if beyond, ok := reads.WaitBeyond(r); ok {
		s.waitBeyond(ctx, beyond)
		if r.Context().Err() != nil {
			return // the primary went on without this answer
		}
	}
	body, err := s.signedTreeHead(ctx)
	if err != nil {
		s.logger.Error("get-secondary-tree-head", "err", err)
		http.Error(w, "backend failure reading or signing the tree head", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// maxHeadWait bounds how long a get-secondary-tree-head with sigsum.WaitBeyondHeader is held until the replica
// grows (a primary's rotation asks for at most half an interval, and at most a second), and maxHeadWaiters how
// many are held at once (beyond that, answers are immediate).
const (
	maxHeadWait    = time.Second
	maxHeadWaiters = 16
)

// waitBeyond waits, for at most maxHeadWait, until the integrated tree holds more than beyond leaves. It only
// waits: whatever the outcome, the answer reads the head afresh.
func (s *Secondary) waitBeyond(ctx context.Context, beyond uint64) {
	if s.TreeHead().Size > beyond {
		return
	}
	if s.headWaiters.Add(1) <= maxHeadWaiters {
		if th, err := s.cfg.Log.WaitGrowth(ctx, beyond, min(maxHeadWait, s.cfg.Timeout)); err == nil {
			s.sawHead(th)
		}
	}
	s.headWaiters.Add(-1)
}

// signedTreeHead returns the ASCII signed integrated tree head, signing only when the head changed since the last
// signature: the signer may be ssh-agent, which is slow.
func (s *Secondary) signedTreeHead(ctx context.Context) ([]byte, error) {
	th, err := s.readHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading own tree head: %w", err)
	}
	s.signMu.Lock()
	defer s.signMu.Unlock()
	// A cached head at least as large is just as true (the tree only grows) and costs no signature; it also keeps
	// a slow request from replacing a newer head with the older one it read.
	if c := s.signed; c != nil && (c.th == th || c.th.Size > th.Size) {
		return c.body, nil
	}
	sth, err := th.Sign(s.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("signing tree head of size %d: %w", th.Size, err)
	}
	s.signed = &signedHead{th: th, body: sth.MarshalASCII()}
	return s.signed.body, nil
}

package secondary

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// notServed is the public listener's answer: a secondary does not serve the log's API (see the package comment).
const notServed = "this node is a secondary: use the log's primary"

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

// PublicHandler serves the secondary's public listener: an info page at GET /<prefix>/ and 404 with a one-line
// reason for everything else.
func (s *Secondary) PublicHandler(prefix string) http.Handler {
	p := strings.Trim(prefix, "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "/"
		if p != "" {
			base = "/" + p + "/"
		}
		if r.URL.Path != base {
			http.Error(w, notServed, http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.serveInfo(w, r)
	})
}

func (s *Secondary) serveInfo(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	th, err := s.readHead(ctx)
	if err != nil {
		s.log.Error("info page: reading the tree head", "err", err)
		http.Error(w, "backend failure reading the tree head", http.StatusInternalServerError)
		return
	}
	kh := s.cfg.Signer.Public().KeyHash()
	status := "ok"
	if err := s.Healthy(); err != nil {
		status = "unhealthy"
		if errors.Is(err, ErrDiverged) {
			status = "diverged"
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "role=secondary\nkey_hash=%s\ntree_size=%s\nstatus=%s\n", kh, strconv.FormatUint(th.Size, 10), status)
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
	body, err := s.signedTreeHead(ctx)
	if err != nil {
		s.log.Error("get-secondary-tree-head", "err", err)
		http.Error(w, "backend failure reading or signing the tree head", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
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

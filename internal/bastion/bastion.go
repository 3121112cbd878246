// Package bastion is the primary's built-in C2SP https-bastion: a TLS 1.3 listener where the trust policy's
// witnesses that have no public address connect (ALPN bastion/0, a self-signed Ed25519 client certificate whose key
// must be one of the policy's witness keys), and an in-process transport over which the witness collector sends
// them its add-checkpoint requests, with no separate bastion daemon and no second hop. The protocol itself is
// filippo.io/torchwood/bastion's.
package bastion

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	tbastion "filippo.io/torchwood/bastion"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Host is the host name the witness collector gives URLs of witnesses reached through the built-in bastion
// ("https://<Host>/<key hash hex>"): .invalid never resolves, so such a request cannot leave the process by mistake.
const Host = "bastion.sigsumd.invalid"

// maxResponseBytes bounds what a witness may answer through the bastion (a cosignature is about 150 bytes).
const maxResponseBytes = 1 << 20

// Config configures a Bastion.
type Config struct {
	// Addr is the listen address (host:port).
	Addr string
	// CertFile and KeyFile are the listener's TLS certificate and key (PEM): the name witnesses dial must be in it.
	CertFile, KeyFile string
	// Allowed says whether a witness key hash may connect: the trust policy's witnesses. It may be swapped by a
	// reload; it is called concurrently.
	Allowed func(keyHash sigsum.Hash) bool
	// Logger receives connection events (info) and failures; nil means slog.Default().
	Logger *slog.Logger
}

// Bastion is a running built-in bastion.
type Bastion struct {
	b      *tbastion.Bastion
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	logger *slog.Logger
	cert   *tls.Certificate
}

// Start listens on cfg.Addr and serves backend (witness) connections until Close.
func Start(cfg Config) (*Bastion, error) {
	if cfg.Addr == "" || cfg.CertFile == "" || cfg.KeyFile == "" || cfg.Allowed == nil {
		return nil, errors.New("bastion: Addr, CertFile, KeyFile and Allowed are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("bastion certificate: %w", err)
	}
	bs := &Bastion{logger: logger, cert: &cert, done: make(chan struct{})}
	b, err := tbastion.New(&tbastion.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return bs.certificate(), nil },
		AllowedBackend: func(kh [sha256.Size]byte) bool { return cfg.Allowed(sigsum.Hash(kh)) },
		Log:            logger,
	})
	if err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	bs.b = b
	bs.srv = &http.Server{
		// Only witnesses speak to this listener, over bastion/0; anything else gets a 404 and a short read bound.
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "this is the log's bastion for its witnesses: nothing is served over HTTP here", http.StatusNotFound)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return bs.certificate(), nil },
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	if err := b.ConfigureServer(bs.srv); err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bastion: %w", err)
	}
	bs.ln = ln
	go func() {
		defer close(bs.done)
		if err := bs.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("bastion listener stopped", "err", err)
		}
	}()
	logger.Info("bastion listening for witnesses", "addr", ln.Addr().String())
	return bs, nil
}

func (bs *Bastion) certificate() *tls.Certificate { return bs.cert }

// Addr is the address the bastion listens on.
func (bs *Bastion) Addr() net.Addr { return bs.ln.Addr() }

// Close stops the listener and the witnesses' connections.
func (bs *Bastion) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := bs.srv.Shutdown(ctx)
	if err != nil {
		bs.srv.Close()
	}
	<-bs.done
	return err
}

// URL is where the witness collector reaches the witness with key hash kh through the bastion (Transport).
func (bs *Bastion) URL(kh sigsum.Hash) string { return "https://" + Host + "/" + kh.String() }

// Transport returns a RoundTripper that serves requests for URL(kh)/... in process, over witness kh's connection
// to the bastion; a witness that is not connected gets 502. Other hosts go to next.
func (bs *Bastion) Transport(next http.RoundTripper) http.RoundTripper {
	return &transport{bs: bs, next: next}
}

type transport struct {
	bs   *Bastion
	next http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != Host {
		return t.next.RoundTrip(r)
	}
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.Host = Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	w := &response{header: make(http.Header)}
	t.bs.b.ServeHTTP(w, in)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.overflow {
		return nil, fmt.Errorf("witness answer through the bastion longer than %d bytes", maxResponseBytes)
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)),
		StatusCode:    w.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       r,
	}, nil
}

// response is a bounded in-memory http.ResponseWriter.
type response struct {
	header   http.Header
	code     int
	body     bytes.Buffer
	overflow bool
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.body.Len()+len(p) > maxResponseBytes {
		w.overflow = true
		return 0, errors.New("response too long")
	}
	return w.body.Write(p)
}

// Flush is a no-op: the whole answer is returned at once.
func (w *response) Flush() {}

// Package node assembles a sigsumd node from its configuration: logging, the signing key, the Trillian engine,
// the role (primary or secondary), metrics and the two HTTP listeners, and runs it until its context ends.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/trillian"
	tprom "github.com/google/trillian/monitoring/prometheus"

	"github.com/sigsumd/sigsumd/internal/bastion"
	"github.com/sigsumd/sigsumd/internal/buildinfo"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/datadir"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/httpguard"
	"github.com/sigsumd/sigsumd/internal/lockfile"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/nodetls"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/secondary"
	"github.com/sigsumd/sigsumd/internal/status"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// shutdownGrace bounds how long in-flight requests may take to finish on shutdown.
const shutdownGrace = 10 * time.Second

// role is what a primary or secondary gives the node: its loop, its two handlers and its readiness.
type role interface {
	Run(ctx context.Context) error
	PublicHandler(prefix string) http.Handler
	InternalHandler(prefix string) http.Handler
	Ready(ctx context.Context) error
	// Degraded says why a ready node runs with less redundancy or knowledge than configured, or "".
	Degraded() string
	// Detail is one line of facts for /readyz after the verdict (the published head and its age), or "".
	Detail() string
	// Status is the role's part of the status page.
	Status(ctx context.Context, now time.Time) status.Report
}

// NewLogger returns a logger writing to out in the configured format, at level.
func NewLogger(cfg *config.Config, out io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// Options are what Run needs beyond the configuration.
type Options struct {
	// LogOut receives the logs.
	LogOut io.Writer
	// Reload reads the configuration again, on SIGHUP; nil disables reloading.
	Reload func() (*config.Config, error)
}

// Run starts the node cfg describes and serves until ctx is done; then it drains requests, stops its loops and
// closes its storage.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	var level slog.LevelVar
	level.Set(cfg.LogLevel)
	out := opts.LogOut
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("log-file: %w", err)
		}
		defer f.Close()
		out = f
	}
	logger := NewLogger(cfg, out, &level).With("role", string(cfg.Role))
	engine.RouteKlog(logger.With("component", "trillian"))

	signer, err := key.LoadSigner(ctx, cfg.KeyFile, "")
	if err != nil {
		return fmt.Errorf("key-file: %w", err)
	}
	defer signer.Close()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	// The data directory's lock keeps two nodes, or a node and sigsumctl promote, off one node's state.
	lock, err := lockfile.Acquire(datadir.Dir(cfg.DataDir).Lock())
	if err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	defer lock.Release()

	pub := signer.Public()
	m := metrics.New(pub.KeyHash().String())
	eng, err := openEngine(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer eng.Close()

	n := &node{cfg: cfg, logger: logger, level: &level, metrics: m, signer: signer, reload: opts.Reload}
	if cfg.InsecureInternalHTTP {
		logger.Warn("insecure-internal-http: the internal API is plain HTTP without authentication; anyone who " +
			"reaches it can read unpublished leaves, hold long-poll slots and feed a secondary forged leaves")
	} else {
		cert, err := nodetls.Certificate(signer)
		if err != nil {
			return err
		}
		n.cert = &cert
	}
	switch cfg.Role {
	case config.RolePrimary:
		n.role, err = n.newPrimary(ctx, eng)
	case config.RoleSecondary:
		n.role, err = n.newSecondary(ctx, eng)
	default:
		err = fmt.Errorf("unknown role %q", cfg.Role)
	}
	if err != nil {
		return err
	}
	// Last, after the role and the reload watcher stop: the witness requests still in flight end, and what the
	// witnesses answered is saved.
	defer func() {
		if n.collector != nil {
			n.collector.Close()
		}
		if n.bastion != nil {
			n.bastion.Close()
		}
	}()
	if c, ok := n.role.(io.Closer); ok {
		defer func() {
			if err := c.Close(); err != nil {
				logger.Error("closing", "err", err)
			}
		}()
	}
	stopReload := n.reloadOnHUP()
	defer stopReload()
	return n.serve(ctx)
}

// node is a running node's parts.
type node struct {
	cfg     *config.Config
	logger  *slog.Logger
	level   *slog.LevelVar
	metrics *metrics.Metrics
	signer  key.Signer
	reload  func() (*config.Config, error)
	role    role
	log     engine.Log
	// cert is the node's TLS certificate for the internal API (nil with insecure-internal-http); peers are the
	// keys a primary's internal API admits (its secondaries').
	cert  *tls.Certificate
	peers []sigsum.PublicKey
	// collector is the witness collector in force (nil: none); a reload's new one shares its state.
	collector *witness.Collector
	// bastion is the built-in bastion (nil: none); bastionWitnesses, the key hashes it admits: the trust policy's
	// witnesses, swapped by a reload.
	bastion          *bastion.Bastion
	bastionWitnesses atomic.Pointer[map[sigsum.Hash]bool]
}

// internalClient returns a client for another node's internal API at url: under mutual TLS, presenting this node's
// certificate and accepting only a server that proves peer.
func (n *node) internalClient(url string, peer sigsum.PublicKey) (*client.Client, error) {
	cfg := client.Config{URL: url, Timeout: n.cfg.Timeout}
	if n.cert != nil {
		cfg.HTTPClient = nodetls.HTTPClient(n.cert, peer)
	}
	return client.New(cfg)
}

func openEngine(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*engine.Engine, error) {
	if cfg.TrillianRPCServer != "" {
		return engine.DialExternal(cfg.TrillianRPCServer)
	}
	return engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage:           cfg.Storage,
		SequencerInterval: cfg.SequencerInterval,
		BatchSize:         cfg.SequencerBatchSize,
		// Trillian's own metrics (sequencer, storage) join ours on /metrics.
		MetricFactory: tprom.MetricFactory{Prefix: "trillian_"},
		Logger:        logger.With("component", "storage"),
	})
}

func (n *node) newPrimary(ctx context.Context, eng *engine.Engine) (role, error) {
	cfg := n.cfg
	log, err := eng.OpenTree(ctx, engine.TreeConfig{IDFile: cfg.TreeIDFile, Type: trillian.TreeType_LOG, Create: true,
		DisplayName: "sigsumd primary"})
	if err != nil {
		return nil, err
	}
	n.log = log
	var secs []primary.Secondary
	for _, s := range cfg.Secondaries() {
		pub, err := key.ReadPublicKeyFile(s.PubkeyFile)
		if err != nil {
			return nil, fmt.Errorf("secondary %s: %w", s.URL, err)
		}
		c, err := n.internalClient(s.URL, pub)
		if err != nil {
			return nil, fmt.Errorf("secondary %s: %w", s.URL, err)
		}
		n.peers = append(n.peers, pub)
		name := s.Name
		if name == "" {
			name = s.URL
		}
		secs = append(secs, primary.Secondary{Name: name, Client: c, Key: pub})
	}
	var access func(http.Handler) http.Handler
	if n.cert != nil {
		// Unpublished leaves and long-poll slots are for the configured secondaries only.
		access = func(h http.Handler) http.Handler { return nodetls.Require(n.peers, h) }
	}
	pcfg := primary.Config{
		InternalAccess:  access,
		Log:             log,
		Signer:          n.signer,
		STHFile:         cfg.Primary.STHFile,
		Secondaries:     secs,
		SecondaryQuorum: cfg.Primary.SecondaryQuorum,
		Interval:        cfg.Interval,
		Timeout:         cfg.Timeout,
		MaxRange:        cfg.Primary.MaxRange,
		WitnessInterval: cfg.Primary.WitnessInterval,
		Logger:          n.logger,
		Metrics:         n.metrics,
		PublishedFile:   datadir.Dir(cfg.DataDir).Published(),
	}
	if pcfg.Policy, pcfg.Witnesses, err = n.witnessing(cfg); err != nil {
		return nil, err
	}
	if cfg.Primary.RateLimitFile != "" {
		var resolver ratelimit.Resolver
		if cfg.Primary.DNSServer != "" {
			resolver = dnsResolver(cfg.Primary.DNSServer)
		}
		lim, err := ratelimit.New(ratelimit.Config{
			Resolver:        resolver,
			LimitsFile:      cfg.Primary.RateLimitFile,
			StateFile:       datadir.Dir(cfg.DataDir).RateLimitState(),
			LogKey:          n.signer.Public(),
			AllowTestDomain: cfg.Primary.AllowTestDomain,
			Logger:          n.logger.With("component", "ratelimit"),
		})
		if err != nil {
			return nil, fmt.Errorf("rate-limit-file: %w", err)
		}
		pcfg.Limiter = lim
	}
	return primary.New(ctx, pcfg)
}

// witnessing reads the trust policy, if any, and makes the collector for its witnesses: on a reload, one that
// shares the witnesses' state with the collector it replaces (n.collector).
func (n *node) witnessing(cfg *config.Config) (*policy.Policy, *witness.Collector, error) {
	if cfg.Primary.PolicyFile == "" {
		if cfg.Primary.BastionEndpoint != "" {
			return nil, nil, errors.New("bastion-endpoint: the bastion is for the trust policy's witnesses, and policy-file is not set")
		}
		return nil, nil, nil
	}
	pol, err := policy.ParseFile(cfg.Primary.PolicyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("policy-file: %w", err)
	}
	var via witness.Bastion
	if cfg.Primary.BastionEndpoint != "" {
		if err := n.startBastion(cfg, pol); err != nil {
			return nil, nil, err
		}
		via = n.bastion
	}
	c, err := witness.New(witness.Config{
		Bastion:     via,
		Witnesses:   pol.Witnesses(),
		LogKey:      n.signer.Public(),
		Proofs:      n.log.ConsistencyProof,
		StateFile:   datadir.Dir(cfg.DataDir).WitnessState(),
		Timeout:     cfg.Timeout,
		MinInterval: cfg.Primary.WitnessMinInterval,
		Logger:      n.logger.With("component", "witness"),
		Metrics:     n.metrics,
		Previous:    n.collector,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("policy-file: witnesses: %w", err)
	}
	n.collector = c
	return pol, c, nil
}

// startBastion starts the built-in bastion at its first call, admitting pol's witnesses; later calls (reloads) only
// swap the witnesses it admits. A new endpoint or certificate needs a restart.
func (n *node) startBastion(cfg *config.Config, pol *policy.Policy) error {
	admitted := make(map[sigsum.Hash]bool)
	for _, w := range pol.Witnesses() {
		admitted[w.KeyHash()] = true
	}
	if n.bastion != nil {
		old := n.cfg.Primary
		if cfg.Primary.BastionEndpoint != old.BastionEndpoint || cfg.Primary.BastionCertFile != old.BastionCertFile ||
			cfg.Primary.BastionKeyFile != old.BastionKeyFile {
			return errors.New("bastion-endpoint, bastion-cert-file, bastion-key-file: a change needs a restart")
		}
		n.bastionWitnesses.Store(&admitted)
		return nil
	}
	n.bastionWitnesses.Store(&admitted)
	b, err := bastion.Start(bastion.Config{
		Addr:     cfg.Primary.BastionEndpoint,
		CertFile: cfg.Primary.BastionCertFile,
		KeyFile:  cfg.Primary.BastionKeyFile,
		Allowed:  func(kh sigsum.Hash) bool { return (*n.bastionWitnesses.Load())[kh] },
		Logger:   n.logger.With("component", "bastion"),
	})
	if err != nil {
		return fmt.Errorf("bastion-endpoint: %w", err)
	}
	n.bastion = b
	return nil
}

func (n *node) newSecondary(ctx context.Context, eng *engine.Engine) (role, error) {
	cfg := n.cfg
	log, err := eng.OpenTree(ctx, engine.TreeConfig{IDFile: cfg.TreeIDFile, Type: trillian.TreeType_PREORDERED_LOG,
		Create: true, DisplayName: "sigsumd secondary"})
	if err != nil {
		return nil, err
	}
	n.log = log
	var primaryKey sigsum.PublicKey
	if n.cert != nil {
		if primaryKey, err = key.ReadPublicKeyFile(cfg.Secondary.PrimaryPubkeyFile); err != nil {
			return nil, fmt.Errorf("primary-pubkey-file: %w", err)
		}
	}
	c, err := n.internalClient(cfg.Secondary.PrimaryURL, primaryKey)
	if err != nil {
		return nil, fmt.Errorf("primary-url: %w", err)
	}
	scfg := secondary.Config{
		Log:      log,
		Signer:   n.signer,
		Primary:  c,
		Interval: cfg.Interval,
		Timeout:  cfg.Timeout,
		Logger:   n.logger,
		Metrics:  n.metrics,
	}
	if cfg.Secondary.PrimaryPublicURL != "" {
		logKey, err := key.ReadPublicKeyFile(cfg.Secondary.LogPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("log-public-key-file: %w", err)
		}
		pub, err := client.New(client.Config{URL: cfg.Secondary.PrimaryPublicURL, Timeout: cfg.Timeout})
		if err != nil {
			return nil, fmt.Errorf("primary-public-url: %w", err)
		}
		scfg.LogKey, scfg.PrimaryPublic = &logKey, pub
		scfg.PublishedFile = datadir.Dir(cfg.DataDir).Published()
		if cfg.Secondary.PolicyFile != "" {
			pol, err := policy.ParseFile(cfg.Secondary.PolicyFile)
			if err != nil {
				return nil, err
			}
			scfg.Witnesses = pol.Witnesses()
		}
	} else {
		n.logger.Warn("primary-public-url and log-public-key-file are not set: this secondary does not follow the " +
			"log's published head, so sigsumctl promote cannot prove it is safe to promote (sigsumctl init writes them)")
	}
	return secondary.New(scfg)
}

// dnsResolver asks the DNS server at addr (host:port), and only it, for submit tokens' TXT records.
func dnsResolver(addr string) *net.Resolver {
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// publicHandler is the role's public API with the status page at its base (<prefix>/) and as JSON beside it. The
// paths are matched by hand, not by mux patterns, so that no prefix can make pattern registration panic.
func (n *node) publicHandler() http.Handler {
	base := "/"
	if p := strings.Trim(n.cfg.URLPrefix, "/"); p != "" {
		base = "/" + p + "/"
	}
	api := n.role.PublicHandler(n.cfg.URLPrefix)
	page, data := status.PageHandler(n.status), status.JSONHandler(n.status)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.Handler
		switch r.URL.Path {
		case base:
			h = page
		case base + status.JSONPath:
			h = data
		default:
			api.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// status is the node's report: the role's facts, with the build, readiness (as /readyz says it) and the read
// endpoints.
func (n *node) status(r *http.Request) status.Report {
	now := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.Timeout)
	defer cancel()
	rep := n.role.Status(ctx, now)
	rep.Version, rep.Time = buildinfo.String("sigsumd"), now.UTC()
	if rep.Primary != nil {
		rep.Primary.InternalURL, rep.Primary.PublicURL = n.cfg.Secondary.PrimaryURL, n.cfg.Secondary.PrimaryPublicURL
	}
	rep.Ready = true
	if err := n.role.Ready(ctx); err != nil {
		rep.Ready = false
		rep.Reasons = append(rep.Reasons, "not ready: "+err.Error())
	}
	if d := n.role.Degraded(); d != "" {
		rep.Degraded = true
		rep.Reasons = append(rep.Reasons, d)
	}
	// The read API: a primary's, and a secondary's that follows the published head.
	if rep.Role == "primary" || rep.Published != nil {
		rep.Links = []status.Link{{Name: "get-tree-head", Href: "get-tree-head"}, {Name: "checkpoint", Href: "checkpoint"}}
		if rep.Published != nil && rep.Published.Size > 0 {
			end := min(rep.Published.Size, 16)
			tile := "000"
			if rep.Published.Size < 256 {
				tile = fmt.Sprintf("000.p/%d", rep.Published.Size)
			}
			for _, l := range []string{fmt.Sprintf("get-leaves/0/%d", end), "tile/0/" + tile, "tile/entries/" + tile} {
				rep.Links = append(rep.Links, status.Link{Name: l, Href: l})
			}
		}
	}
	rep.Links = append(rep.Links, status.Link{Name: status.JSONPath, Href: status.JSONPath})
	return rep
}

// internalHandler adds the operator's endpoints to the role's internal API: /metrics, /livez, /readyz and, if
// enabled, /debug/pprof/.
func (n *node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", n.metrics.Instrument(n.role.InternalHandler(n.cfg.URLPrefix)))
	mux.Handle("GET /metrics", n.metrics.Handler())
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.role.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		// Degraded is ready, 200 with the reason: a load balancer must not pull a primary that still commits
		// with k of n secondaries (or without any), nor a secondary that serves what it holds.
		verdict := "ready"
		if reason := n.role.Degraded(); reason != "" {
			verdict = "ready, degraded: " + strings.ReplaceAll(reason, "\n", " ")
		}
		fmt.Fprintln(w, verdict)
		if d := n.role.Detail(); d != "" {
			fmt.Fprintln(w, strings.ReplaceAll(d, "\n", " "))
		}
	})
	if n.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serverErrors carries net/http's own error lines to the node's log: a failing accept (out of file descriptors,
// most often) at warn, once and then at most every serverErrorsEvery with a count, since the server retries it
// within milliseconds; the rest (TLS handshakes of scanners, clients that hang up) at debug.
type serverErrors struct {
	logger *slog.Logger

	mu         sync.Mutex
	logged     time.Time
	suppressed int
}

const serverErrorsEvery = 10 * time.Second

func (s *serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if !strings.Contains(msg, "Accept error") {
		s.logger.Debug(msg)
		return len(p), nil
	}
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.logged) < serverErrorsEvery {
		s.suppressed++
		s.mu.Unlock()
		return len(p), nil
	}
	n := s.suppressed
	s.logged, s.suppressed = now, 0
	s.mu.Unlock()
	s.logger.Warn("listener cannot accept connections (out of file descriptors? raise LimitNOFILE)", "err", msg, "repeats_since_last", n)
	return len(p), nil
}

// serve runs the role's loop and both listeners until ctx is done, then shuts them down in order: stop taking
// requests and drain them, then stop the loop.
func (n *node) serve(ctx context.Context) error {
	cfg, logger := n.cfg, n.logger
	listeners := []struct {
		name, addr string
		handler    http.Handler
		tls        bool
	}{
		{"public", cfg.ExternalEndpoint, n.metrics.Instrument(n.publicHandler()), cfg.TLSCertFile != ""},
		{"internal", cfg.InternalEndpoint, n.internalHandler(), n.cert != nil},
	}
	var servers []*http.Server
	var lns []net.Listener
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return fmt.Errorf("%s listener: %w", l.name, err)
		}
		var tlsConfig *tls.Config
		if l.name == "internal" && l.tls {
			tlsConfig = nodetls.ServerConfig(*n.cert)
		}
		lns = append(lns, ln)
		servers = append(servers, &http.Server{
			TLSConfig: tlsConfig,
			// Guarded once here: non-canonical paths get a one-line 404, on every listener and role.
			Handler: httpguard.Wrap(l.handler),
			// A slow or stalled client is cut off: headers within 10 s, the whole request within 30 s.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      cfg.Timeout + 10*time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          log.New(&serverErrors{logger: logger.With("listener", l.name)}, "", 0),
		})
		scheme := "http"
		if l.tls {
			scheme = "https"
		}
		logger.Info("listening", "listener", l.name, "addr", ln.Addr().String(), "scheme", scheme)
	}

	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoop()
	errs := make(chan error, len(servers))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A loop that gives up (a diverged secondary) leaves the listeners up: the node keeps answering, with
		// its reason, until the operator looks.
		if err := n.role.Run(loopCtx); err != nil {
			logger.Error("loop stopped", "err", err)
		}
	}()
	for i, srv := range servers {
		go func() {
			var err error
			switch {
			case srv.TLSConfig != nil:
				err = srv.ServeTLS(lns[i], "", "") // the node certificate, in TLSConfig
			case listeners[i].tls:
				err = srv.ServeTLS(lns[i], cfg.TLSCertFile, cfg.TLSKeyFile)
			default:
				err = srv.Serve(lns[i])
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s listener: %w", listeners[i].name, err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case runErr = <-errs:
		logger.Error("stopping", "err", runErr)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(shutCtx); err != nil {
			srv.Close()
		}
	}
	stopLoop()
	wg.Wait()
	logger.Info("stopped")
	return runErr
}

// reloadOnHUP re-reads the configuration on SIGHUP and applies what can change without a restart: the log level
// and, for a primary, the trust policy and the rate-limit file. A bad new file is refused and the old one kept.
// The returned func stops it.
func (n *node) reloadOnHUP() func() {
	if n.reload == nil {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			if err := n.applyReload(); err != nil {
				n.logger.Error("reload refused; the old configuration stays", "err", err)
				continue
			}
			n.logger.Info("reloaded configuration", "log_level", n.level.Level().String())
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

func (n *node) applyReload() error {
	cfg, err := n.reload()
	if err != nil {
		return err
	}
	if p, ok := n.role.(*primary.Primary); ok {
		pol, c, err := n.witnessing(cfg)
		if err != nil {
			return err
		}
		if cfg.Primary.RateLimitFile != n.cfg.Primary.RateLimitFile {
			return errors.New("rate-limit-file: a new path needs a restart (edit the file in place to reload it)")
		}
		if err := p.Reload(); err != nil {
			return err
		}
		p.SetWitnessing(pol, c)
	}
	n.level.Set(cfg.LogLevel)
	return nil
}

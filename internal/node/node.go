// Package node assembles a sigsumd node from its configuration: logging, the signing key, the Trillian engine,
// the role (primary or secondary), metrics and the two HTTP listeners, and runs it until its context ends.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	tpb "github.com/google/trillian"
	tprom "github.com/google/trillian/monitoring/prometheus"

	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/lockfile"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/internal/secondary"
	"github.com/sigsumd/sigsumd/internal/trillian"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
)

// shutdownGrace bounds how long in-flight requests may take to finish on shutdown.
const shutdownGrace = 10 * time.Second

// role is what a primary or secondary gives the node: its loop, its two handlers and its readiness.
type role interface {
	Run(ctx context.Context) error
	PublicHandler(prefix string) http.Handler
	InternalHandler(prefix string) http.Handler
	Ready(ctx context.Context) error
}

// LockFile returns the path of a data directory's lock file.
func LockFile(dataDir string) string { return filepath.Join(dataDir, "sigsumd.lock") }

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
	trillian.RouteKlog(logger.With("component", "trillian"))

	signer, err := key.LoadSigner(ctx, cfg.KeyFile, "")
	if err != nil {
		return fmt.Errorf("key-file: %w", err)
	}
	defer signer.Close()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	// The data directory's lock keeps two nodes, or a node and sigsumctl promote, off one node's state.
	lock, err := lockfile.Acquire(LockFile(cfg.DataDir))
	if err != nil {
		return fmt.Errorf("data-dir: %w", err)
	}
	defer lock.Release()

	pub := signer.Public()
	m := metrics.New(pub.KeyHash().String())
	engine, err := openEngine(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer engine.Close()

	n := &node{cfg: cfg, logger: logger, level: &level, metrics: m, signer: signer, reload: opts.Reload}
	switch cfg.Role {
	case config.RolePrimary:
		n.role, err = n.newPrimary(ctx, engine)
	case config.RoleSecondary:
		n.role, err = n.newSecondary(ctx, engine)
	default:
		err = fmt.Errorf("unknown role %q", cfg.Role)
	}
	if err != nil {
		return err
	}
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
	log     *trillian.Log
}

func openEngine(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*trillian.Engine, error) {
	if cfg.TrillianRPCServer != "" {
		return trillian.DialExternal(cfg.TrillianRPCServer)
	}
	return trillian.StartEmbedded(ctx, trillian.EmbeddedConfig{
		Storage:           cfg.Storage.String(),
		SequencerInterval: cfg.SequencerInterval,
		BatchSize:         cfg.SequencerBatchSize,
		// Trillian's own metrics (sequencer, storage) join ours on /metrics.
		MetricFactory: tprom.MetricFactory{Prefix: "trillian_"},
		Logger:        logger.With("component", "storage"),
	})
}

func (n *node) newPrimary(ctx context.Context, engine *trillian.Engine) (role, error) {
	cfg := n.cfg
	log, err := engine.OpenTree(ctx, trillian.TreeConfig{IDFile: cfg.TreeIDFile, Type: tpb.TreeType_LOG, Create: true,
		DisplayName: "sigsumd primary"})
	if err != nil {
		return nil, err
	}
	n.log = log
	var secs []primary.Secondary
	for _, s := range cfg.Secondaries() {
		c, err := client.New(client.Config{URL: s.URL, Timeout: cfg.Timeout})
		if err != nil {
			return nil, fmt.Errorf("secondary %s: %w", s.URL, err)
		}
		pub, err := key.ReadPublicKeyFile(s.PubkeyFile)
		if err != nil {
			return nil, fmt.Errorf("secondary %s: %w", s.URL, err)
		}
		name := s.Name
		if name == "" {
			name = s.URL
		}
		secs = append(secs, primary.Secondary{Name: name, Client: c, Key: pub})
	}
	pcfg := primary.Config{
		Log:             log,
		Signer:          n.signer,
		STHFile:         cfg.Primary.STHFile,
		Secondaries:     secs,
		SecondaryQuorum: cfg.Primary.SecondaryQuorum,
		Interval:        cfg.Interval,
		Timeout:         cfg.Timeout,
		MaxRange:        cfg.Primary.MaxRange,
		Logger:          n.logger,
		Metrics:         n.metrics,
		PublishedFile:   filepath.Join(cfg.DataDir, "published-tree-head"),
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
			StateFile:       filepath.Join(cfg.DataDir, "rate-limit-state"),
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

// witnessing reads the trust policy, if any, and makes the collector for its witnesses.
func (n *node) witnessing(cfg *config.Config) (*policy.Policy, *witness.Collector, error) {
	if cfg.Primary.PolicyFile == "" {
		return nil, nil, nil
	}
	pol, err := policy.ParseFile(cfg.Primary.PolicyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("policy-file: %w", err)
	}
	c, err := witness.New(witness.Config{
		Witnesses: pol.Witnesses(),
		LogKey:    n.signer.Public(),
		Proofs:    n.log.ConsistencyProof,
		StateFile: filepath.Join(cfg.DataDir, "witness-state"),
		Timeout:   cfg.Timeout,
		Logger:    n.logger.With("component", "witness"),
		Metrics:   n.metrics,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("policy-file: witnesses: %w", err)
	}
	return pol, c, nil
}

func (n *node) newSecondary(ctx context.Context, engine *trillian.Engine) (role, error) {
	cfg := n.cfg
	log, err := engine.OpenTree(ctx, trillian.TreeConfig{IDFile: cfg.TreeIDFile, Type: tpb.TreeType_PREORDERED_LOG,
		Create: true, DisplayName: "sigsumd secondary"})
	if err != nil {
		return nil, err
	}
	n.log = log
	c, err := client.New(client.Config{URL: cfg.Secondary.PrimaryURL, Timeout: cfg.Timeout})
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
		fmt.Fprintln(w, "ready")
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

// serve runs the role's loop and both listeners until ctx is done, then shuts them down in order: stop taking
// requests and drain them, then stop the loop.
func (n *node) serve(ctx context.Context) error {
	cfg, logger := n.cfg, n.logger
	listeners := []struct {
		name, addr string
		handler    http.Handler
		tls        bool
	}{
		{"public", cfg.ExternalEndpoint, n.metrics.Instrument(n.role.PublicHandler(cfg.URLPrefix)), cfg.TLSCertFile != ""},
		{"internal", cfg.InternalEndpoint, n.internalHandler(), false},
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
		lns = append(lns, ln)
		servers = append(servers, &http.Server{
			Handler: l.handler,
			// A slow or stalled client is cut off: headers within 10 s, the whole request within 30 s.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      cfg.Timeout + 10*time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
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
			if listeners[i].tls {
				err = srv.ServeTLS(lns[i], cfg.TLSCertFile, cfg.TLSKeyFile)
			} else {
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
		if err := p.Reload(cfg.Primary.RateLimitFile); err != nil {
			return err
		}
		p.SetWitnessing(pol, c)
	}
	n.level.Set(cfg.LogLevel)
	return nil
}

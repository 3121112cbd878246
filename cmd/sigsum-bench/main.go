// Command sigsum-bench is a bounded load generator for a Sigsum v1 log on loopback. It submits leaves as real
// clients do (each leaf re-posted every retry interval until the log answers 200), or reads the log
// (get-tree-head, get-leaves, inclusion and consistency proofs at random points), verifies every answer against
// the log's key, and prints one key=value line per mode:
//
//	sigsum-bench -log-url http://127.0.0.1:6965 -log-key key.pub -mode add-leaf,get-tree-head -c 64 -duration 15s
//
// Every run is bounded in time (-duration, plus -drain for leaves still waiting for 200) and in count (-leaves,
// -requests). A failed verification, an unexpected status or a transport error counts in errors=; the first few
// are described on stderr. Only loopback targets are accepted: this tool is for measuring, not for loading other
// people's logs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	cfg        Config
	modes      []string
	cpuProfile string
}

// parseArgs parses the command line into options, checking every bound.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("sigsum-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logURL  = fs.String("log-url", "http://127.0.0.1:6965", "base URL of the log (loopback only)")
		logKey  = fs.String("log-key", "", "the log's public key file (required): verifies tree heads")
		modes   = fs.String("mode", "add-leaf", "comma-separated modes: "+strings.Join(allModes, ", "))
		o       options
		timeout = fs.Duration("timeout", 10*time.Second, "per-request timeout")
	)
	fs.IntVar(&o.cfg.Concurrency, "c", 8, "concurrent requests")
	fs.DurationVar(&o.cfg.Duration, "duration", 15*time.Second, "how long each mode sends load (add-leaf: new leaves)")
	fs.DurationVar(&o.cfg.Drain, "drain", 10*time.Second, "add-leaf: how long to keep retrying accepted leaves after -duration")
	fs.DurationVar(&o.cfg.Retry, "retry", time.Second, "add-leaf: interval between submissions of a leaf until 200")
	fs.IntVar(&o.cfg.Probes, "probes", 0, "add-leaf: leaves kept in flight beside the load, one after another, each re-posted every -probe-retry until 200: the log's commit latency while the load's own re-posts wait for busy workers")
	fs.DurationVar(&o.cfg.ProbeRetry, "probe-retry", 10*time.Millisecond, "add-leaf: interval between submissions of a probe leaf until 200")
	fs.DurationVar(&o.cfg.ProbeSpread, "probe-spread", time.Second, "add-leaf: most a probe waits, at random, before its next leaf, so that its leaves arrive at random points of the log's rotation (at least the log's interval)")
	fs.IntVar(&o.cfg.MaxLeaves, "leaves", 200000, "add-leaf: most new leaves per run")
	fs.Int64Var(&o.cfg.MaxRequests, "requests", 5000000, "read modes and add-known: most requests per run")
	fs.IntVar(&o.cfg.Keys, "keys", 64, "number of submitter keys (derived from -key-seed)")
	fs.StringVar(&o.cfg.KeySeed, "key-seed", "sigsum-bench", "seed the submitter keys derive from; read modes verify leaves of these keys")
	fs.IntVar(&o.cfg.KnownLeaves, "known", 256, "add-known: number of committed leaves to resubmit")
	fs.IntVar(&o.cfg.Presign, "presign", 100000, "add-leaf, add-known: how many new leaves to sign before the clock starts (so that signing does not take the log's CPU); more are signed as they are sent")
	fs.Uint64Var(&o.cfg.Range, "range", 512, "get-leaves: leaves asked for per request (the log's max range)")
	fs.IntVar(&o.cfg.MaxSetupLeaves, "setup-leaves", 1<<20, "read modes: most leaves fetched and verified before the run")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (to tell its cost from the log's)")
	fs.IntVar(&o.cfg.VerifySample, "verify-sample", 200, "add-leaf: committed leaves whose inclusion is checked after the run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *logKey == "" {
		return nil, errors.New("-log-key is required")
	}
	pub, err := key.ReadPublicKeyFile(*logKey)
	if err != nil {
		return nil, err
	}
	o.cfg.LogKey = pub
	if err := checkLoopback(*logURL); err != nil {
		return nil, err
	}
	for _, m := range strings.Split(*modes, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !validMode(m) {
			return nil, fmt.Errorf("unknown mode %q (want %s)", m, strings.Join(allModes, ", "))
		}
		o.modes = append(o.modes, m)
	}
	switch {
	case len(o.modes) == 0:
		return nil, errors.New("-mode: no mode given")
	case o.cfg.Concurrency < 1 || o.cfg.Concurrency > 1024:
		return nil, fmt.Errorf("-c %d: want 1..1024", o.cfg.Concurrency)
	case o.cfg.Duration <= 0 || o.cfg.Duration > time.Hour:
		return nil, fmt.Errorf("-duration %v: want (0, 1h]", o.cfg.Duration)
	case o.cfg.Drain < 0 || o.cfg.Drain > time.Hour:
		return nil, fmt.Errorf("-drain %v: want [0, 1h]", o.cfg.Drain)
	case o.cfg.Retry <= 0:
		return nil, fmt.Errorf("-retry %v: want > 0", o.cfg.Retry)
	case o.cfg.Probes < 0 || o.cfg.Probes > 64:
		return nil, fmt.Errorf("-probes %d: want 0 to 64", o.cfg.Probes)
	case o.cfg.ProbeRetry <= 0:
		return nil, fmt.Errorf("-probe-retry %v: want > 0", o.cfg.ProbeRetry)
	case o.cfg.ProbeSpread < 0 || o.cfg.ProbeSpread > time.Hour:
		return nil, fmt.Errorf("-probe-spread %v: want [0, 1h]", o.cfg.ProbeSpread)
	case o.cfg.MaxLeaves < 1 || o.cfg.MaxRequests < 1 || o.cfg.Keys < 1 || o.cfg.KnownLeaves < 1 || o.cfg.Range < 1 ||
		o.cfg.MaxSetupLeaves < 2 || o.cfg.VerifySample < 0 || o.cfg.Presign < 0:
		return nil, errors.New("-leaves, -requests, -keys, -known, -range must be positive, -setup-leaves at least 2, -verify-sample and -presign not negative")
	case *timeout <= 0:
		return nil, fmt.Errorf("-timeout %v: want > 0", *timeout)
	}
	// Enough idle connections that every worker keeps its own: otherwise connections churn through TIME_WAIT
	// and the benchmark measures connection setup.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2*o.cfg.Concurrency + 16
	tr.MaxIdleConnsPerHost = 2*o.cfg.Concurrency + 16
	o.cfg.Client, err = client.New(client.Config{URL: *logURL, HTTPClient: &http.Client{Transport: tr}, Timeout: *timeout,
		UserAgent: "sigsum-bench"})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// checkLoopback refuses a URL whose host is not a loopback address or "localhost".
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-log-url: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("-log-url %q: no host", raw)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-log-url %q: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "sigsum-bench: %v\n", err)
		return 2
	}
	o.cfg.Stderr = stderr
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "sigsum-bench: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "sigsum-bench: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	b := NewBench(o.cfg)
	for _, m := range o.modes {
		if ctx.Err() != nil {
			return 1
		}
		r := b.Run(ctx, m)
		fmt.Fprintln(stdout, r.Line())
	}
	return 0
}

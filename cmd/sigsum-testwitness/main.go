// Command sigsum-testwitness runs internal/witness/witnesstest as a process, so integration tests can give a real
// sigsumd primary a real C2SP tlog-witness to talk to. It listens on loopback only.
//
//	sigsum-testwitness -listen 127.0.0.1:0 -key-file witness.key -name test-witness \
//	    -log-key-file log.pub [-log-key-file other.pub | -log-key-file a.pub,b.pub] [-state-file state]
//
// Once serving it prints one line, `listening on http://<addr>`, to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag collects a repeatable flag whose values may also be comma-separated lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sigsum-testwitness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "loopback `address` to listen on")
	keyFile := fs.String("key-file", "", "witness private key `file` (OpenSSH ed25519)")
	name := fs.String("name", "", "witness `name` on its cosignature lines")
	stateFile := fs.String("state-file", "", "state `file` (last cosigned head per log); empty: memory only")
	var logKeys listFlag
	fs.Var(&logKeys, "log-key-file", "log public key `file`s to cosign for (repeatable, or comma-separated)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 || *keyFile == "" || *name == "" || len(logKeys) == 0 {
		fmt.Fprintln(stderr, "sigsum-testwitness: -key-file, -name and at least one -log-key-file are required, and no arguments")
		return 2
	}
	if err := serve(ctx, *listen, *keyFile, *name, *stateFile, logKeys, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "sigsum-testwitness: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, listen, keyFile, name, stateFile string, logKeyFiles []string, stdout, stderr io.Writer) error {
	if err := checkLoopback(listen); err != nil {
		return err
	}
	signer, err := key.LoadSigner(ctx, keyFile, "")
	if err != nil {
		return err
	}
	defer signer.Close()
	var logs []sigsum.PublicKey
	for _, f := range logKeyFiles {
		k, err := key.ReadPublicKeyFile(f)
		if err != nil {
			return fmt.Errorf("log key: %w", err)
		}
		logs = append(logs, k)
	}
	w, err := witnesstest.New(witnesstest.Config{Name: name, Signer: signer, StateFile: stateFile, Logs: logs})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Check what was actually bound too: a host name could resolve to a non-loopback address.
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("listen: %s is not a loopback address", ln.Addr())
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	srv := &http.Server{
		Handler:           logRequests(w, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// checkLoopback refuses listen addresses whose host is not a loopback IP or "localhost": this witness is for tests.
func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: only loopback addresses are allowed", listen)
	}
	return nil
}

// statusRecorder remembers the status a handler wrote, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func logRequests(h http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: rw, status: http.StatusOK}
		h.ServeHTTP(rec, req)
		logger.Info("request", "method", req.Method, "path", req.URL.Path, "status", rec.status)
	})
}

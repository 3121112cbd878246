package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sigsumd/sigsumd/internal/monitor"
	"github.com/sigsumd/sigsumd/pkg/policy"
)

// monitorCmd follows a log. Leaves of watched keys go to stdout, one line each:
//
//	leaf index=<i> key_hash=<hex> checksum=<hex> signature=<ok|INVALID>
//
// Alerts go to stderr, one line each, `sigsumctl monitor: alert <kind>: <reason>`. Evidence of log misbehaviour
// (bad signature, inconsistent head, leaves that do not match the signed root) ends the monitor with exit status
// 1, its state left at the last verified head; an unreachable log, a head without quorum or a stale head is
// reported and the monitor keeps polling. With -once it makes one pass (catching up on every leaf) and any alert
// makes the exit status 1.
func monitorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("monitor", stderr)
	policyFile := flags.String("policy", "", "trust policy `file`: the log, witnesses and the quorum each head must meet (required)")
	var lf logFlags
	lf.register(flags)
	var watch keyFilesFlag
	flags.Var(&watch, "watch-key", "submitter public key `file` whose leaves to report; repeatable")
	stateFile := flags.String("state", "", "state `file`: last verified head and next leaf, so a restart resumes (default: none, start from leaf 0)")
	maxAge := flags.Duration("max-age", 0, "alert when the newest verified head (its newest cosignature, or the last successful poll) is older than this; 0: never")
	interval := flags.Duration("interval", 30*time.Second, "time between polls")
	once := flags.Bool("once", false, "make one pass and exit; any alert gives exit status 1")
	tiles := flags.Bool("tiles", false, "read leaves from the log's tiles (Sigsum v1.1 entry bundles) instead of get-leaves")
	batch := flags.Uint64("batch", monitor.DefaultBatchSize, "most leaves to fetch before proving them against the signed head")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *policyFile == "" {
		return errors.New("-policy is required")
	}
	if *interval <= 0 || *batch == 0 || *maxAge < 0 {
		return errors.New("-interval and -batch must be positive, -max-age not negative")
	}
	pol, err := policy.ParseFile(*policyFile)
	if err != nil {
		return err
	}
	logKey, c, err := lf.open(pol)
	if err != nil {
		return err
	}
	report := func(m monitor.Match) {
		sig := "ok"
		if !m.SignatureOK {
			sig = "INVALID"
			fmt.Fprintf(stderr, "sigsumctl monitor: alert bad-leaf-signature: leaf %d claims watched key %s but its signature does not verify\n",
				m.Index, m.Leaf.KeyHash)
		}
		fmt.Fprintf(stdout, "leaf index=%d key_hash=%s checksum=%s signature=%s\n", m.Index, m.Leaf.KeyHash, m.Leaf.Checksum, sig)
	}
	m, err := monitor.New(monitor.Config{Client: c, LogKey: logKey, Policy: pol, Watch: watch.keys,
		StateFile: *stateFile, MaxAge: *maxAge, BatchSize: *batch, OnLeaf: report, Tiles: *tiles})
	if err != nil {
		return err
	}
	if *once {
		for {
			if err := m.Once(ctx); err != nil {
				return err
			}
			if s := m.State(); s.Next >= s.Head.Size {
				return nil
			}
		}
	}
	return m.Run(ctx, *interval, func(a *monitor.Alert) {
		fmt.Fprintf(stderr, "sigsumctl monitor: %v\n", a)
	})
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/status"
	"github.com/sigsumd/sigsumd/internal/timeout"
)

// maxStatusBytes bounds a status report: a few kilobytes for a node with dozens of witnesses.
const maxStatusBytes = 1 << 20

// remoteStatus prints a running node's status report (its <prefix>/status.json) as key=value lines, one fact per
// line, and fails when the node is not ready, so that scripts can act on the exit code.
func remoteStatus(ctx context.Context, base string, stdout io.Writer) error {
	u := strings.TrimSuffix(base, "/") + "/" + status.JSONPath
	ctx, cancel := context.WithTimeout(ctx, timeout.Default)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(rsp.Body, maxStatusBytes+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	if rsp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s (is it a sigsumd node's public URL, with its prefix?)", u, rsp.Status)
	}
	if len(body) > maxStatusBytes {
		return fmt.Errorf("%s: report larger than %d bytes", u, maxStatusBytes)
	}
	var rep status.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("%s: not a status report: %w", u, err)
	}
	printStatus(stdout, &rep)
	if !rep.Ready {
		return errors.New("the node is not ready")
	}
	return nil
}

func printStatus(w io.Writer, rep *status.Report) {
	ages := func(s float64) string {
		if s < 0 {
			return "never"
		}
		return (time.Duration(s) * time.Second).String()
	}
	p := func(k string, v any) { fmt.Fprintf(w, "%s=%v\n", k, v) }
	p("role", rep.Role)
	p("version", rep.Version)
	p("ready", rep.Ready)
	p("degraded", rep.Degraded)
	for _, r := range rep.Reasons {
		p("reason", r)
	}
	if rep.LogKeyHash != "" {
		p("log_key_hash", rep.LogKeyHash)
	}
	if rep.NodeKeyHash != "" {
		p("node_key_hash", rep.NodeKeyHash)
	}
	if h := rep.Published; h != nil {
		p("published_size", h.Size)
		p("published_cosignatures", h.Cosignatures)
		p("published_age", ages(h.AgeSeconds))
	} else {
		p("published_size", "unknown")
	}
	p("local_size", rep.LocalSize)
	for _, wt := range rep.Witnesses {
		line := fmt.Sprintf("%s in_published=%t cosigned_size=%d age=%s", wt.Name, wt.InPublished, wt.CosignedSize,
			ages(wt.AgeSeconds))
		if wt.LastError != "" {
			line += " last_error=" + fmt.Sprintf("%q", wt.LastError)
		}
		p("witness", line)
	}
	for _, s := range rep.Secondaries {
		line := fmt.Sprintf("%s asked=%t verified_size=%d lag=%d", s.Name, s.Asked, s.VerifiedSize, s.Lag)
		if s.Error != "" {
			line += " error=" + fmt.Sprintf("%q", s.Error)
		}
		p("secondary", line)
	}
	if pr := rep.Primary; pr != nil {
		p("primary_url", pr.InternalURL)
		if pr.PublicURL != "" {
			p("primary_public_url", pr.PublicURL)
		}
		p("replication_lag", pr.Lag)
		p("published_checked_age", ages(pr.PublishedCheckedAgeSeconds))
	}
	if rl := rep.RateLimit; rl != nil {
		p("rate_limit", fmt.Sprintf("file=%s keys=%d domains=%d public=%d", rl.File, rl.Keys, rl.Domains, rl.Public))
	} else if rep.Role == "primary" {
		p("rate_limit", "off")
	}
}

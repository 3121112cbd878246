// Package witness collects witness cosignatures for the primary (C2SP tlog-witness client): it sends each signed
// tree head to every witness of the trust policy, verifies the cosignatures that come back, and remembers the size
// each witness last cosigned so that the next request carries the right old size and proof, across restarts too.
// It also persists the published cosigned head (SavePublished, LoadPublished).
package witness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults and bounds.
const (
	// DefaultTimeout bounds one add-checkpoint request when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// MaxResponseBytes bounds a witness's response body: a cosignature line is about 150 bytes.
	MaxResponseBytes = 64 << 10
	// MaxClockSkew is how far in the future a cosignature's timestamp may be; witnesses' clocks drift.
	MaxClockSkew = 5 * time.Minute
	// MaxCosignatureAge is how old a fresh cosignature's timestamp may be. A witness signs "now", so an older one
	// is a broken clock or a replayed answer, and would be useless to verifiers that check freshness.
	MaxCosignatureAge = 24 * time.Hour
	// sizeContentType is the media type of a 409 answer carrying the witness's size (C2SP tlog-witness).
	sizeContentType = "text/x.tlog.size"
)

// Config configures a Collector.
type Config struct {
	// Witnesses to contact; those without a URL are skipped (a policy may name witnesses only verifiers use).
	Witnesses []policy.Witness
	// LogKey is the log's public key; it makes the checkpoint origin and verifies the heads to send.
	LogKey sigsum.PublicKey
	// Proofs returns a consistency proof between two sizes of the primary's tree.
	Proofs func(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
	// StateFile persists each witness's last cosigned size; empty keeps it in memory only.
	StateFile string
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// HTTPClient makes the requests; nil means a client of its own with keep-alive.
	HTTPClient *http.Client
	// Logger receives one line per failed witness request; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for timestamp checks; nil means time.Now.
	Now func() time.Time
	// Metrics records each request (nil: none).
	Metrics *metrics.Metrics
}

// Collector gathers cosignatures from the configured witnesses. It is safe for concurrent use.
type Collector struct {
	metrics   *metrics.Metrics
	witnesses []policy.Witness
	logKey    sigsum.PublicKey
	origin    string
	proofs    func(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
	file      string
	timeout   time.Duration
	hc        *http.Client
	log       *slog.Logger
	now       func() time.Time

	mu    sync.Mutex
	sizes map[sigsum.Hash]uint64 // witness key hash → the size it holds, as far as we know
	dirty bool                   // sizes changed since the last save

	saveMu sync.Mutex // serialises state file writes, so an older snapshot never replaces a newer one
}

// New returns a Collector, loading the witnesses' sizes from cfg.StateFile if it exists.
func New(cfg Config) (*Collector, error) {
	if cfg.Proofs == nil {
		return nil, errors.New("witness collector: Proofs is required")
	}
	c := &Collector{
		metrics: cfg.Metrics,
		logKey:  cfg.LogKey,
		origin:  sigsum.Origin(cfg.LogKey),
		proofs:  cfg.Proofs,
		file:    cfg.StateFile,
		timeout: cfg.Timeout,
		hc:      cfg.HTTPClient,
		log:     cfg.Logger,
		now:     cfg.Now,
		sizes:   make(map[sigsum.Hash]uint64),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	seen := make(map[sigsum.Hash]bool)
	for _, w := range cfg.Witnesses {
		if w.URL == "" {
			c.log.Info("witness has no URL in the policy, not contacting it", "witness", w.Name)
			continue
		}
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("witness %s: URL %q is not http(s)://host[/path]", w.Name, w.URL)
		}
		// The state is keyed by key hash, so two entries with one key would share (and corrupt) it.
		kh := w.Key.KeyHash()
		if seen[kh] {
			return nil, fmt.Errorf("witness %s: key %s is listed twice", w.Name, w.Key)
		}
		seen[kh] = true
		c.witnesses = append(c.witnesses, w)
	}
	if c.file != "" {
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Cosign sends the signed head to every witness in parallel and returns the valid cosignatures gathered, sorted
// by witness key hash. Failures are logged, one line per witness. It returns when every witness has answered or
// timed out, or ctx is done.
func (c *Collector) Cosign(ctx context.Context, sth sigsum.SignedTreeHead) []sigsum.Cosignature {
	if !sth.Verify(c.logKey) {
		// Every witness would refuse it with 403; say so once instead.
		c.log.Error("not sending tree head to witnesses: not signed by the log key", "size", sth.Size)
		return nil
	}
	note := sth.SignedNote(c.logKey)
	results := make([]*sigsum.Cosignature, len(c.witnesses))
	var wg sync.WaitGroup
	for i, w := range c.witnesses {
		wg.Go(func() { results[i] = c.cosignOne(ctx, w, &sth, note) })
	}
	wg.Wait()
	if err := c.save(); err != nil {
		// Not fatal: the next round may start with a 409, which costs one request.
		c.log.Warn("saving witness state", "err", err)
	}
	var out []sigsum.Cosignature
	for _, r := range results {
		if r != nil {
			out = append(out, *r)
		}
	}
	sigsum.SortCosignatures(out)
	return out
}

// Size returns the size the collector believes the witness with key hash kh holds (0 when unknown).
func (c *Collector) Size(kh sigsum.Hash) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sizes[kh]
}

// cosignOne runs the exchange with one witness: a request from the size it last cosigned and, on a 409, one
// retry from the size it reports.
func (c *Collector) cosignOne(ctx context.Context, w policy.Witness, sth *sigsum.SignedTreeHead, note []byte) *sigsum.Cosignature {
	kh := w.Key.KeyHash()
	old := c.Size(kh)
	if old > sth.Size {
		// Our record is ahead of the head (a stale or foreign state file): ask from 0, and the witness's 409
		// tells us where it really is.
		old = 0
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		status, ctype, body, err := c.post(ctx, w, sth, old, note)
		if err != nil {
			c.metrics.WitnessRequest(w.Name, "other", attempt > 0, time.Since(start))
			c.log.Warn("witness request failed", "witness", w.Name, "old", old, "size", sth.Size, "err", err)
			return nil
		}
		c.metrics.WitnessRequest(w.Name, strconv.Itoa(status), attempt > 0, time.Since(start))
		switch status {
		case http.StatusOK:
			cs, err := c.verify(w, sth, body)
			if err != nil {
				c.log.Warn("witness cosignature rejected", "witness", w.Name, "size", sth.Size, "err", err)
				return nil
			}
			c.setSize(kh, sth.Size)
			return &cs
		case http.StatusConflict:
			size, err := parseConflict(ctype, body)
			if err != nil {
				c.log.Warn("witness refused checkpoint", "witness", w.Name, "status", status, "reason", err)
				return nil
			}
			// Remember it even if we cannot use it now: it is where the next request must start.
			c.setSize(kh, size)
			if attempt > 0 || size > sth.Size || size == old {
				c.log.Warn("witness holds another size", "witness", w.Name, "witness_size", size, "old", old,
					"size", sth.Size)
				return nil
			}
			old = size
		default:
			c.log.Warn("witness refused checkpoint", "witness", w.Name, "status", status, "old", old,
				"size", sth.Size, "reason", firstLine(body))
			return nil
		}
	}
}

// post sends one add-checkpoint request and returns the status, content type and (bounded) body.
func (c *Collector) post(ctx context.Context, w policy.Witness, sth *sigsum.SignedTreeHead, old uint64, note []byte) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var p sigsum.ConsistencyProof
	if old != 0 && old != sth.Size {
		var err error
		if p, err = c.proofs(ctx, old, sth.Size); err != nil {
			return 0, "", nil, fmt.Errorf("consistency proof %d→%d: %w", old, sth.Size, err)
		}
	}
	req := sigsum.AddCheckpointRequest{OldSize: old, Proof: p.Path, Note: note}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint",
		bytes.NewReader(req.MarshalBinary()))
	if err != nil {
		return 0, "", nil, fmt.Errorf("building request: %w", err)
	}
	hr.Header.Set("Content-Type", "text/plain; charset=utf-8")
	hr.Header.Set("User-Agent", "sigsumd")
	resp, err := c.hc.Do(hr)
	if err != nil {
		return 0, "", nil, err
	}
	defer func() {
		// Drain a little of what is left so the connection can be reused, then close.
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
		resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading response (status %d): %w", resp.StatusCode, err)
	}
	if len(body) > MaxResponseBytes {
		return 0, "", nil, fmt.Errorf("response (status %d) larger than %d bytes", resp.StatusCode, MaxResponseBytes)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body, nil
}

// verify parses a 200 body and checks the witness's cosignature: key id, signature and timestamp.
func (c *Collector) verify(w policy.Witness, sth *sigsum.SignedTreeHead, body []byte) (sigsum.Cosignature, error) {
	// ParseWitnessCosignature picks the line with the witness's name and key id, so a line by another key (or
	// under another name) is not found.
	cs, err := sigsum.ParseWitnessCosignature(body, w.Name, w.Key)
	if err != nil {
		return cs, err
	}
	if !cs.Verify(w.Key, c.origin, &sth.TreeHead) {
		return cs, errors.New("cosignature does not verify")
	}
	now := c.now()
	t := time.Unix(int64(cs.Timestamp), 0)
	if t.After(now.Add(MaxClockSkew)) {
		return cs, fmt.Errorf("cosignature time %d is %v in the future", cs.Timestamp, t.Sub(now).Round(time.Second))
	}
	if t.Before(now.Add(-MaxCosignatureAge)) {
		return cs, fmt.Errorf("cosignature time %d is %v old", cs.Timestamp, now.Sub(t).Round(time.Second))
	}
	return cs, nil
}

// parseConflict reads the size from a 409 answer, which must be `<size>\n` of type text/x.tlog.size.
func parseConflict(ctype string, body []byte) (uint64, error) {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil || mt != sizeContentType {
		return 0, fmt.Errorf("409 with Content-Type %q, want %s: %s", ctype, sizeContentType, firstLine(body))
	}
	s, ok := bytes.CutSuffix(body, []byte("\n"))
	if !ok {
		return 0, errors.New("409 size does not end in a newline")
	}
	size, err := sigsum.ParseInt(string(s))
	if err != nil {
		return 0, fmt.Errorf("409 size: %w", err)
	}
	return size, nil
}

func (c *Collector) setSize(kh sigsum.Hash, size uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sizes[kh] != size {
		c.sizes[kh] = size
		c.dirty = true
	}
}

// firstLine returns a witness's reason for the log: its first line, printable, bounded.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, string(line))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// State file: one line per witness, `<witness key hash hex>=<size>`, sorted.

func (c *Collector) save() error {
	if c.file == "" {
		return nil
	}
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	sizes := maps.Clone(c.sizes)
	c.dirty = false
	c.mu.Unlock()
	var b bytes.Buffer
	for _, kh := range slices.SortedFunc(maps.Keys(sizes), func(a, b sigsum.Hash) int { return bytes.Compare(a[:], b[:]) }) {
		fmt.Fprintf(&b, "%s=%d\n", kh, sizes[kh])
	}
	if err := atomicfile.Write(c.file, b.Bytes(), 0o644); err != nil {
		c.mu.Lock()
		c.dirty = true // try again after the next round
		c.mu.Unlock()
		return fmt.Errorf("witness state: %w", err)
	}
	return nil
}

func (c *Collector) load() error {
	data, err := os.ReadFile(c.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return fmt.Errorf("witness state %s line %d: want <witness key hash>=<size>", c.file, n)
		}
		kh, err := sigsum.ParseHash(k)
		if err != nil {
			return fmt.Errorf("witness state %s line %d: %w", c.file, n, err)
		}
		size, err := sigsum.ParseInt(v)
		if err != nil {
			return fmt.Errorf("witness state %s line %d: %w", c.file, n, err)
		}
		c.sizes[kh] = size
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("witness state %s: %w", c.file, err)
	}
	return nil
}

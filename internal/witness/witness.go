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
	"github.com/sigsumd/sigsumd/internal/timeout"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults and bounds.
const (
	// DefaultMinInterval is the least time between two requests to one witness when Config.MinInterval is zero:
	// witness capacity is the ecosystem's scarcest resource (a hardware witness signs about 10 times a second, for
	// every log it serves).
	DefaultMinInterval = time.Second
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
	// Timeout bounds each request; zero means timeout.Default.
	Timeout time.Duration
	// MinInterval is the least time between two requests to one witness (zero: DefaultMinInterval; negative: no
	// limit at all); a round skips a witness asked more recently, or whose last request is still out.
	MinInterval time.Duration
	// HTTPClient makes the requests; nil means a client of its own with keep-alive.
	HTTPClient *http.Client
	// Logger receives one line per failed witness request; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for timestamp checks; nil means time.Now.
	Now func() time.Time
	// Metrics records each request (nil: none).
	Metrics *metrics.Metrics
	// Bastion, if set, reaches the witnesses that have no URL in the policy: they connect to the node's built-in
	// bastion, and their requests go over that connection.
	Bastion Bastion
	// Previous, if set, is the collector this one replaces (a policy reload): the witnesses' sizes, in memory and in
	// StateFile, stay one state that both update, so a round the old one still runs is not lost, the file is not
	// read while the old one writes it, and two writers never interleave.
	Previous *Collector
}

// Bastion is the node's built-in bastion (internal/bastion), as the collector uses it.
type Bastion interface {
	// URL is the base URL of witness kh through the bastion.
	URL(kh sigsum.Hash) string
	// Transport routes requests for such URLs over the witnesses' connections, and the rest to next.
	Transport(next http.RoundTripper) http.RoundTripper
}

// Collector gathers cosignatures from the configured witnesses. It is safe for concurrent use.
type Collector struct {
	metrics   *metrics.Metrics
	witnesses []policy.Witness
	logKey    sigsum.PublicKey
	origin    string
	proofs    func(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
	timeout   time.Duration
	minGap    time.Duration
	hc        *http.Client
	logger    *slog.Logger
	now       func() time.Time
	*state

	statusMu sync.Mutex
	status   map[sigsum.Hash]*Status // by witness key hash
}

// Status is what the collector knows of one witness, for operators (the info page, sigsumctl status).
type Status struct {
	Name    string      // the policy's name for it
	KeyHash sigsum.Hash // its key hash
	// CosignedSize and CosignedAt are its last valid cosignature's size and timestamp (zero: none yet).
	CosignedSize uint64
	CosignedAt   time.Time
	// LastError is why its last exchange gave no cosignature ("" when it gave one), at ErrorAt.
	LastError string
	ErrorAt   time.Time
	// Requests counts the add-checkpoint requests sent to it by this process.
	Requests int
}

// Status returns what the collector knows of each witness it contacts, in the policy's order.
func (c *Collector) Status() []Status {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	out := make([]Status, 0, len(c.witnesses))
	for _, w := range c.witnesses {
		if st := c.status[w.KeyHash()]; st != nil {
			out = append(out, *st)
		}
	}
	return out
}

// record notes the outcome of one exchange with w: a cosignature of size, or an error.
func (c *Collector) record(w policy.Witness, requests int, cs *Cosigned, size uint64, err error) {
	c.statusMu.Lock()
	st := c.status[w.KeyHash()]
	st.Requests += requests
	if cs != nil {
		st.CosignedSize, st.CosignedAt, st.LastError = size, time.Unix(int64(cs.Timestamp), 0), ""
	} else if err != nil {
		st.LastError, st.ErrorAt = firstLine([]byte(err.Error())), c.now()
	}
	c.statusMu.Unlock()
	if cs != nil {
		c.metrics.WitnessCosigned(w.Name, size, time.Unix(int64(cs.Timestamp), 0))
	} else {
		c.metrics.WitnessFailed(w.Name)
	}
}

// state is what the collector knows of the witnesses' sizes, and its file: one per state file, shared by a
// collector and those that replace it.
type state struct {
	file string

	mu    sync.Mutex
	sizes map[sigsum.Hash]uint64 // witness key hash → the size it holds, as far as we know
	dirty bool                   // sizes changed since the last save
	// sent is, by witness key hash, when its last request went out and whether it is still out (take, release).
	sent map[sigsum.Hash]*sent

	saveMu sync.Mutex // serialises state file writes, so an older snapshot never replaces a newer one

	// Rounds in flight, whose requests may outlive CosignUntil: Close cancels their requests (stop) and waits for
	// their answers to be recorded and saved. roundsMu orders a round's start against Close.
	roundsMu sync.Mutex
	closed   bool
	rounds   sync.WaitGroup
	stop     context.Context
	cancel   context.CancelFunc
}

// startRound registers a round and returns the context its requests use, or false once the state is closed.
func (s *state) startRound() (context.Context, bool) {
	s.roundsMu.Lock()
	defer s.roundsMu.Unlock()
	if s.closed {
		return nil, false
	}
	s.rounds.Add(1)
	return s.stop, true
}

// Close cancels the witness requests still in flight (a round returns early once its quorum is met and leaves the
// slow witnesses' requests running, each bounded by the timeout) and waits until their answers are recorded and the
// state file saved. Collectors that share the state (Config.Previous) are closed with it: call it once, at shutdown.
func (c *Collector) Close() error {
	c.roundsMu.Lock()
	c.closed = true
	c.roundsMu.Unlock()
	c.cancel()
	c.rounds.Wait()
	return nil
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
		timeout: cfg.Timeout,
		hc:      cfg.HTTPClient,
		logger:  cfg.Logger,
		now:     cfg.Now,
	}
	if p := cfg.Previous; p != nil && p.state.file == cfg.StateFile {
		c.state = p.state
	} else {
		c.state = &state{file: cfg.StateFile, sizes: make(map[sigsum.Hash]uint64), sent: make(map[sigsum.Hash]*sent)}
		c.stop, c.cancel = context.WithCancel(context.Background())
	}
	if c.timeout <= 0 {
		c.timeout = timeout.Default
	}
	switch {
	case cfg.MinInterval == 0:
		c.minGap = DefaultMinInterval
	case cfg.MinInterval > 0:
		c.minGap = cfg.MinInterval
	default:
		c.minGap = -1 // no limit
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if cfg.Bastion != nil {
		next := c.hc.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		hc := *c.hc
		hc.Transport = cfg.Bastion.Transport(next)
		c.hc = &hc
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	seen := make(map[sigsum.Hash]bool)
	for _, w := range cfg.Witnesses {
		if w.URL == "" && cfg.Bastion != nil {
			w.URL = cfg.Bastion.URL(w.KeyHash()) // it connects to the built-in bastion
		}
		if w.URL == "" {
			c.logger.Info("witness has no URL in the policy, not contacting it", "witness", w.Name)
			continue
		}
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("witness %s: URL %q is not http(s)://host[/path]", w.Name, w.URL)
		}
		// The state is keyed by key hash, so two entries with one key would share (and corrupt) it.
		kh := w.KeyHash()
		if seen[kh] {
			return nil, fmt.Errorf("witness %s: key (hash %s) is listed twice", w.Name, kh)
		}
		seen[kh] = true
		c.witnesses = append(c.witnesses, w)
	}
	c.status = make(map[sigsum.Hash]*Status, len(c.witnesses))
	for _, w := range c.witnesses {
		st := Status{Name: w.Name, KeyHash: w.KeyHash()}
		if p := cfg.Previous; p != nil {
			p.statusMu.Lock()
			if old := p.status[st.KeyHash]; old != nil {
				st = *old
				st.Name = w.Name
			}
			p.statusMu.Unlock()
		}
		c.status[st.KeyHash] = &st
	}
	if c.file != "" && (cfg.Previous == nil || cfg.Previous.state != c.state) {
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Cosigned is a verified cosignature together with the note signature line the witness returned for it, under the
// witness's own name (which need not be the trust policy's name for it): the line a checkpoint carries.
type Cosigned struct {
	sigsum.Cosignature
	NoteLine []byte
	// PostQuantum: an ML-DSA-44 cosignature (Cosignature has its key hash and time; its Signature is zero). It counts
	// toward the policy and is carried on the checkpoint; a Sigsum v1 tree head carries Ed25519 cosignatures only.
	PostQuantum bool
}

// Cosignatures returns the Ed25519 cosignatures of cs, in order: those a Sigsum v1 tree head carries.
func Cosignatures(cs []Cosigned) []sigsum.Cosignature {
	out := make([]sigsum.Cosignature, 0, len(cs))
	for i := range cs {
		if !cs[i].PostQuantum {
			out = append(out, cs[i].Cosignature)
		}
	}
	return out
}

// MinInterval is the least time between two requests to one witness (Config.MinInterval; zero: no limit).
func (c *Collector) MinInterval() time.Duration { return max(c.minGap, 0) }

// sent is what the collector last sent one witness.
type sent struct {
	at  time.Time
	out bool
}

// take reserves a request to witness kh: false if its last one is still out, or went out less than the minimum
// interval ago.
func (c *Collector) take(kh sigsum.Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sent[kh]
	if s == nil {
		s = &sent{}
		c.sent[kh] = s
	}
	now := c.now()
	if c.minGap >= 0 && (s.out || now.Sub(s.at) < c.minGap) {
		return false
	}
	s.at, s.out = now, true
	return true
}

// release ends the request take reserved.
func (c *Collector) release(kh sigsum.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[kh].out = false
}

// Cosign sends the signed head to every witness in parallel and returns the valid cosignatures gathered, sorted
// by witness key hash, at most one per witness key. Failures are logged, one line per witness. It returns when
// every witness has answered or timed out, or ctx is done.
func (c *Collector) Cosign(ctx context.Context, sth sigsum.SignedTreeHead) []Cosigned {
	cs, _ := c.CosignUntil(ctx, sth, nil, 0)
	return cs
}

// CosignUntil is Cosign that returns once enough says the cosignatures gathered so far suffice (a policy's quorum)
// and grace has passed since, or every witness has answered: a witness that hangs delays neither the others nor
// the caller. The witnesses still out finish in the background, each bounded by the timeout: what they answer
// updates their sizes and status for the next round. A nil enough waits for every witness. asked is how many
// witnesses this round sent the head to: the others were asked less than the minimum interval ago or are still out.
func (c *Collector) CosignUntil(ctx context.Context, sth sigsum.SignedTreeHead, enough func(cosigners map[sigsum.Hash]bool) bool, grace time.Duration) (cs []Cosigned, asked int) {
	if !sth.Verify(c.logKey) {
		// Every witness would refuse it with 403; say so once instead.
		c.logger.Error("not sending tree head to witnesses: not signed by the log key", "size", sth.Size)
		return nil, 0
	}
	// The requests outlive an early return and the caller's context, each bounded by the timeout, until Close: a
	// witness's late answer still tells where it is for the next round.
	reqCtx, ok := c.startRound()
	if !ok {
		return nil, 0
	}
	note := sth.SignedNote(c.logKey)
	answers := make(chan *Cosigned, len(c.witnesses))
	var wg sync.WaitGroup
	for _, w := range c.witnesses {
		kh := w.KeyHash()
		if !c.take(kh) {
			answers <- nil // asked too recently, or still out: not this round
			continue
		}
		asked++
		wg.Go(func() {
			defer c.release(kh)
			answers <- c.cosignOne(reqCtx, w, &sth, note)
		})
	}
	save := func() {
		defer c.rounds.Done()
		wg.Wait()
		if err := c.save(); err != nil {
			// Not fatal: the next round may start with a 409, which costs one request.
			c.logger.Warn("saving witness state", "err", err)
		}
	}
	var out []Cosigned
	cosigners := make(map[sigsum.Hash]bool)
	answered := 0
	var settle <-chan time.Time // set once enough: the grace for the rest
collect:
	for answered < len(c.witnesses) {
		select {
		case r := <-answers:
			answered++
			if r != nil {
				out = append(out, *r)
				cosigners[r.KeyHash] = true
			}
			if settle == nil && enough != nil && enough(cosigners) {
				t := time.NewTimer(grace)
				defer t.Stop()
				settle = t.C
			}
		case <-settle:
			break collect
		case <-ctx.Done():
			break collect
		}
	}
	if answered == len(c.witnesses) {
		save() // every witness answered: the state is saved when Cosign returns
	} else {
		go save() // once the rest have answered
	}
	slices.SortFunc(out, func(a, b Cosigned) int { return bytes.Compare(a.KeyHash[:], b.KeyHash[:]) })
	return out, asked
}

// Size returns the size the collector believes the witness with key hash kh holds (0 when unknown).
func (c *Collector) Size(kh sigsum.Hash) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sizes[kh]
}

// cosignOne runs the exchange with one witness: a request from the size it last cosigned and, on a 409, one
// retry from the size it reports.
func (c *Collector) cosignOne(ctx context.Context, w policy.Witness, sth *sigsum.SignedTreeHead, note []byte) *Cosigned {
	cs, requests, err := c.exchange(ctx, w, sth, note)
	c.record(w, requests, cs, sth.Size, err)
	return cs
}

// exchange is cosignOne's requests: the cosignature, how many requests it took, and why there is none.
func (c *Collector) exchange(ctx context.Context, w policy.Witness, sth *sigsum.SignedTreeHead, note []byte) (*Cosigned, int, error) {
	kh := w.KeyHash()
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
			c.logger.Warn("witness request failed", "witness", w.Name, "old", old, "size", sth.Size, "err", err)
			return nil, attempt + 1, err
		}
		c.metrics.WitnessRequest(w.Name, strconv.Itoa(status), attempt > 0, time.Since(start))
		switch status {
		case http.StatusOK:
			cs, err := c.verify(w, sth, body)
			if err != nil {
				c.logger.Warn("witness cosignature rejected", "witness", w.Name, "size", sth.Size, "err", err)
				return nil, attempt + 1, fmt.Errorf("cosignature rejected: %w", err)
			}
			c.setSize(kh, sth.Size)
			return &cs, attempt + 1, nil
		case http.StatusConflict:
			size, err := parseConflict(ctype, body)
			if err != nil {
				c.logger.Warn("witness refused checkpoint", "witness", w.Name, "status", status, "reason", err)
				return nil, attempt + 1, err
			}
			// Remember it even if we cannot use it now: it is where the next request must start.
			c.setSize(kh, size)
			if attempt > 0 || size > sth.Size || size == old {
				c.logger.Warn("witness holds another size", "witness", w.Name, "witness_size", size, "old", old,
					"size", sth.Size)
				return nil, attempt + 1, fmt.Errorf("409: the witness holds size %d", size)
			}
			old = size
		default:
			c.logger.Warn("witness refused checkpoint", "witness", w.Name, "status", status, "old", old,
				"size", sth.Size, "reason", firstLine(body))
			return nil, attempt + 1, fmt.Errorf("%d: %s", status, firstLine(body))
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
func (c *Collector) verify(w policy.Witness, sth *sigsum.SignedTreeHead, body []byte) (Cosigned, error) {
	// The line is found by the witness key alone: the name on it is the witness's own, and the policy's name for
	// the witness (w.Name) is local to the policy file.
	var out Cosigned
	if w.MLDSA != nil {
		mc, err := sigsum.ParseMLDSAWitnessCosignature(body, w.MLDSA)
		if err != nil {
			return Cosigned{}, err
		}
		if !mc.Verify(w.MLDSA, c.origin, &sth.TreeHead) {
			return Cosigned{}, errors.New("ML-DSA-44 cosignature does not verify")
		}
		out = Cosigned{Cosignature: sigsum.Cosignature{KeyHash: w.KeyHash(), Timestamp: mc.Timestamp},
			NoteLine: mc.Line(w.MLDSA), PostQuantum: true}
	} else {
		cs, name, err := sigsum.ParseWitnessCosignature(body, w.Key)
		if err != nil {
			return Cosigned{}, err
		}
		if !cs.Verify(w.Key, c.origin, &sth.TreeHead) {
			return Cosigned{}, errors.New("cosignature does not verify")
		}
		out = Cosigned{Cosignature: cs, NoteLine: sigsum.CosignatureLine(name, w.Key, &cs)}
	}
	cs := out.Cosignature
	now := c.now()
	t := time.Unix(int64(cs.Timestamp), 0)
	if t.After(now.Add(MaxClockSkew)) {
		return Cosigned{}, fmt.Errorf("cosignature time %d is %v in the future", cs.Timestamp, t.Sub(now).Round(time.Second))
	}
	if t.Before(now.Add(-MaxCosignatureAge)) {
		return Cosigned{}, fmt.Errorf("cosignature time %d is %v old", cs.Timestamp, now.Sub(t).Round(time.Second))
	}
	return out, nil
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

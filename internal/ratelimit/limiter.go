package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestDomain is the public test domain, whose rate-limit private key is published (the scalar 1), so anyone can
// make tokens for it. As in the reference it is refused, with its subdomains, unless Config.AllowTestDomain is
// set, whatever the limits file says.
const TestDomain = "test.sigsum.org"

// DefaultSaveInterval is how often counters are written to the state file when Config.SaveInterval is zero.
const DefaultSaveInterval = time.Minute

// reservationTTL is how long a slot granted by Check stays reserved without Charge or Release. It only matters
// for a caller that forgets both; the slot is then given back so the quota does not leak.
const reservationTTL = 2 * time.Minute

// Config configures a Limiter. LimitsFile and LogKey are required.
type Config struct {
	// LimitsFile is the limits file (rate-limit-file).
	LimitsFile string
	// StateFile is where counters are persisted, in the data directory; empty keeps them in memory only.
	StateFile string
	// LogKey is the log's public key, which submit tokens sign.
	LogKey sigsum.PublicKey
	// AllowTestDomain accepts tokens for TestDomain (allow-test-domain).
	AllowTestDomain bool
	// Resolver looks up TXT records; nil means net.DefaultResolver.
	Resolver Resolver
	// GlobalLimit, if positive, caps all token-based (domain and public line) new leaves per 24 h together.
	// Key lines are not counted against it.
	GlobalLimit int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger logs state-file problems and reloads; nil discards.
	Logger *slog.Logger

	// PositiveTTL, NegativeTTL and LookupTimeout tune the TXT lookups; zero means the Default values.
	PositiveTTL, NegativeTTL, LookupTimeout time.Duration
	// SaveInterval is how often the state file is written (if changed) and expired counters are dropped; zero
	// means DefaultSaveInterval, negative never (the state file is then written only on Close).
	SaveInterval time.Duration
}

// Rule says which kind of limits line a decision applied.
type Rule int

// The kinds of limits lines.
const (
	RuleKey    Rule = iota + 1 // key <key hash> <n>
	RuleDomain                 // domain <domain> <n>
	RulePublic                 // public <suffix list> <n>
)

func (r Rule) String() string {
	switch r {
	case RuleKey:
		return "key"
	case RuleDomain:
		return "domain"
	case RulePublic:
		return "public"
	}
	return fmt.Sprintf("Rule(%d)", int(r))
}

// Decision is a granted submission: a slot reserved on the counters it will be charged to. Pass it to exactly
// one of Charge or Release; further calls are no-ops.
type Decision struct {
	// Rule is the kind of line that applied.
	Rule Rule
	// Counter names the counter charged: the key hash in hex, the domain line's domain, or the registered domain.
	Counter string
	// Limit is that line's n.
	Limit int
	// Domain is the verified, normalised token domain; empty for a key line.
	Domain string

	counters []string // internal counter names, including the global one
	id       uint64
	done     bool // guarded by Limiter.mu
}

// Limiter applies rate limits. Its methods are safe for concurrent use.
type Limiter struct {
	cfg    Config
	now    func() time.Time
	logger *slog.Logger
	keys   *keyCache

	mu       sync.Mutex
	limits   *loadedLimits
	counters map[string]*window
	pending  map[uint64]reservation
	nextID   uint64
	dirty    bool     // counters changed since the last save
	journal  *journal // nil without a state file

	saveMu    sync.Mutex // serialises state file writes
	stop      chan struct{}
	saverDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// reservation is a slot held by a Decision not yet charged or released.
type reservation struct {
	counters []string
	expires  time.Time
}

// Counter name prefixes: the kinds of line have separate name spaces, and the global counter cannot collide.
const (
	keyCounter    = "key:"
	domainCounter = "domain:"
	publicCounter = "public:"
	globalCounter = "global"
)

// New loads the limits file and the state file (a missing state file means no counts yet) and starts saving
// counters periodically. Call Close to stop and save.
func New(cfg Config) (*Limiter, error) {
	if cfg.LimitsFile == "" {
		return nil, errors.New("rate limits: no limits file")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.PositiveTTL <= 0 {
		cfg.PositiveTTL = DefaultPositiveTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.SaveInterval == 0 {
		cfg.SaveInterval = DefaultSaveInterval
	}
	ll, err := loadLimits(cfg.LimitsFile)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:    cfg,
		now:    cfg.Now,
		logger: cfg.Logger,
		keys: &keyCache{
			resolver:    cfg.Resolver,
			now:         cfg.Now,
			positiveTTL: cfg.PositiveTTL,
			negativeTTL: cfg.NegativeTTL,
			timeout:     cfg.LookupTimeout,
			maxEntries:  defaultMaxCached,
			entries:     map[string]*keyEntry{},
		},
		limits:    ll,
		counters:  map[string]*window{},
		pending:   map[uint64]reservation{},
		stop:      make(chan struct{}),
		saverDone: make(chan struct{}),
	}
	if cfg.StateFile != "" {
		gen, err := l.load()
		if err != nil {
			return nil, err
		}
		// A first save folds the replayed journals into the state file and opens the next generation.
		l.journal = newJournal(cfg.StateFile, gen)
		if err := l.save(); err != nil {
			l.journal.close()
			return nil, err
		}
	}
	if cfg.SaveInterval > 0 {
		go l.saver()
	} else {
		close(l.saverDone)
	}
	return l, nil
}

// Summary is what the limits in force hold, for the status page.
type Summary struct {
	File    string // the limits file
	Keys    int    // key lines
	Domains int    // domain lines
	Public  int    // the public line's limit per registered domain; 0 without one
}

// Summary returns what the limits in force hold.
func (l *Limiter) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Summary{File: l.cfg.LimitsFile, Keys: len(l.limits.Keys), Domains: len(l.limits.Domains)}
	if l.limits.Public != nil {
		s.Public = l.limits.Public.N
	}
	return s
}

// Reload reads the limits file (Config.LimitsFile) again, on SIGHUP; a new path needs a new Limiter. Counters and
// reservations are kept: a line whose counter has charges keeps them under its new n. A file that does not parse,
// or whose suffix list does not load, is rejected and the old limits stay.
func (l *Limiter) Reload() error { return l.reload(l.cfg.LimitsFile) }

// reload replaces the limits with those in the file at path.
func (l *Limiter) reload(path string) error {
	ll, err := loadLimits(path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.limits = ll
	l.mu.Unlock()
	l.logger.Info("rate limits reloaded", "file", path, "keys", len(ll.Keys), "domains", len(ll.Domains),
		"public", ll.Public != nil)
	return nil
}

// match is the line a submission falls under, before any counting.
type match struct {
	rule    Rule
	counter string // internal counter name
	display string
	limit   int
}

// Check decides whether a new leaf signed by the key with hash keyHash may be queued. tokenHeader is the
// sigsum-token header value, "" if absent. Precedence:
//
//  1. A malformed header is refused (ErrMalformedToken) even when no token is needed, since the client sent it.
//  2. A key line for keyHash applies; the token, if any, is ignored and costs no DNS query.
//  3. Otherwise a token is required (ErrRateLimited without one). TestDomain and its subdomains are refused
//     (ErrRateLimited) unless allowed.
//  4. The longest domain line equal to or a parent of the token's domain applies; else the public line, counted
//     per registered domain; else the submission is refused (ErrRateLimited). This is decided before the DNS
//     lookup, so a token nobody would accept costs no query.
//  5. The token must verify with one of the first 10 keys in the TXT records at _sigsum_v1.<domain>
//     (ErrBadToken otherwise, including DNS failure or timeout).
//  6. The line's counter, and for token lines the global counter, must be below their limits counting
//     outstanding reservations (ErrRateLimited otherwise).
//
// On success the returned Decision holds a reserved slot: pass it to Charge or Release.
func (l *Limiter) Check(ctx context.Context, keyHash sigsum.Hash, tokenHeader string) (*Decision, error) {
	var tok *sigsum.SubmitToken
	domain := ""
	if tokenHeader != "" {
		t, d, err := ParseToken(tokenHeader)
		if err != nil {
			return nil, err
		}
		tok, domain = &t, d
	}

	l.mu.Lock()
	m, err := l.matchLocked(keyHash, tok != nil, domain)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if m.rule != RuleKey {
		if err := l.keys.verify(ctx, domain, tok, l.cfg.LogKey); err != nil {
			return nil, err
		}
	}

	d := &Decision{Rule: m.rule, Counter: m.display, Limit: m.limit, counters: []string{m.counter}}
	if m.rule != RuleKey {
		d.Domain = domain
		if l.cfg.GlobalLimit > 0 {
			d.counters = append(d.counters, globalCounter)
		}
	}
	if err := l.reserve(d); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseToken parses a sigsum-token header value and normalises its domain (IDNA, lowercase), as Check does. Its
// errors wrap ErrMalformedToken. The add-leaf handler calls it whether or not the log has rate limits: a
// malformed header is a malformed request.
func ParseToken(header string) (sigsum.SubmitToken, string, error) {
	t, err := sigsum.ParseSubmitToken(header)
	if err != nil {
		return sigsum.SubmitToken{}, "", fmt.Errorf("%w: %s", ErrMalformedToken, oneLine(err.Error()))
	}
	domain, err := normalizeDomain(t.Domain)
	if err != nil {
		return sigsum.SubmitToken{}, "", fmt.Errorf("%w: %s", ErrMalformedToken, oneLine(err.Error()))
	}
	return t, domain, nil
}

// matchLocked finds the limits line for a submission.
func (l *Limiter) matchLocked(keyHash sigsum.Hash, hasToken bool, domain string) (match, error) {
	lim := l.limits
	if n, ok := lim.Keys[keyHash]; ok {
		return match{RuleKey, keyCounter + keyHash.String(), keyHash.String(), n}, nil
	}
	if !hasToken {
		return match{}, fmt.Errorf("%w: no rate limit for this key; a submit token is required", ErrRateLimited)
	}
	if !l.cfg.AllowTestDomain && isWithin(domain, TestDomain) {
		return match{}, fmt.Errorf("%w: the test domain %s is not accepted by this log", ErrRateLimited, TestDomain)
	}
	for s, ok := domain, true; ok; s, ok = parent(s) {
		if n, ok := lim.Domains[s]; ok {
			return match{RuleDomain, domainCounter + s, s, n}, nil
		}
	}
	if lim.Public == nil {
		return match{}, fmt.Errorf("%w: no rate limit for domain %s", ErrRateLimited, domain)
	}
	rd, err := lim.suffixes.registeredDomain(domain)
	if err != nil {
		return match{}, fmt.Errorf("%w: no rate limit for domain %s: %s", ErrRateLimited, domain, err.Error())
	}
	return match{RulePublic, publicCounter + rd, rd, lim.Public.N}, nil
}

// reserve takes a slot on each of d's counters if all have room, counting unexpired reservations.
func (l *Limiter) reserve(d *Decision) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.expireReservationsLocked(now)
	held := map[string]int{}
	for _, r := range l.pending {
		for _, c := range r.counters {
			held[c]++
		}
	}
	minute := minuteOf(now)
	for _, c := range d.counters {
		limit, what := d.Limit, d.Rule.String()+" "+d.Counter
		if c == globalCounter {
			limit, what = l.cfg.GlobalLimit, "all token submissions"
		}
		used := held[c]
		if w := l.counters[c]; w != nil {
			used += w.count(minute)
		}
		if used >= limit {
			return fmt.Errorf("%w: limit of %d leaves per 24 h reached for %s", ErrRateLimited, limit, what)
		}
	}
	l.nextID++
	d.id = l.nextID
	l.pending[d.id] = reservation{counters: d.counters, expires: now.Add(reservationTTL)}
	return nil
}

func (l *Limiter) expireReservationsLocked(now time.Time) {
	for id, r := range l.pending {
		if !now.Before(r.expires) {
			delete(l.pending, id)
		}
	}
}

// Charge counts d's leaf against its counters: call it once the leaf is queued and was new, before answering.
// With a state file it returns once the charge is durable (in the journal, synced together with concurrent
// charges), so that a crash loses no charge a client was answered for; a journal that cannot be written is
// logged, and the charge then counts until a restart. A reservation that had expired is still charged, which
// may overshoot a limit by the few leaves whose handler took that long.
func (l *Limiter) Charge(d *Decision) {
	if d == nil {
		return
	}
	l.mu.Lock()
	if d.done {
		l.mu.Unlock()
		return
	}
	d.done = true
	delete(l.pending, d.id)
	minute := minuteOf(l.now())
	for _, c := range d.counters {
		w := l.counters[c]
		if w == nil {
			w = &window{}
			l.counters[c] = w
		}
		w.add(minute, 1)
	}
	l.dirty = true
	var b *jbatch
	if l.journal != nil {
		// Enqueued under l.mu, so a save's snapshot and journal rotation see each charge exactly once.
		b = l.journal.enqueue(chargeRecord(minute, d.counters))
	}
	l.mu.Unlock()
	if b != nil {
		if err := b.wait(); err != nil {
			l.logger.Error("rate limit charge not durable", "err", err)
		}
	}
}

// Release gives back d's slot without charging: for a resubmission, a rejected leaf or a backend failure.
func (l *Limiter) Release(d *Decision) {
	if d == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d.done {
		return
	}
	d.done = true
	delete(l.pending, d.id)
}

// Usage returns the charges in the current window for a line: rule and name as in Decision.Counter (key hash
// in hex, domain, or registered domain), or RulePublic with name "" for the global counter. For monitoring and
// tests.
func (l *Limiter) Usage(rule Rule, name string) int {
	var c string
	switch {
	case rule == RuleKey:
		c = keyCounter + name
	case rule == RuleDomain:
		c = domainCounter + name
	case rule == RulePublic && name == "":
		c = globalCounter
	default:
		c = publicCounter + name
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.counters[c]; w != nil {
		return w.count(minuteOf(l.now()))
	}
	return 0
}

// Close stops the periodic save and writes the state file a last time.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.saverDone
		if l.cfg.StateFile != "" {
			l.closeErr = l.save()
			if err := l.journal.close(); l.closeErr == nil {
				l.closeErr = err
			}
		}
	})
	return l.closeErr
}

func (l *Limiter) saver() {
	defer close(l.saverDone)
	t := time.NewTicker(l.cfg.SaveInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			dirty := l.dirty
			if !dirty || l.cfg.StateFile == "" {
				l.pruneLocked()
				l.mu.Unlock()
				continue
			}
			l.mu.Unlock()
			if err := l.save(); err != nil {
				l.logger.Error("saving rate limit state", "err", err)
			}
		}
	}
}

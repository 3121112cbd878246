package ratelimit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TXTLabel is prepended to a token's domain to find the TXT records holding its rate-limit keys.
const TXTLabel = "_sigsum_v1"

// maxTXTKeys is how many TXT records are tried, as in the reference; later ones are ignored so that a domain
// cannot make one submission cost unbounded signature checks.
const maxTXTKeys = 10

// Defaults for Config fields left zero.
const (
	DefaultPositiveTTL   = 5 * time.Minute
	DefaultNegativeTTL   = time.Minute
	DefaultLookupTimeout = 5 * time.Second
	defaultMaxCached     = 10000
)

// Resolver looks up TXT records. *net.Resolver implements it; tests inject a fake.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// keyEntry is the cached result of one TXT lookup: the keys published for a domain, or why there are none.
type keyEntry struct {
	ready   chan struct{} // closed once keys/err are set; waiters for an in-flight lookup block on it
	keys    []sigsum.PublicKey
	bad     int   // TXT records that were not a hex public key
	ignored int   // TXT records past maxTXTKeys
	err     error // lookup failure, wrapping ErrBadToken
	expires time.Time
}

// keyCache caches TXT lookups per normalised domain so that a resubmission, or a burst from one submitter, costs
// one DNS query per TTL. Concurrent misses for one domain share one lookup. Failures are cached too (for the
// shorter negative TTL) so a broken or hostile domain cannot turn submissions into a DNS flood.
type keyCache struct {
	resolver    Resolver
	now         func() time.Time
	positiveTTL time.Duration
	negativeTTL time.Duration
	timeout     time.Duration
	maxEntries  int

	mu      sync.Mutex
	entries map[string]*keyEntry
}

// lookup returns the keys published for domain, from the cache or DNS.
func (c *keyCache) lookup(ctx context.Context, domain string) (*keyEntry, error) {
	c.mu.Lock()
	e, ok := c.entries[domain]
	if ok {
		select {
		case <-e.ready:
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				return e, nil
			}
			ok = false // expired: look up again
		default: // in flight: wait below
		}
	}
	if !ok {
		c.evictLocked()
		e = &keyEntry{ready: make(chan struct{})}
		c.entries[domain] = e
		// The lookup is not tied to this caller's cancellation: other callers may be waiting for it. It is
		// bounded by the lookup timeout instead.
		go c.fill(context.WithoutCancel(ctx), domain, e)
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: looking up %s.%s: %w", ErrBadToken, TXTLabel, domain, ctx.Err())
	}
}

// evictLocked bounds the cache: first expired entries go, then arbitrary finished ones. In-flight entries stay.
func (c *keyCache) evictLocked() {
	if len(c.entries) < c.maxEntries {
		return
	}
	now := c.now()
	for d, e := range c.entries {
		select {
		case <-e.ready:
			if !now.Before(e.expires) {
				delete(c.entries, d)
			}
		default:
		}
	}
	for d, e := range c.entries {
		if len(c.entries) < c.maxEntries {
			break
		}
		select {
		case <-e.ready:
			delete(c.entries, d)
		default:
		}
	}
}

func (c *keyCache) fill(ctx context.Context, domain string, e *keyEntry) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	name := TXTLabel + "." + domain
	txts, err := c.resolver.LookupTXT(ctx, name)
	ttl := c.positiveTTL
	switch {
	case err != nil:
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			e.err = fmt.Errorf("%w: no TXT record at %s", ErrBadToken, name)
		} else {
			e.err = fmt.Errorf("%w: DNS lookup of %s failed: %s", ErrBadToken, name, oneLine(err.Error()))
		}
		ttl = c.negativeTTL
	case len(txts) == 0:
		e.err = fmt.Errorf("%w: no TXT record at %s", ErrBadToken, name)
		ttl = c.negativeTTL
	default:
		if len(txts) > maxTXTKeys {
			e.ignored = len(txts) - maxTXTKeys
			txts = txts[:maxTXTKeys]
		}
		for _, t := range txts {
			b, err := hex.DecodeString(strings.TrimSpace(t))
			if err != nil || len(b) != sigsum.PublicKeySize {
				e.bad++
				continue
			}
			e.keys = append(e.keys, sigsum.PublicKey(b))
		}
		if len(e.keys) == 0 {
			ttl = c.negativeTTL
		}
	}
	e.expires = c.now().Add(ttl)
	close(e.ready)
}

// verify checks tok against the keys published for its (normalised) domain.
func (c *keyCache) verify(ctx context.Context, domain string, tok *sigsum.SubmitToken, logKey sigsum.PublicKey) error {
	e, err := c.lookup(ctx, domain)
	if err != nil {
		return err
	}
	if e.err != nil {
		return e.err
	}
	for _, k := range e.keys {
		if tok.Verify(k, logKey) {
			return nil
		}
	}
	return fmt.Errorf("%w: no key at %s.%s verifies the token (%d tried, %d malformed, %d ignored past %d)",
		ErrBadToken, TXTLabel, domain, len(e.keys), e.bad, e.ignored, maxTXTKeys)
}

// oneLine keeps an error message from a resolver on one line, for the one-line response body.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

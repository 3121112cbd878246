package ratelimit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// fakeClock is an injectable Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeResolver answers TXT lookups from a table and counts calls. A name mapped to an error returns it; a name
// with block set waits for the context.
type fakeResolver struct {
	mu    sync.Mutex
	txt   map[string][]string
	errs  map[string]error
	block map[string]bool
	calls map[string]int
}

func newResolver() *fakeResolver {
	return &fakeResolver{txt: map[string][]string{}, errs: map[string]error{}, block: map[string]bool{},
		calls: map[string]int{}}
}

func (r *fakeResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.mu.Lock()
	r.calls[name]++
	txt, err, block := r.txt[name], r.errs[name], r.block[name]
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true}
	}
	if err != nil {
		return nil, err
	}
	if txt == nil {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return txt, nil
}

func (r *fakeResolver) set(domain string, txt ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.txt[TXTLabel+"."+domain] = txt
}

func (r *fakeResolver) callCount(domain string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[TXTLabel+"."+domain]
}

func (r *fakeResolver) totalCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// signer returns a deterministic key for a test name.
func signer(t testing.TB, name string) *sigsum.Ed25519Signer {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testLogKey = sigsum.PublicKey{1, 2, 3}

// token returns a sigsum-token header value for domain, signed by the key named keyName.
func token(t testing.TB, keyName, domain string) string {
	t.Helper()
	tok, err := sigsum.SignSubmitToken(signer(t, keyName), domain, testLogKey)
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

func keyHex(t testing.TB, name string) string { return signer(t, name).Public().String() }

func keyHash(t testing.TB, name string) sigsum.Hash { return signer(t, name).Public().KeyHash() }

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testEnv is a limiter over a limits file, with a fake clock and resolver.
type testEnv struct {
	dir   string
	clock *fakeClock
	res   *fakeResolver
	cfg   Config
	l     *Limiter
}

func newEnv(t *testing.T, limits string, mod func(*Config)) *testEnv {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), clock: newClock(), res: newResolver()}
	e.cfg = Config{
		LimitsFile:   writeFile(t, e.dir, "limits", limits),
		LogKey:       testLogKey,
		Resolver:     e.res,
		Now:          e.clock.Now,
		SaveInterval: -1,
	}
	if mod != nil {
		mod(&e.cfg)
	}
	l, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.l = l
	t.Cleanup(func() { l.Close() })
	return e
}

// submit runs Check and, if granted, Charge, returning Check's error.
func (e *testEnv) submit(t *testing.T, kh sigsum.Hash, header string) (*Decision, error) {
	t.Helper()
	d, err := e.l.Check(context.Background(), kh, header)
	if err == nil {
		e.l.Charge(d)
	}
	return d, err
}

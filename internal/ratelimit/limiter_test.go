package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	t.Parallel()
	limits := "key " + keyHash(t, "listed").String() + " 5\n" +
		"domain example.com 3\n" +
		"domain sub.example.com 2\n" +
		"public default 1\n"
	e := newEnv(t, limits, nil)
	for _, d := range []string{"a.sub.example.com", "sub.example.com", "other.example.com", "foo.example.org",
		"x.unknowntld", "nokey.example.net"} {
		if d != "nokey.example.net" {
			e.res.set(d, keyHex(t, "rl"))
		}
	}
	e.res.set("wrongkey.example.net", keyHex(t, "someone else"))
	listed := keyHash(t, "listed")

	for _, tc := range []struct {
		name    string
		keyName string
		header  string
		rule    Rule
		counter string
		limit   int
		errIs   error
		errText string
	}{
		{"key line, no token", "listed", "", RuleKey, listed.String(), 5, nil, ""},
		{"key line ignores token", "listed", token(t, "rl", "foo.example.org"), RuleKey, listed.String(), 5, nil, ""},
		{"key line, malformed token", "listed", "example.com nothex", 0, "", 0, ErrMalformedToken, ""},
		{"no key line, no token", "other", "", 0, "", 0, ErrRateLimited, "a submit token is required"},
		{"malformed: one field", "other", "example.com", 0, "", 0, ErrMalformedToken, ""},
		{"malformed: bad domain", "other", token(t, "rl", "exa_mple.com"), 0, "", 0, ErrMalformedToken, ""},
		{"longest domain line", "other", token(t, "rl", "a.sub.example.com"), RuleDomain, "sub.example.com", 2, nil, ""},
		{"domain line itself", "other", token(t, "rl", "sub.example.com"), RuleDomain, "sub.example.com", 2, nil, ""},
		{"parent domain line", "other", token(t, "rl", "other.example.com"), RuleDomain, "example.com", 3, nil, ""},
		{"public line", "other", token(t, "rl", "foo.example.org"), RulePublic, "example.org", 1, nil, ""},
		{"unknown suffix", "other", token(t, "rl", "x.unknowntld"), 0, "", 0, ErrRateLimited, "no known public suffix"},
		{"no TXT record", "other", token(t, "rl", "nokey.example.net"), 0, "", 0, ErrBadToken, "no TXT record"},
		{"wrong key", "other", token(t, "rl", "wrongkey.example.net"), 0, "", 0, ErrBadToken, "no key at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.l.Check(context.Background(), keyHash(t, tc.keyName), tc.header)
			if tc.errIs != nil {
				if !errors.Is(err, tc.errIs) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error %v, want %v containing %q", err, tc.errIs, tc.errText)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.l.Release(d)
			if d.Rule != tc.rule || d.Counter != tc.counter || d.Limit != tc.limit {
				t.Errorf("decision %v %s %d, want %v %s %d", d.Rule, d.Counter, d.Limit, tc.rule, tc.counter, tc.limit)
			}
		})
	}
	if n := e.res.callCount("foo.example.org"); n != 1 {
		t.Errorf("foo.example.org looked up %d times, want 1 (the key line must not look it up)", n)
	}
	if n := e.res.callCount("x.unknowntld"); n != 0 {
		t.Errorf("a domain no line applies to was looked up %d times", n)
	}
}

func TestNoPublicLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "domain example.com 3\n", nil)
	e.res.set("foo.example.org", keyHex(t, "rl"))
	_, err := e.l.Check(context.Background(), keyHash(t, "k"), token(t, "rl", "foo.example.org"))
	if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "no rate limit for domain foo.example.org") {
		t.Fatalf("error %v", err)
	}
	// A name that merely ends in a listed domain's text is not a subdomain of it.
	e.res.set("notexample.com", keyHex(t, "rl"))
	if _, err := e.l.Check(context.Background(), keyHash(t, "k"), token(t, "rl", "notexample.com")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("notexample.com matched example.com: %v", err)
	}
}

func TestNormalisedDomainsShareCounter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "public default 3\ndomain Straße.example 2\n", nil)
	e.res.set("xn--bcher-kva.de", keyHex(t, "rl"))
	e.res.set("xn--strae-oqa.example", keyHex(t, "rl"))
	e.res.set("www.xn--bcher-kva.de", keyHex(t, "rl"))
	kh := keyHash(t, "k")
	for i, d := range []string{"bücher.de", "xn--bcher-kva.de", "BÜCHER.DE."} {
		if _, err := e.submit(t, kh, token(t, "rl", d)); err != nil {
			t.Fatalf("submission %d (%s): %v", i, d, err)
		}
	}
	if _, err := e.submit(t, kh, token(t, "rl", "www.Bücher.de")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("fourth submission for one registered domain: %v", err)
	}
	if n := e.l.Usage(RulePublic, "xn--bcher-kva.de"); n != 3 {
		t.Errorf("usage %d, want 3", n)
	}
	// A domain line written in Unicode matches the punycode form of the token and the other way round.
	for _, d := range []string{"xn--strae-oqa.example", "STRASSE.example"} {
		// Under UTS 46 non-transitional processing ß is kept, so strasse.example is a different name.
		_, err := e.submit(t, kh, token(t, "rl", d))
		if d == "STRASSE.example" {
			if !errors.Is(err, ErrRateLimited) {
				t.Errorf("%s: %v, want no limit", d, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if _, err := e.submit(t, kh, token(t, "rl", "straße.example")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.submit(t, kh, token(t, "rl", "straße.example")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third submission under a limit of 2: %v", err)
	}
	if e.res.callCount("xn--strae-oqa.example") != 1 {
		t.Errorf("one name looked up %d times", e.res.callCount("xn--strae-oqa.example"))
	}
}

func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	kh := keyHash(t, "k")
	e := newEnv(t, "key "+kh.String()+" 2\n", nil)
	mustSubmit := func(ok bool, when string) {
		t.Helper()
		_, err := e.submit(t, kh, "")
		if ok && err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if !ok && !errors.Is(err, ErrRateLimited) {
			t.Fatalf("%s: %v, want rate limited", when, err)
		}
	}
	mustSubmit(true, "t0")
	e.clock.Advance(time.Hour)
	mustSubmit(true, "t0+1h")
	mustSubmit(false, "t0+1h, third")
	e.clock.Advance(23*time.Hour - time.Minute)
	mustSubmit(false, "just before the first charge leaves the window")
	e.clock.Advance(2 * time.Minute) // t0 + 24h + 1m: the first charge is out, the second still in
	if n := e.l.Usage(RuleKey, kh.String()); n != 1 {
		t.Fatalf("usage %d after partial expiry, want 1", n)
	}
	mustSubmit(true, "after partial expiry")
	mustSubmit(false, "after partial expiry, second")
	e.clock.Advance(25 * time.Hour)
	if n := e.l.Usage(RuleKey, kh.String()); n != 0 {
		t.Fatalf("usage %d after full expiry, want 0", n)
	}
	mustSubmit(true, "after full expiry")
}

func TestWindowNeverForgetsEarly(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 59, 0, time.UTC) // last second of a bucket
	var w window
	w.add(minuteOf(base), 1)
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{
		{Window - time.Second, 1},
		{Window, 1},
		{Window + time.Second, 0},
	} {
		if got := w.count(minuteOf(base.Add(tc.after))); got != tc.want {
			t.Errorf("count %v after the charge = %d, want %d", tc.after, got, tc.want)
		}
	}
}

func TestCharging(t *testing.T) {
	t.Parallel()
	kh := keyHash(t, "k")
	e := newEnv(t, "key "+kh.String()+" 1\n", nil)
	ctx := context.Background()
	for i := 0; i < 5; i++ { // Check then Release: resubmissions and failures cost nothing
		d, err := e.l.Check(ctx, kh, "")
		if err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
		e.l.Release(d)
		e.l.Release(d)
	}
	d, err := e.l.Check(ctx, kh, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Check(ctx, kh, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a reserved slot was granted twice: %v", err)
	}
	e.l.Charge(d)
	e.l.Charge(d)   // no double charge
	e.l.Release(d)  // no refund after a charge
	e.l.Charge(nil) // harmless
	if n := e.l.Usage(RuleKey, kh.String()); n != 1 {
		t.Fatalf("usage %d, want 1", n)
	}
	if _, err := e.l.Check(ctx, kh, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the limit: %v", err)
	}

	// A forgotten reservation is given back after reservationTTL.
	kh2 := keyHash(t, "k2")
	e2 := newEnv(t, "key "+kh2.String()+" 1\n", nil)
	if _, err := e2.l.Check(ctx, kh2, ""); err != nil {
		t.Fatal(err)
	}
	e2.clock.Advance(reservationTTL)
	if _, err := e2.l.Check(ctx, kh2, ""); err != nil {
		t.Fatalf("an expired reservation still holds the slot: %v", err)
	}
}

func TestConcurrentChecksDoNotOvershoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "domain example.com 10\n", nil)
	e.res.set("example.com", keyHex(t, "rl"))
	hdr := token(t, "rl", "example.com")
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := e.l.Check(context.Background(), keyHash(t, fmt.Sprint(i)), hdr)
			if err != nil {
				if !errors.Is(err, ErrRateLimited) {
					t.Error(err)
				}
				return
			}
			e.l.Charge(d)
			mu.Lock()
			granted++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if granted != 10 || e.l.Usage(RuleDomain, "example.com") != 10 {
		t.Fatalf("granted %d, usage %d; want 10", granted, e.l.Usage(RuleDomain, "example.com"))
	}
	if n := e.res.totalCalls(); n != 1 {
		t.Errorf("%d DNS lookups for 50 concurrent submissions, want 1", n)
	}
}

func TestGlobalLimit(t *testing.T) {
	t.Parallel()
	kh := keyHash(t, "listed")
	e := newEnv(t, "public default 10\ndomain example.net 10\nkey "+kh.String()+" 10\n",
		func(c *Config) { c.GlobalLimit = 2 })
	for _, d := range []string{"a.com", "example.net", "c.com"} {
		e.res.set(d, keyHex(t, "rl"))
	}
	other := keyHash(t, "other")
	if _, err := e.submit(t, other, token(t, "rl", "a.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.submit(t, other, token(t, "rl", "example.net")); err != nil {
		t.Fatal(err)
	}
	_, err := e.submit(t, other, token(t, "rl", "c.com"))
	if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "all token submissions") {
		t.Fatalf("third token submission: %v", err)
	}
	if _, err := e.submit(t, kh, ""); err != nil {
		t.Fatalf("key lines are outside the global limit: %v", err)
	}
	if n := e.l.Usage(RulePublic, ""); n != 2 {
		t.Errorf("global usage %d, want 2", n)
	}
}

func TestDNSCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "domain example.com 100\n", nil)
	e.res.set("example.com", keyHex(t, "rl"))
	kh := keyHash(t, "k")
	hdr := token(t, "rl", "example.com")
	for i := 0; i < 3; i++ {
		d, err := e.l.Check(context.Background(), kh, hdr)
		if err != nil {
			t.Fatal(err)
		}
		e.l.Release(d)
	}
	if n := e.res.callCount("example.com"); n != 1 {
		t.Fatalf("%d lookups within the TTL, want 1", n)
	}
	e.clock.Advance(DefaultPositiveTTL - time.Second)
	if _, err := e.submit(t, kh, hdr); err != nil {
		t.Fatal(err)
	}
	if n := e.res.callCount("example.com"); n != 1 {
		t.Fatalf("%d lookups just before the TTL, want 1", n)
	}
	e.clock.Advance(time.Second)
	if _, err := e.submit(t, kh, hdr); err != nil {
		t.Fatal(err)
	}
	if n := e.res.callCount("example.com"); n != 2 {
		t.Fatalf("%d lookups after the TTL, want 2", n)
	}

	// Failures are cached for the negative TTL: the key appearing in DNS is seen after it.
	_, err := e.l.Check(context.Background(), kh, token(t, "rl", "late.example.com"))
	if !errors.Is(err, ErrBadToken) {
		t.Fatalf("no TXT record: %v", err)
	}
	e.res.set("late.example.com", keyHex(t, "rl"))
	if _, err := e.l.Check(context.Background(), kh, token(t, "rl", "late.example.com")); !errors.Is(err, ErrBadToken) {
		t.Fatalf("negative answer not cached: %v", err)
	}
	e.clock.Advance(DefaultNegativeTTL)
	if _, err := e.submit(t, kh, token(t, "rl", "late.example.com")); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
	if n := e.res.callCount("late.example.com"); n != 2 {
		t.Errorf("%d lookups, want 2", n)
	}
}

func TestDNSFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "domain example.com 100\n", func(c *Config) { c.LookupTimeout = 50 * time.Millisecond })
	e.res.errs[TXTLabel+".servfail.example.com"] = &net.DNSError{Err: "server misbehaving\nsecond line", Name: "x"}
	e.res.block[TXTLabel+".slow.example.com"] = true
	e.res.txt[TXTLabel+".empty.example.com"] = []string{}
	e.res.set("garbage.example.com", "not a key", "abcd", strings.Repeat("zz", 32))
	kh := keyHash(t, "k")
	for _, tc := range []struct{ domain, want string }{
		{"servfail.example.com", "DNS lookup of _sigsum_v1.servfail.example.com failed: lookup x: server misbehaving second line"},
		{"slow.example.com", "DNS lookup of _sigsum_v1.slow.example.com failed"},
		{"empty.example.com", "no TXT record"},
		{"garbage.example.com", "0 tried, 3 malformed"},
	} {
		start := time.Now()
		_, err := e.l.Check(context.Background(), kh, token(t, "rl", tc.domain))
		if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrBadToken containing %q", tc.domain, err, tc.want)
		}
		if HTTPStatus(err) != http.StatusForbidden {
			t.Errorf("%s: status %d", tc.domain, HTTPStatus(err))
		}
		if strings.Contains(fmt.Sprint(err), "\n") {
			t.Errorf("%s: error is not one line: %q", tc.domain, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: took %v", tc.domain, time.Since(start))
		}
	}

	// The caller's own deadline bounds the wait too, and a cancelled waiter does not break the shared lookup.
	e2 := newEnv(t, "domain example.com 100\n", func(c *Config) { c.LookupTimeout = time.Hour })
	e2.res.block[TXTLabel+".slow.example.com"] = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := e2.l.Check(ctx, kh, token(t, "rl", "slow.example.com"))
	if !errors.Is(err, ErrBadToken) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled check: %v", err)
	}
}

func TestManyTXTKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "domain example.com 100\n", nil)
	var txt []string
	for i := 0; i < 9; i++ {
		txt = append(txt, keyHex(t, fmt.Sprint("decoy", i)))
	}
	e.res.set("tenth.example.com", append(append([]string{}, txt...), keyHex(t, "rl"))...)
	e.res.set("eleventh.example.com", append(append([]string{}, txt...), "garbage", keyHex(t, "rl"))...)
	e.res.set("spaces.example.com", " "+strings.ToUpper(keyHex(t, "rl"))+" ")
	kh := keyHash(t, "k")
	if _, err := e.submit(t, kh, token(t, "rl", "tenth.example.com")); err != nil {
		t.Fatalf("key in the 10th TXT record: %v", err)
	}
	if _, err := e.submit(t, kh, token(t, "rl", "spaces.example.com")); err != nil {
		t.Fatalf("upper-case key with spaces: %v", err)
	}
	_, err := e.submit(t, kh, token(t, "rl", "eleventh.example.com"))
	if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "9 tried, 1 malformed, 1 ignored") {
		t.Fatalf("key in the 11th TXT record: %v", err)
	}
}

func TestTestDomain(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		e := newEnv(t, "public default 5\ndomain test.sigsum.org 5\n", func(c *Config) { c.AllowTestDomain = allow })
		e.res.set("test.sigsum.org", keyHex(t, "rl"))
		e.res.set("sub.test.sigsum.org", keyHex(t, "rl"))
		for _, d := range []string{"test.sigsum.org", "Sub.TEST.sigsum.org."} {
			_, err := e.submit(t, keyHash(t, "k"), token(t, "rl", d))
			if allow && err != nil {
				t.Errorf("allowed test domain %s: %v", d, err)
			}
			if !allow && (!errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "test domain")) {
				t.Errorf("test domain %s not refused: %v", d, err)
			}
		}
		if !allow && e.res.totalCalls() != 0 {
			t.Errorf("the refused test domain was looked up")
		}
	}
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newClock()
	res := newResolver()
	res.set("example.com", keyHex(t, "rl"))
	res.set("www.example.com", keyHex(t, "rl"))
	kh := keyHash(t, "k")
	cfg := Config{
		LimitsFile:   writeFile(t, dir, "limits", "key "+kh.String()+" 2\npublic default 1\n"),
		StateFile:    filepath.Join(dir, "ratelimit.state"),
		LogKey:       testLogKey,
		Resolver:     res,
		Now:          clock.Now,
		SaveInterval: -1,
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []string{"", token(t, "rl", "example.com")} { // both under the key line
		d, err := l.Check(context.Background(), kh, hdr)
		if err != nil {
			t.Fatal(err)
		}
		l.Charge(d)
	}
	other := keyHash(t, "other")
	d, err := l.Check(context.Background(), other, token(t, "rl", "www.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	l.Charge(d)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	clock.Advance(time.Hour)
	l, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Usage(RuleKey, kh.String()); n != 2 {
		t.Errorf("key usage after restart %d, want 2", n)
	}
	if n := l.Usage(RulePublic, "example.com"); n != 1 {
		t.Errorf("public usage after restart %d, want 1", n)
	}
	if _, err := l.Check(context.Background(), other, token(t, "rl", "example.com")); !errors.Is(err, ErrRateLimited) {
		t.Errorf("quota reset by a restart: %v", err)
	}
	l.Close()

	clock.Advance(Window)
	l, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Usage(RuleKey, kh.String()); n != 0 {
		t.Errorf("expired charges loaded: usage %d", n)
	}
	l.Close()
	if b, err := os.ReadFile(cfg.StateFile); err != nil || strings.Contains(string(b), "example.com") {
		t.Errorf("state file keeps expired counters: %s, %v", b, err)
	}

	for _, bad := range []string{"{", `{"version":2,"bucket_seconds":60}`, `{"version":1,"bucket_seconds":60,"counters":{"x":[{"m":1,"n":-1}]}}`} {
		if err := os.WriteFile(cfg.StateFile, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "rate limit state") {
			t.Errorf("corrupt state %q: %v", bad, err)
		}
	}
}

func TestPeriodicSave(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	kh := keyHash(t, "k")
	cfg := Config{
		LimitsFile:   writeFile(t, dir, "limits", "key "+kh.String()+" 2\n"),
		StateFile:    filepath.Join(dir, "state"),
		LogKey:       testLogKey,
		Resolver:     newResolver(),
		SaveInterval: 10 * time.Millisecond,
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Check(context.Background(), kh, "")
	if err != nil {
		t.Fatal(err)
	}
	l.Charge(d)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(cfg.StateFile)
		if strings.Contains(string(b), kh.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("state file not written periodically")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	kh := keyHash(t, "k")
	e := newEnv(t, "key "+kh.String()+" 1\n", nil)
	if _, err := e.submit(t, kh, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.submit(t, kh, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the limit: %v", err)
	}
	bad := writeFile(t, e.dir, "bad", "key "+kh.String()+" 5\nkey "+kh.String()+" 6\n")
	if err := e.l.reload(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := e.submit(t, kh, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("old limits not kept after a rejected reload: %v", err)
	}
	if err := e.l.reload(writeFile(t, e.dir, "nosuffix", "public missing.dat 1\n")); err == nil {
		t.Fatal("a file whose suffix list is missing was accepted")
	}
	if got, want := e.l.Summary(), (Summary{File: e.l.cfg.LimitsFile, Keys: 1}); got != want {
		t.Errorf("Summary() = %+v, want %+v", got, want)
	}
	good := writeFile(t, e.dir, "good", "key "+kh.String()+" 2\ndomain example.org 3\npublic default 4\n")
	if err := e.l.reload(good); err != nil {
		t.Fatal(err)
	}
	if got, want := e.l.Summary(), (Summary{File: e.l.cfg.LimitsFile, Keys: 1, Domains: 1, Public: 4}); got != want {
		t.Errorf("Summary() after a reload = %+v, want %+v", got, want)
	}
	if n := e.l.Usage(RuleKey, kh.String()); n != 1 {
		t.Fatalf("usage after reload %d, want 1", n)
	}
	if _, err := e.submit(t, kh, ""); err != nil {
		t.Fatalf("raised limit: %v", err)
	}
	if _, err := e.submit(t, kh, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("counter was reset by the reload: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no file", Config{}, "no limits file"},
		{"missing file", Config{LimitsFile: filepath.Join(dir, "missing")}, "no such file"},
		{"bad file", Config{LimitsFile: writeFile(t, dir, "bad", "\nfoo bar 1\n")}, "line 2: unknown keyword"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 200},
		{fmt.Errorf("%w: x", ErrRateLimited), 429},
		{fmt.Errorf("%w: x", ErrBadToken), 403},
		{fmt.Errorf("%w: x", ErrMalformedToken), 400},
		{errors.New("other"), 500},
	} {
		if got := HTTPStatus(tc.err); got != tc.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

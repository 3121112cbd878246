package integration

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestRateLimitedDomain: a domain allowed 3 leaves a day gets 3 committed and 429 for the fourth new leaf, while
// resubmissions of the first three still answer 200.
func TestRateLimitedDomain(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 1)
	tokenKey := newSubmitter(t, 61).signer
	dns := startDNS(t, map[string][]string{
		"_sigsum_v1.sub.example.org.": {"not a key", tokenKey.Public().String()},
		"_sigsum_v1.example.org.":     {tokenKey.Public().String()},
	})
	limits := filepath.Join(cl.primary.dir, "rate-limits")
	if err := os.WriteFile(limits, []byte("# three a day\ndomain example.org 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl.primary.extra = append(cl.primary.extra, "-rate-limit-file", limits, "-dns-server", dns.addr())
	cl.start()
	c := cl.primary.client()
	ctx := context.Background()

	token, err := sigsum.SignSubmitToken(tokenKey, "sub.example.org", cl.logKey)
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubmitter(t, 62)
	var leaves []submitted
	for i := 0; i < 3; i++ {
		req, leaf := sub.next(t)
		if committed, err := c.AddLeaf(ctx, req, &token); err != nil || committed {
			t.Fatalf("leaf %d: committed=%v, %v; want 202", i, committed, err)
		}
		leaves = append(leaves, submitted{req, leaf})
	}
	// Resubmissions are idempotent and free: retry the three with the token until 200.
	waitFor(t, "the three leaves committed", 60*time.Second, func() bool {
		for _, l := range leaves {
			committed, err := c.AddLeaf(ctx, l.req, &token)
			if err != nil {
				t.Fatalf("resubmission: %v", err)
			}
			if !committed {
				return false
			}
		}
		return true
	})
	fourth, _ := sub.next(t)
	if _, err := c.AddLeaf(ctx, fourth, &token); client.StatusCode(err) != http.StatusTooManyRequests {
		t.Fatalf("fourth new leaf: %v, want 429", err)
	}
	for i, l := range leaves {
		if committed, err := c.AddLeaf(ctx, l.req, &token); err != nil || !committed {
			t.Fatalf("resubmitting leaf %d after the limit: committed=%v, %v; want 200", i, committed, err)
		}
	}
	// Without a token there is no limit to apply; a token by another key is refused.
	if _, err := c.AddLeaf(ctx, fourth, nil); client.StatusCode(err) != http.StatusTooManyRequests {
		t.Errorf("no token: %v, want 429", err)
	}
	forged, _ := sigsum.SignSubmitToken(newSubmitter(t, 63).signer, "example.org", cl.logKey)
	other, _ := newSubmitter(t, 64).next(t)
	if _, err := c.AddLeaf(ctx, other, &forged); client.StatusCode(err) != http.StatusForbidden {
		t.Errorf("token by an unpublished key: %v, want 403", err)
	}
	if n := dns.queries(); n == 0 || n > 4 {
		t.Errorf("%d DNS queries; want a few (cached per domain)", n)
	}
	checkLog(t, c, cl.logKey, leaves, nil)
}

// TestRateLimitSurvivesKill: with a limit of 10 and 8 used, a SIGKILL of the primary and a restart leave exactly
// 2 new leaves to the submitter: every charge add-leaf answered for was durable before the answer.
func TestRateLimitSurvivesKill(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 1)
	sub := newSubmitter(t, 65)
	limits := filepath.Join(cl.primary.dir, "rate-limits")
	if err := os.WriteFile(limits, []byte("key "+sub.signer.Public().KeyHash().String()+" 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl.primary.extra = append(cl.primary.extra, "-rate-limit-file", limits)
	cl.start()
	ctx := context.Background()
	c := cl.primary.client()
	for i := 0; i < 8; i++ {
		req, _ := sub.next(t)
		if _, err := c.AddLeaf(ctx, req, nil); err != nil {
			t.Fatalf("leaf %d of 8: %v", i, err)
		}
	}
	cl.primary.kill()
	cl.primary.start()
	c = cl.primary.client()
	accepted := 0
	for i := 0; i < 5; i++ {
		req, _ := sub.next(t)
		_, err := c.AddLeaf(ctx, req, nil)
		switch {
		case err == nil:
			accepted++
		case client.StatusCode(err) != http.StatusTooManyRequests:
			t.Fatalf("new leaf %d after the kill: %v", i, err)
		}
	}
	if accepted != 2 {
		t.Fatalf("%d new leaves accepted after the kill with 8 of 10 used before it, want 2", accepted)
	}
}

package primary

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestAddLeafCharging: only new leaves are charged; resubmissions and rejected leaves are not.
func TestAddLeafCharging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := seedSigner(t, 3) // addLeafBody's submitter
	limits := filepath.Join(e.dir, "limits")
	os.WriteFile(limits, []byte("key "+sub.Public().KeyHash().String()+" 2\n"), 0o644)
	lim, err := ratelimit.New(ratelimit.Config{LimitsFile: limits, LogKey: e.signer.Public()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Limiter: lim, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	url := srv.URL + "/add-leaf"
	usage := func() int { return lim.Usage(ratelimit.RuleKey, sub.Public().KeyHash().String()) }

	first, l1 := addLeafBody(t, "one")
	second, l2 := addLeafBody(t, "two")
	third, _ := addLeafBody(t, "three")
	for _, c := range []struct {
		name, body string
		code, used int
	}{
		{"first new leaf", first, 202, 1},
		{"its resubmission", first, 202, 1},
		{"second new leaf", second, 202, 2},
		{"third new leaf, over the limit", third, 429, 2},
		{"resubmission at the limit", second, 202, 2},
	} {
		if code, body, _ := do(t, "POST", url, c.body); code != c.code {
			t.Fatalf("%s: %d %q, want %d", c.name, code, body, c.code)
		}
		if got := usage(); got != c.used {
			t.Fatalf("%s: usage %d, want %d", c.name, got, c.used)
		}
	}
	req, _ := sigsum.ParseAddLeafRequest([]byte(third))
	req.Signature[5] ^= 1
	if code, _, _ := do(t, "POST", url, string(req.MarshalASCII())); code != 403 || usage() != 2 {
		t.Fatalf("bad signature: %d, usage %d; want 403 and no charge", code, usage())
	}
	e.leaves = append(e.leaves, l1, l2)
	e.waitIntegrated()
	p.Rotate(context.Background())
	if code, _, _ := do(t, "POST", url, first); code != 200 || usage() != 2 {
		t.Fatalf("committed resubmission: %d, usage %d; want 200 and no charge", code, usage())
	}
	// A fresh primary (pending set empty) still lets a known leaf through at the limit.
	p2, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Limiter: lim, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(p2.PublicHandler(""))
	t.Cleanup(srv2.Close)
	if code, _, _ := do(t, "POST", srv2.URL+"/add-leaf", second); code != 200 {
		t.Fatalf("known leaf after a restart at the limit: %d, want 200", code)
	}
	if code, _, _ := do(t, "POST", srv2.URL+"/add-leaf", third); code != 429 {
		t.Fatalf("new leaf after a restart at the limit: %d, want 429", code)
	}
}

package primary

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/internal/httpguard"
)

// TestErrorReasonsBounded checks that a 400 quoting a huge or odd path argument is still one printable line of at
// most httpguard.MaxReason bytes, from the handlers themselves (without the listener's guard).
func TestErrorReasonsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	e.addLeaves(3)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(pub.Close)
	internal := httptest.NewServer(p.InternalHandler(""))
	t.Cleanup(internal.Close)
	zeros := strings.Repeat("0", 8000)
	h := e.leaves[1].Hash().String()
	for _, url := range []string{
		pub.URL + "/get-leaves/" + zeros + "/1",
		pub.URL + "/get-leaves/0/" + zeros + "1",
		internal.URL + "/get-leaves/" + zeros + "/1",
		pub.URL + "/get-inclusion-proof/3/" + strings.Repeat("ab", 3000),
		pub.URL + "/get-inclusion-proof/" + zeros + "/" + h,
		pub.URL + "/get-consistency-proof/1/" + strings.Repeat("%0A9", 1000),
		pub.URL + "/get-leaves/%1B%5B31m" + strings.Repeat("%FF", 100) + "/1",
	} {
		code, body, _ := do(t, "GET", url, "")
		name := url[:min(len(url), 80)]
		if code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
		if len(body) > httpguard.MaxReason+1 || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
			t.Errorf("%s: reason of %d bytes is not one line of at most %d: %.300q", name, len(body), httpguard.MaxReason, body)
		}
		if body != httpguard.Reason(body)+"\n" {
			t.Errorf("%s: reason %.300q is not printable", name, body)
		}
	}
}

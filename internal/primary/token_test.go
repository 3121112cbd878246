package primary

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestMalformedSubmitToken checks that a malformed sigsum-token header is a 400 whether or not the log has rate
// limits, and before the leaf's signature or a resubmission is looked at, as in the reference; a well-formed token
// that is not needed is accepted.
func TestMalformedSubmitToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := seedSigner(t, 3) // addLeafBody's submitter
	limits := filepath.Join(e.dir, "limits")
	if err := os.WriteFile(limits, []byte("key "+sub.Public().KeyHash().String()+" 1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.New(ratelimit.Config{LimitsFile: limits, LogKey: e.signer.Public()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	WriteStartupFile(e.sthFile(), StartupEmpty)
	limited, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Limiter: lim, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	unlimited := e.mustStart(nil, 0)

	tok, err := sigsum.SignSubmitToken(seedSigner(t, 9), "example.org", e.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	tokHex := hex.EncodeToString(tok.Token[:])
	known, _ := addLeafBody(t, "known")
	for name, p := range map[string]*Primary{"limits": limited, "no limits": unlimited} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(p.PublicHandler(""))
			t.Cleanup(srv.Close)
			post := func(body string, tokens []string) (int, string) {
				req, err := http.NewRequest("POST", srv.URL+"/add-leaf", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if tokens != nil {
					req.Header[sigsum.SubmitTokenHeader] = tokens
				}
				rsp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer rsp.Body.Close()
				b, _ := io.ReadAll(rsp.Body)
				return rsp.StatusCode, string(b)
			}
			if code, body := post(known, nil); code != 202 {
				t.Fatalf("setup leaf: %d %q", code, body)
			}
			for _, tc := range []struct {
				name   string
				tokens []string // nil: no header
				body   string   // "": a new leaf; "badsig": a new leaf with a bad signature; "known": a resubmission
				want   int
			}{
				{"no token", nil, "", 202},
				{"well-formed token, not needed", []string{tok.String()}, "", 202},
				{"well-formed token, uppercase hex", []string{"example.org " + strings.ToUpper(tokHex)}, "", 202},
				{"empty value", []string{""}, "", 400},
				{"garbage", []string{"garbage"}, "", 400},
				{"domain only", []string{"example.org"}, "", 400},
				{"domain and space", []string{"example.org "}, "", 400},
				{"bad hex", []string{"example.org zz"}, "", 400},
				{"short signature", []string{"example.org " + tokHex[:126]}, "", 400},
				{"long signature", []string{"example.org " + tokHex + "00"}, "", 400},
				{"no domain", []string{" " + tokHex}, "", 400},
				{"two spaces", []string{"example.org  " + tokHex}, "", 400},
				{"space in domain", []string{"exa mple.org " + tokHex}, "", 400},
				{"empty label", []string{"example..org " + tokHex}, "", 400},
				{"invalid UTF-8 domain", []string{"\xff\xfe.org " + tokHex}, "", 400},
				{"long label", []string{strings.Repeat("a", 300) + ".org " + tokHex}, "", 400},
				{"two headers", []string{tok.String(), tok.String()}, "", 400},
				{"malformed, bad leaf signature", []string{"garbage"}, "badsig", 400},
				{"malformed, resubmission", []string{"garbage"}, "known", 400},
				{"well-formed, bad leaf signature", []string{tok.String()}, "badsig", 403},
			} {
				body := known
				switch tc.body {
				case "", "badsig":
					body, _ = addLeafBody(t, name+"/"+tc.name)
					if tc.body == "badsig" {
						req, _ := sigsum.ParseAddLeafRequest([]byte(body))
						req.Signature[5] ^= 1
						body = string(req.MarshalASCII())
					}
				}
				code, reason := post(body, tc.tokens)
				if code != tc.want {
					t.Errorf("%s: %d %q, want %d", tc.name, code, reason, tc.want)
				}
				if code == 400 && !strings.Contains(reason, "token") {
					t.Errorf("%s: reason %q does not name the token", tc.name, reason)
				}
			}
		})
	}
}

package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/metrics"
	"github.com/sigsumd/sigsumd/internal/status"
)

// fakeRole is ready, or not, and degraded, or not, with a detail line, as the test says.
type fakeRole struct {
	ready    error
	degraded string
	detail   string
}

func (f *fakeRole) Run(context.Context) error           { return nil }
func (f *fakeRole) PublicHandler(string) http.Handler   { return http.NotFoundHandler() }
func (f *fakeRole) InternalHandler(string) http.Handler { return http.NotFoundHandler() }
func (f *fakeRole) Ready(context.Context) error         { return f.ready }
func (f *fakeRole) Degraded() string                    { return f.degraded }
func (f *fakeRole) Detail() string                      { return f.detail }
func (f *fakeRole) Status(context.Context, time.Time) status.Report {
	return status.Report{Role: "primary", LogKeyHash: "ab12", Published: &status.Head{Size: 7}}
}

// /readyz: 503 with the reason when not ready; 200 when ready, with the reason when degraded, since a degraded
// primary still commits and must stay in its load balancer.
func TestReadyz(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		role role
		code int
		body string
	}{
		{"ready", &fakeRole{}, http.StatusOK, "ready\n"},
		{"degraded", &fakeRole{degraded: "1 of 2 secondaries; not verified in the last rotation: s2 (no answer yet)"},
			http.StatusOK, "ready, degraded: 1 of 2 secondaries; not verified in the last rotation: s2 (no answer yet)\n"},
		{"degraded on two lines", &fakeRole{degraded: "a\nb"}, http.StatusOK, "ready, degraded: a b\n"},
		{"not ready beats degraded", &fakeRole{ready: errors.New("storage: down"), degraded: "no secondary"},
			http.StatusServiceUnavailable, "not ready: storage: down\n"},
		{"detail after the verdict", &fakeRole{degraded: "x", detail: "published head: size 3"}, http.StatusOK,
			"ready, degraded: x\npublished head: size 3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := &node{cfg: &config.Config{}, metrics: metrics.New("test"), role: tc.role}
			srv := httptest.NewServer(n.internalHandler())
			t.Cleanup(srv.Close)
			rsp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer rsp.Body.Close()
			body, _ := io.ReadAll(rsp.Body)
			if rsp.StatusCode != tc.code || string(body) != tc.body {
				t.Errorf("/readyz: %d %q, want %d %q", rsp.StatusCode, body, tc.code, tc.body)
			}
		})
	}
}

// net/http's accept errors (out of file descriptors) reach the log at warn, once and then with a count; its other
// lines stay at debug.
func TestServerErrors(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	se := &serverErrors{logger: slog.New(slog.NewTextHandler(&buf, nil))}
	for i := 0; i < 100; i++ {
		se.Write([]byte("http: Accept error: accept tcp 127.0.0.1:6965: accept4: too many open files; retrying in 5ms\n"))
	}
	se.Write([]byte("http: TLS handshake error from 127.0.0.1:1234: EOF\n"))
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || !strings.Contains(out, "too many open files") {
		t.Errorf("100 accept errors logged as %d warnings:\n%s", n, out)
	}
	if strings.Contains(out, "handshake") {
		t.Errorf("a handshake error was logged above debug:\n%s", out)
	}
}

// The public listener serves the status page at the prefix's base, its JSON beside it, and the role's API for the
// rest; the page says what /readyz says.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "sigsum/v1"} {
		base := "/"
		if prefix != "" {
			base = "/" + prefix + "/"
		}
		n := &node{cfg: &config.Config{URLPrefix: prefix, Timeout: time.Second}, metrics: metrics.New("test"),
			role: &fakeRole{degraded: "no secondary: <b>bare</b>"}}
		srv := httptest.NewServer(n.publicHandler())
		t.Cleanup(srv.Close)
		for _, tc := range []struct {
			method, path string
			code         int
			contentType  string
			want         []string
		}{
			{"GET", base, 200, "text/html; charset=utf-8", []string{"ready, degraded", "no secondary: &lt;b&gt;bare&lt;/b&gt;",
				`<b id="published-size">7</b>`, "ab12", `href="status.json"`}},
			{"GET", base + "status.json", 200, "application/json", []string{`"role": "primary"`, `"degraded": true`,
				`"size": 7`}},
			{"HEAD", base, 200, "text/html; charset=utf-8", nil},
			{"POST", base, 405, "", nil},
			{"GET", base + "get-tree-head", 404, "", nil}, // the role's API: the fake serves nothing
		} {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			rsp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(rsp.Body)
			rsp.Body.Close()
			if rsp.StatusCode != tc.code {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rsp.StatusCode, tc.code)
			}
			if tc.contentType != "" && rsp.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, rsp.Header.Get("Content-Type"), tc.contentType)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("%s %s: body lacks %q:\n%s", tc.method, tc.path, w, body)
				}
			}
		}
		var rep status.Report
		rsp, err := http.Get(srv.URL + base + "status.json")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(rsp.Body).Decode(&rep)
		rsp.Body.Close()
		if err != nil || !rep.Ready || !rep.Degraded || rep.Version == "" || rep.Time.IsZero() {
			t.Errorf("status.json: %+v, %v", rep, err)
		}
	}
}

package status

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func TestAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		seconds float64
		want    string
	}{
		{-1, "never"}, {0, "0s"}, {4.4, "4s"}, {59.6, "1m"}, {192, "3m12s"}, {180, "3m"}, {7500, "2h5m"},
		{7200, "2h"}, {47*3600 + 59*60 + 59, "47h59m"}, {3*86400 + 4*3600 + 5, "3d4h"},
	} {
		if got := age(tc.seconds); got != tc.want {
			t.Errorf("age(%v) = %q, want %q", tc.seconds, got, tc.want)
		}
	}
}

func TestNewHead(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	cth := sigsum.CosignedTreeHead{}
	cth.Size = 5
	if h := NewHead(&cth, now, time.Time{}); h.AgeSeconds != -1 || h.Size != 5 || h.Cosignatures != 0 {
		t.Errorf("no cosignature, no publication time: %+v", h)
	}
	if h := NewHead(&cth, now, now.Add(-3*time.Second)); h.AgeSeconds != 3 {
		t.Errorf("published 3 s ago: %+v", h)
	}
	cth.Cosignatures = []sigsum.Cosignature{{Timestamp: 990}, {Timestamp: 995}}
	if h := NewHead(&cth, now, now.Add(-3*time.Second)); h.AgeSeconds != 5 || h.Cosignatures != 2 ||
		!h.Timestamp.Equal(time.Unix(995, 0)) {
		t.Errorf("cosigned: %+v", h)
	}
}

func get(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	rsp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	return string(b)
}

// The page shows each role's facts, and escapes what others wrote (a witness's error text, policy names).
func TestPage(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		name string
		rep  Report
		want []string
		not  []string
	}{
		{"primary", Report{Role: "primary", Version: "sigsumd v1", Time: now, LogKey: "aa", LogKeyHash: "bb", Ready: true,
			Published: &Head{Size: 42, Cosignatures: 1, AgeSeconds: 3},
			LocalSize: 42,
			Witnesses: []Witness{{Name: "w1", InPublished: true, CosignedSize: 42, AgeSeconds: 3},
				{Name: "w<2>", LastError: `<script>alert(1)</script>`, AgeSeconds: -1}},
			Secondaries: []Secondary{{Name: "s1", Asked: true, VerifiedSize: 40, Lag: 2}, {Name: "s2"}},
			Links:       []Link{{Name: "get-tree-head", Href: "get-tree-head"}}},
			[]string{`<span id="readiness" class="badge ok">ready</span>`, `<b id="published-size">42</b>`,
				`data-witness="w1"`, "size 42, 3s ago", "w&lt;2&gt;", "&lt;script&gt;", `data-secondary="s1"`,
				"<td>40</td>", "not asked yet", `id="rate-limit">off`, `href="get-tree-head"`},
			[]string{"<script>alert", "Replication"}},
		{"secondary", Report{Role: "secondary", Time: now, NodeKeyHash: "cc", LocalSize: 7, Ready: false,
			Reasons: []string{"not ready: storage: down"}, Primary: &Primary{InternalURL: "https://p:6967", Lag: 3,
				PublishedCheckedAgeSeconds: -1}},
			[]string{`class="badge bad">not ready`, "not ready: storage: down", `id="published-size">none known`,
				`id="primary-url">https://p:6967`, `id="replication-lag">3`, "not in this run", `id="node-key-hash">cc`},
			[]string{"Rate limits", "Witnesses", "Secondaries"}},
	} {
		body := get(t, PageHandler(func(*http.Request) Report { return tc.rep }))
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: page lacks %q", tc.name, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(body, w) {
				t.Errorf("%s: page has %q", tc.name, w)
			}
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "src=") {
			t.Errorf("%s: the page has a script or an external asset", tc.name)
		}
		if t.Failed() {
			t.Logf("%s:\n%s", tc.name, body)
		}
	}
}

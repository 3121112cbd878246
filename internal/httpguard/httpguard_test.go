package httpguard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// mux is a ServeMux like the roles': a GET endpoint, an info page and an endpoint with wildcards.
func mux() *http.ServeMux {
	m := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "served\n") }
	m.HandleFunc("GET /{$}", ok)
	m.HandleFunc("GET /get-tree-head", ok)
	m.HandleFunc("GET /get-leaves/{start}/{end}", ok)
	m.HandleFunc("GET /p/get-tree-head", ok)
	return m
}

// TestNonCanonicalPaths checks that paths ServeMux would redirect to a cleaned form answer 404 with a one-line
// reason, and that canonical ones are served as before.
func TestNonCanonicalPaths(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Wrap(mux()))
	t.Cleanup(srv.Close)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/", 200},
		{"/get-tree-head", 200},
		{"/get-leaves/0/1", 200},
		{"/p/get-tree-head", 200},
		{"/get-tree-head/", 404},
		{"/nope", 404},
		{"//get-tree-head", 404},
		{"///get-tree-head", 404},
		{"/./get-tree-head", 404},
		{"/a/../get-tree-head", 404},
		{"/../get-tree-head", 404},
		{"/get-tree-head/.", 404},
		{"/get-tree-head/..", 404},
		{"/%2E/get-tree-head", 404},
		{"/%2e%2e/get-tree-head", 404},
		{"/x/..%2Fget-tree-head", 404},
		{"/get-leaves/0//1", 404},
		{"/get-leaves//0/1", 404},
		{"/p//get-tree-head", 404},
		{"//", 404},
		{"/.", 404},
		{"/..", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			rsp, err := hc.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer rsp.Body.Close()
			body, _ := io.ReadAll(rsp.Body)
			if rsp.StatusCode != tc.want {
				t.Fatalf("GET %s = %d %q (Location %q), want %d", tc.path, rsp.StatusCode, body,
					rsp.Header.Get("Location"), tc.want)
			}
			if tc.want != 200 && (len(body) == 0 || strings.Contains(strings.TrimSuffix(string(body), "\n"), "\n")) {
				t.Fatalf("GET %s: reason %q is not one line", tc.path, body)
			}
		})
	}
}

// TestCanonicalPath checks the rule itself, including forms no HTTP client sends.
func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"/": true, "/a": true, "/a/": true, "/a/b": true, "/a/b/": true, "/.a": true, "/a..": true, "/...": true,
		"": false, "a": false, "*": false, "//": false, "/a//b": false, "/a/./b": false, "/a/../b": false,
		"/a/.": false, "/a/..": false, "/.": false, "/..": false, "/a//": false,
	} {
		if got := CanonicalPath(p); got != want {
			t.Errorf("CanonicalPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// FuzzCanonicalPath checks that a path CanonicalPath accepts is one ServeMux serves as it is, without a redirect.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "//", "/a/./b", "/a/../b", "/get-leaves/0/1", "/x/"} {
		f.Add(s)
	}
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {})
	f.Fuzz(func(t *testing.T, p string) {
		if !CanonicalPath(p) {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path, r.URL.RawPath = p, ""
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, r)
		if rec.Code != 200 {
			t.Fatalf("canonical path %q: ServeMux answers %d (Location %q)", p, rec.Code, rec.Header().Get("Location"))
		}
	})
}

package config

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestURLPrefixRejected checks that url-prefix values ServeMux would read as a pattern ({x}, {$}, {x...}), or that
// are not one clean path, are refused at start with a one-line error naming the key.
func TestURLPrefixRejected(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"{$}", "{x}", "a/{x...}", "{", "}", "a$", "$", "a{b}c",
		"a b", "a\tb", "a\nb", " a", "a?b", "a#b", "a%2fb", "a%", `a\b`, "a\x00b", "a\x7fb", "ü", "a\u00a0b",
		"a/../b", "..", "a/./b", ".", "a//b", "a/b//c", "GET a", "a[b]", "a<b>", `a"b`, "a|b", "a^b", "a`b",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, "", "-role", "primary", "-key-file", "k", "-url-prefix", in)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "flag -url-prefix") || strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is not one line naming flag -url-prefix", msg)
			}
			if !errors.Is(err, ErrURLPrefix) {
				t.Errorf("error %q does not wrap ErrURLPrefix", msg)
			}
		})
	}
	for _, in := range []string{"sigsum/v1", "a-b.c_d~e", "log:1/@x", "a+b,c;d=e!f&g'(h)*", "123"} {
		if _, err := load(t, "", "-role", "primary", "-key-file", "k", "-url-prefix", in); err != nil {
			t.Errorf("url-prefix %q: %v", in, err)
		}
	}
}

// FuzzNormalizePrefix checks that an accepted url-prefix makes a literal ServeMux pattern: registering it does
// not panic, and it answers its own path and nothing else.
func FuzzNormalizePrefix(f *testing.F) {
	for _, s := range []string{"", "sigsum/v1", "{$}", "{x}", "a/{x...}", "/a/", "a//b", "a/../b", "a%2F", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := normalizePrefix(in)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") || !errors.Is(err, ErrURLPrefix) {
				t.Fatalf("error %q: not one line or not ErrURLPrefix", err)
			}
			return
		}
		if p == "" {
			return
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /"+p+"/get-tree-head", func(w http.ResponseWriter, r *http.Request) {})
		for path, want := range map[string]int{"/" + p + "/get-tree-head": 200, "/" + p + "x/get-tree-head": 404} {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", "http://h"+path, nil))
			if rec.Code != want {
				t.Fatalf("prefix %q: GET %s = %d, want %d", p, path, rec.Code, want)
			}
		}
	})
}

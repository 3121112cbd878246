package httpguard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestErrorReasonsBounded checks that an error answer's body, however a handler writes it, reaches the client as
// one printable line of at most MaxReason bytes plus the newline, and that other answers pass unchanged.
func TestErrorReasonsBounded(t *testing.T) {
	t.Parallel()
	zeros := strings.Repeat("0", 8000)
	long := "get-leaves: start: " + zeros + ": not an integer"
	// A long reason keeps its start and its end, joined by "...".
	tailLen := (MaxReason - 3) / 3
	longCut := long[:MaxReason-3-tailLen] + "..." + long[len(long)-tailLen:] + "\n"
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		code    int
		want    string // the exact body; "" for just the checks
	}{
		{"short reason", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "bad size", 400)
		}, 400, "bad size\n"},
		{"8000 zeros", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, long, 400)
		}, 400, longCut},
		{"several lines", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "first\nsecond\r\nthird\tfourth", 404)
		}, 404, "first second  third fourth\n"},
		{"control and invalid bytes", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "a\x00b\x1b[31mc\xff\xfed\u2028e\u00e9", 400)
		}, 400, "a?b?[31mc??d?e\u00e9\n"},
		{"many small writes", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(403)
			for i := 0; i < 5000; i++ {
				io.WriteString(w, "ab\n")
			}
		}, 403, ""},
		{"no body", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, 503, "Service Unavailable\n"},
		{"content-length set by the handler", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "8010")
			w.WriteHeader(400)
			io.WriteString(w, long)
		}, 400, longCut},
		{"multi-byte runes at the cuts", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, strings.Repeat("a", MaxReason-3-tailLen-1)+strings.Repeat("\u00e9", 100)+"b", 400)
		}, 400, strings.Repeat("a", MaxReason-3-tailLen-1) + "..." + strings.Repeat("\u00e9", (tailLen-1)/2) + "b\n"},
		{"exactly MaxReason", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, strings.Repeat("x", MaxReason), 400)
		}, 400, strings.Repeat("x", MaxReason) + "\n"},
		{"200 untouched", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, long+"\nsecond line\n")
		}, 200, long + "\nsecond line\n"},
		{"202 untouched", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(202)
		}, 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			Wrap(tc.handler).ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
			body := rec.Body.String()
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d", rec.Code, tc.code)
			}
			if tc.want != "" && body != tc.want {
				t.Fatalf("body %q (%d bytes), want %q", truncate(body), len(body), tc.want)
			}
			if tc.code < 400 {
				return
			}
			if len(body) > MaxReason+1 || !strings.HasSuffix(body, "\n") || strings.ContainsAny(body[:len(body)-1], "\r\n") {
				t.Fatalf("reason %q (%d bytes) is not one line of at most %d bytes", truncate(body), len(body), MaxReason)
			}
			if !utf8.ValidString(body) || strings.IndexFunc(body[:len(body)-1], func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
				t.Fatalf("reason %q is not printable", body)
			}
			if cl := rec.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
				t.Fatalf("Content-Length %s for a body of %d bytes", cl, len(body))
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// FuzzReason checks Reason's promises on any input: one printable line, at most MaxReason bytes.
func FuzzReason(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\xff\xfe", strings.Repeat("\u00e9", 150), "\t x \r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := Reason(s)
		if len(r) > MaxReason || !utf8.ValidString(r) || strings.IndexFunc(r, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
			t.Fatalf("Reason(%q) = %q", s, r)
		}
	})
}

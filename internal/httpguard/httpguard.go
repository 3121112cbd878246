// Package httpguard wraps a listener's handler once with the answers every endpoint owes to hostile input:
// a request whose path is not in canonical form gets 404 with a one-line reason (never the ServeMux's redirect to
// the cleaned path, which would serve a resource under a second name), and every error answer's body is one
// printable line of bounded length, however much of the request a handler quoted into it.
package httpguard

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Wrap returns h guarded: requests for non-canonical paths (see CanonicalPath) are answered 404 before h sees
// them, and every error answer (status 400 and above) h writes reaches the client as one reason line (see
// Reason), whatever h wrote as its body.
func Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ew := &errorWriter{ResponseWriter: w}
		if !CanonicalPath(r.URL.Path) {
			http.Error(ew, "not found: the path is not in canonical form (an empty, \".\" or \"..\" segment)",
				http.StatusNotFound)
		} else {
			h.ServeHTTP(ew, r)
		}
		ew.finish()
	})
}

// CanonicalPath reports whether p, a decoded URL path, is in canonical form: it starts with "/", and no segment
// is empty (but the last, after a trailing slash), "." or "..". A path of the form CONNECT requests carry
// (empty) is not canonical either.
func CanonicalPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || seg == "" && i < len(segs)-1 {
			return false
		}
	}
	return true
}

// MaxReason bounds the length in bytes of an error answer's reason line (without its newline).
const MaxReason = 200

// Reason returns s as an error answer's reason: surrounding space trimmed, line breaks and tabs made spaces,
// other control characters, invalid UTF-8 and unprintable runes made "?", and at most MaxReason bytes. A longer
// reason keeps its start and its end, where the explanation usually is, joined by "...".
func Reason(s string) string {
	s = strings.TrimSpace(s)
	clean := func(s string) string {
		var b strings.Builder
		b.Grow(len(s))
		for i, r := range s {
			switch {
			case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r':
				r = ' '
			case r == utf8.RuneError && isInvalid(s[i:]) || !unicode.IsPrint(r):
				r = '?'
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	// Cleaning never lengthens a string, so a short one stays short; of a long one, cleaning MaxReason bytes from
	// each end is enough (a rune split there becomes "?", and falls outside the part kept but for a tiny tail).
	if len(s) <= MaxReason {
		return clean(s)
	}
	const sep = "..."
	tailLen := (MaxReason - len(sep)) / 3
	head := clean(s[:MaxReason])
	tail := clean(s[len(s)-MaxReason:])
	return prefix(head, MaxReason-len(sep)-tailLen) + sep + suffix(tail, tailLen)
}

// prefix returns the longest prefix of s of at most n bytes that ends on a rune boundary.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// suffix returns the longest suffix of s of at most n bytes that starts on a rune boundary.
func suffix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// isInvalid reports whether s starts with an invalid UTF-8 sequence (rather than an encoded U+FFFD).
func isInvalid(s string) bool {
	_, size := utf8.DecodeRuneInString(s)
	return size <= 1
}

// errorWriter holds back an error status (400 and above) and its body, so that the answer can be sent as one
// bounded reason line when the handler returns; other answers pass through unchanged. Of a long body it keeps
// the start and the last MaxReason bytes: all Reason needs.
type errorWriter struct {
	http.ResponseWriter
	code    int  // the error status held back; 0 if none
	written bool // a final status was written (or held)
	head    []byte
	tail    []byte // the last MaxReason bytes written once head is full
}

// maxHead bounds errorWriter.head.
const maxHead = 2 * MaxReason

func (w *errorWriter) WriteHeader(code int) {
	switch {
	case w.written:
		// A superfluous call: net/http would ignore it (and log it); so do we.
	case code < http.StatusBadRequest:
		w.written = code >= 200 // informational answers may come before the final one
		w.ResponseWriter.WriteHeader(code)
	default:
		w.written, w.code = true, code
	}
}

func (w *errorWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	if w.code == 0 {
		return w.ResponseWriter.Write(b)
	}
	n := len(b)
	if room := maxHead - len(w.head); room > 0 {
		k := min(len(b), room)
		w.head, b = append(w.head, b[:k]...), b[k:]
	}
	if len(b) > 0 {
		w.tail = append(w.tail, b[max(0, len(b)-MaxReason):]...)
		w.tail = w.tail[max(0, len(w.tail)-MaxReason):]
	}
	return n, nil
}

// FlushError flushes a passing answer; a held error answer is sent whole when the handler returns.
func (w *errorWriter) FlushError() error {
	if w.code != 0 {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for callers that assert http.Flusher.
func (w *errorWriter) Flush() { _ = w.FlushError() }

// Unwrap gives http.ResponseController the underlying writer (for read deadlines and the like).
func (w *errorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish sends a held error answer: its reason (the status text if the handler wrote none) as one line.
func (w *errorWriter) finish() {
	if w.code == 0 {
		return
	}
	reason := Reason(string(w.head) + string(w.tail))
	if reason == "" {
		reason = Reason(http.StatusText(w.code))
	}
	body := reason + "\n"
	h := w.Header()
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(w.code)
	io.WriteString(w.ResponseWriter, body)
}

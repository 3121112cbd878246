package sigsum

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// MaxLineLength bounds one line of an ASCII message, newline included. The longest line the protocol defines (a
// cosignature) is about 230 bytes; the bound keeps a hostile peer from making a parser hold an unbounded line.
const MaxLineLength = 1024

// MaxInt is the largest integer the ASCII grammar admits (2^63-1).
const MaxInt = 1<<63 - 1

// ErrSyntax is wrapped by every ASCII parsing error, so callers can tell malformed input (400) from other failures.
var ErrSyntax = errors.New("malformed message")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// ParseInt parses a decimal integer of the ASCII grammar: 0|[1-9][0-9]*, at most 2^63-1.
func ParseInt(s string) (uint64, error) {
	if s == "" {
		return 0, syntaxErr("empty integer")
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, syntaxErr("integer %q has a leading zero", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, syntaxErr("integer %q has a non-digit", truncate(s))
		}
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, syntaxErr("integer %q exceeds 2^63-1", truncate(s))
	}
	return n, nil
}

// parseHex decodes s (any case) into dst, which fixes the exact length required.
func parseHex(what string, s []byte, dst []byte) error {
	if len(s) != 2*len(dst) {
		return syntaxErr("%s has %d hex digits, want %d", what, len(s), 2*len(dst))
	}
	if _, err := hex.Decode(dst, s); err != nil {
		return syntaxErr("%s is not hex", what)
	}
	return nil
}

// ParseHash decodes a 32-byte hash from hex.
func ParseHash(s string) (h Hash, err error) { return h, parseHex("hash", []byte(s), h[:]) }

// ParsePublicKey decodes a 32-byte Ed25519 public key from hex.
func ParsePublicKey(s string) (k PublicKey, err error) {
	return k, parseHex("public key", []byte(s), k[:])
}

// ParseSignature decodes a 64-byte Ed25519 signature from hex.
func ParseSignature(s string) (sig Signature, err error) {
	return sig, parseHex("signature", []byte(s), sig[:])
}

// truncate keeps error messages one short line even when the input is huge.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// asciiParser reads a key=value message line by line, enforcing the key order the caller asks for.
type asciiParser struct {
	data []byte
}

func newASCIIParser(b []byte) *asciiParser { return &asciiParser{data: b} }

// line returns the next line without its newline, a slice of the input.
func (p *asciiParser) line() ([]byte, error) {
	i := bytes.IndexByte(p.data, '\n')
	switch {
	case i < 0 && len(p.data) > MaxLineLength, i >= MaxLineLength:
		return nil, syntaxErr("line longer than %d bytes", MaxLineLength)
	case i < 0:
		return nil, syntaxErr("last line does not end in a newline")
	}
	l := p.data[:i]
	p.data = p.data[i+1:]
	return l, nil
}

// next reads one line, which must carry key, and returns its value.
func (p *asciiParser) next(key string) (string, error) {
	v, err := p.nextBytes(key)
	return string(v), err
}

// nextBytes is next without a copy: the value is a slice of the input.
func (p *asciiParser) nextBytes(key string) ([]byte, error) {
	if len(p.data) == 0 {
		return nil, syntaxErr("missing key %q", key)
	}
	l, err := p.line()
	if err != nil {
		return nil, err
	}
	k, v, ok := bytes.Cut(l, []byte("="))
	if !ok {
		return nil, syntaxErr("line %q has no '='", truncate(string(l)))
	}
	if string(k) != key {
		return nil, syntaxErr("expected key %q, got %q", key, truncate(string(k)))
	}
	return v, nil
}

// more reports whether input remains, i.e. whether a repeatable last key has another line.
func (p *asciiParser) more() bool { return len(p.data) > 0 }

// fields splits a value into exactly len(f) fields separated by single spaces, slices of v.
func fields(key string, v []byte, f [][]byte) error {
	if n := bytes.Count(v, []byte(" ")) + 1; n != len(f) {
		return syntaxErr("%s value has %d space-separated fields, want %d", key, n, len(f))
	}
	for i := range len(f) - 1 {
		f[i], v, _ = bytes.Cut(v, []byte(" "))
	}
	f[len(f)-1] = v
	return nil
}

// end checks that nothing follows the last expected key.
func (p *asciiParser) end() error {
	if len(p.data) == 0 {
		return nil
	}
	l := p.data
	if i := bytes.IndexByte(l, '\n'); i >= 0 {
		l = l[:i]
	}
	return syntaxErr("unexpected trailing data %q", truncate(string(l)))
}

func (p *asciiParser) hash(key string) (h Hash, err error) {
	return h, p.hex(key, "hash", h[:])
}

func (p *asciiParser) signature(key string) (s Signature, err error) {
	return s, p.hex(key, "signature", s[:])
}

func (p *asciiParser) publicKey(key string) (k PublicKey, err error) {
	return k, p.hex(key, "public key", k[:])
}

// hex reads the line of key, whose value (what) is len(dst) bytes in hex, into dst.
func (p *asciiParser) hex(key, what string, dst []byte) error {
	v, err := p.nextBytes(key)
	if err != nil {
		return err
	}
	if err := parseHex(what, v, dst); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func (p *asciiParser) int(key string) (uint64, error) {
	v, err := p.next(key)
	if err != nil {
		return 0, err
	}
	n, err := ParseInt(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return n, nil
}

// hashes reads one or more repeated hash lines of key up to the end of the message.
func (p *asciiParser) hashes(key string) ([]Hash, error) {
	var hs []Hash
	for first := true; first || p.more(); first = false {
		h, err := p.hash(key)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// asciiWriter builds a key=value message; values are written in the canonical (lowercase hex) form.
type asciiWriter struct{ b []byte }

func (w *asciiWriter) line(key string, values ...string) {
	w.b = append(w.b, key...)
	w.b = append(w.b, '=')
	for i, v := range values {
		if i > 0 {
			w.b = append(w.b, ' ')
		}
		w.b = append(w.b, v...)
	}
	w.b = append(w.b, '\n')
}

func (w *asciiWriter) hex(key string, b []byte) {
	w.b = append(w.b, key...)
	w.b = append(w.b, '=')
	w.b = hex.AppendEncode(w.b, b)
	w.b = append(w.b, '\n')
}

func (w *asciiWriter) int(key string, n uint64) {
	w.b = append(w.b, key...)
	w.b = append(w.b, '=')
	w.b = strconv.AppendUint(w.b, n, 10)
	w.b = append(w.b, '\n')
}

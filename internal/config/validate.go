package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/sigsumd/sigsumd/internal/engine"
)

// parseStorage parses a storage value: engine.ParseStorage, whose errors never quote the value (a DSN or URI may
// hold a password).
func parseStorage(s string) (Storage, error) { return engine.ParseStorage(s) }

// prefixPunctuation are the characters other than ASCII letters and digits allowed in a url-prefix: RFC 3986's
// unreserved characters and those sub-delimiters that need no escaping in a path and mean nothing in a ServeMux
// pattern ("$", "{" and "}" do, and "%" would need decoding).
const prefixPunctuation = "-._~!&'()*+,;=:@"

// normalizePrefix strips leading and trailing slashes and checks that the rest is a plain URL path: segments of
// ASCII letters, digits and prefixPunctuation, none empty, "." or "..", so that it is the same path to every client
// and a literal in a ServeMux pattern. Its errors wrap ErrURLPrefix.
func normalizePrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, r := range p {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '/' ||
			strings.ContainsRune(prefixPunctuation, r)) {
			return "", fmt.Errorf("%w: character %q is not allowed (use ASCII letters, digits and %s between slashes)",
				ErrURLPrefix, r, prefixPunctuation)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: %q has an empty, \".\" or \"..\" path segment", ErrURLPrefix, p)
		}
	}
	return p, nil
}

// checkURL requires an http or https URL with a host and without query, fragment or credentials.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an http:// or https:// URL", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q: no host", s)
	case u.User != nil:
		return fmt.Errorf("%q: credentials in URLs are not supported", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%q: query and fragment are not allowed", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: invalid port %q", s, p)
		}
	}
	return nil
}

// checkEndpoint requires host:port with a numeric port; needHost also requires a host and a non-zero port.
func (m *merger) checkEndpoint(key, hostport string, needHost bool) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return m.wrap(key, "want host:port", err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return m.errorf(key, "%q: port %q is not a number from 0 to 65535", hostport, port)
	}
	if needHost && (host == "" || n == 0) {
		return m.errorf(key, "%q: want host:port with a host and a non-zero port", hostport)
	}
	return nil
}

// parseLogLevel parses debug, info, warn or error.
func parseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New(strconv.Quote(s) + ": want debug, info, warn or error")
}

// ErrUnknownStorageScheme is wrapped by the error for a storage value whose scheme is not one of the known ones.
var ErrUnknownStorageScheme = engine.ErrUnknownStorageScheme

// ErrURLPrefix is wrapped by the error for a url-prefix that is not a plain path.
var ErrURLPrefix = errors.New("not a plain path prefix")

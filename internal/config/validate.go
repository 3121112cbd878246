package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// parseStorage parses "sqlite:<path>", "memory:", "mysql:<dsn>" or "postgresql:<uri>". A PostgreSQL URI may also
// be given as is ("postgresql://user@host/db").
func parseStorage(s string) (Storage, error) {
	scheme, target, ok := strings.Cut(s, ":")
	if !ok {
		return Storage{}, fmt.Errorf("%q has no scheme: want sqlite:<path>, memory:, mysql:<dsn> or postgresql:<uri>", s)
	}
	switch scheme {
	case StorageMemory:
		if target != "" {
			return Storage{}, fmt.Errorf("%q: memory: takes nothing after the colon", s)
		}
	case StorageSQLite, StorageMySQL, StorageCockroachDB:
		if target == "" {
			return Storage{}, fmt.Errorf("%q: %s: needs a %s after the colon", s, scheme,
				map[string]string{StorageSQLite: "file path", StorageMySQL: "DSN", StorageCockroachDB: "URI"}[scheme])
		}
	case StoragePostgreSQL:
		if strings.HasPrefix(target, "//") {
			target = s // the URI itself: postgresql://...
		}
		if target == "" {
			return Storage{}, fmt.Errorf("%q: postgresql: needs a URI after the colon", s)
		}
	default:
		return Storage{}, fmt.Errorf("unknown scheme %q in %q: want sqlite:<path>, memory:, mysql:<dsn>, postgresql:<uri> or crdb:<uri>", scheme, s)
	}
	return Storage{Scheme: scheme, Target: target}, nil
}

// normalizePrefix strips leading and trailing slashes and checks that the rest is a clean URL path.
func normalizePrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`?#%\`, r) {
			return "", fmt.Errorf("%q: character %q is not allowed in a path prefix", p, r)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%q: empty, \".\" or \"..\" path segment", p)
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

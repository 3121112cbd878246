package ratelimit

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// DefaultSuffixList is the suffix-list argument of a public line that selects the public suffix list compiled
// into golang.org/x/net/publicsuffix instead of a file. (A file literally named "default" is "./default".)
const DefaultSuffixList = "default"

// maxLimit bounds a line's n, as in the reference, so a count always fits an int32.
const maxLimit = 1<<31 - 1

// Limits is a parsed limits file. n is the number of new leaves allowed per sliding 24 hours; 0 allows none.
type Limits struct {
	// Keys maps a submitter key hash to its limit (`key <key_hash hex> <n>`).
	Keys map[sigsum.Hash]int
	// Domains maps a normalised domain to the limit shared by it and all its subdomains (`domain <domain> <n>`).
	Domains map[string]int
	// Public is the `public <suffix list> <n>` line, nil if there is none.
	Public *PublicLimit
}

// PublicLimit is the public line: every registered domain gets its own counter with limit N.
type PublicLimit struct {
	// SuffixList is DefaultSuffixList or the path of a publicsuffix.org format file, as written in the file.
	SuffixList string
	// N is the limit per registered domain.
	N int
	// Line is the line number, for error messages when the suffix list is loaded.
	Line int
}

// ParseLimits parses a limits file. Lines are `key <key_hash hex> <n>`, `domain <domain> <n>` or
// `public <suffix list> <n>`, fields separated by white space; "#" starts a comment that runs to the end of the
// line; blank lines are ignored. A key hash or (normalised) domain listed twice, or a second public line, is an
// error. Errors are one line and name the line number. The suffix list file is not read here.
func ParseLimits(r io.Reader) (*Limits, error) {
	l := &Limits{Keys: map[sigsum.Hash]int{}, Domains: map[string]int{}}
	keyLines := map[sigsum.Hash]int{}
	domainLines := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want `<key|domain|public> <item> <n>`, got %d fields", n, len(fields))
		}
		limit, err := parseLimit(fields[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		switch fields[0] {
		case "key":
			b, err := hex.DecodeString(fields[1])
			if err != nil || len(b) != sigsum.HashSize {
				return nil, fmt.Errorf("line %d: key hash %q is not %d hex bytes", n, fields[1], sigsum.HashSize)
			}
			h := sigsum.Hash(b)
			if prev, dup := keyLines[h]; dup {
				return nil, fmt.Errorf("line %d: key %s is already limited on line %d", n, h, prev)
			}
			keyLines[h] = n
			l.Keys[h] = limit
		case "domain":
			d, err := normalizeDomain(fields[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if prev, dup := domainLines[d]; dup {
				return nil, fmt.Errorf("line %d: domain %s is already limited on line %d", n, d, prev)
			}
			domainLines[d] = n
			l.Domains[d] = limit
		case "public":
			if l.Public != nil {
				return nil, fmt.Errorf("line %d: a second public line (the first is line %d)", n, l.Public.Line)
			}
			l.Public = &PublicLimit{SuffixList: fields[1], N: limit, Line: n}
		default:
			return nil, fmt.Errorf("line %d: unknown keyword %q, want key, domain or public", n, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return l, nil
}

// parseLimit accepts an unsigned decimal (no sign), at most 2^31-1, like the reference.
func parseLimit(s string) (int, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v > maxLimit {
		return 0, fmt.Errorf("limit %q is not a decimal number from 0 to %d", s, maxLimit)
	}
	return int(v), nil
}

// loadedLimits is a limits file with its suffix list read: what the limiter matches submissions against.
type loadedLimits struct {
	*Limits
	suffixes suffixList // nil without a public line
}

// loadLimits reads and parses the limits file at path, and the public line's suffix list. A relative suffix list
// path is taken relative to the limits file's directory, so the daemon's working directory does not matter.
func loadLimits(path string) (*loadedLimits, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	defer f.Close()
	l, err := ParseLimits(f)
	if err != nil {
		return nil, fmt.Errorf("rate limits file %s: %w", path, err)
	}
	ll := &loadedLimits{Limits: l}
	if l.Public == nil {
		return ll, nil
	}
	if l.Public.SuffixList == DefaultSuffixList {
		ll.suffixes = builtinSuffixes{}
		return ll, nil
	}
	p := l.Public.SuffixList
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(path), p)
	}
	sf, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("rate limits file %s: line %d: %w", path, l.Public.Line, err)
	}
	defer sf.Close()
	fs, err := parseSuffixList(sf)
	if err != nil {
		return nil, fmt.Errorf("rate limits file %s: line %d: public suffix list %s: %w", path, l.Public.Line, p, err)
	}
	ll.suffixes = fs
	return ll, nil
}

package ratelimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// maxDomainLength and maxLabelLength are the DNS limits on a name in its ASCII form (RFC 1035).
const (
	maxDomainLength = 253
	maxLabelLength  = 63
)

// normalizeDomain returns the canonical form of a domain name: the IDNA lookup profile's ASCII (A-label) form,
// lowercase, without a trailing dot. Unicode and punycode spellings of one name, and any capitalisation, give the
// same result, so they share a limits line and a counter. The reference keeps the Unicode (U-label) form; which
// form is canonical does not matter as long as it is one form, and the ASCII form is what DNS is asked for.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	a, err := idna.Lookup.ToASCII(strings.ToLower(d))
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid name: %w", d, err)
	}
	// ToASCII maps case already; lowering again keeps an unusual mapping from splitting counters.
	a = strings.ToLower(a)
	if len(a) > maxDomainLength {
		return "", fmt.Errorf("domain %q is longer than %d bytes", d, maxDomainLength)
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > maxLabelLength {
			return "", fmt.Errorf("domain %q has an empty label or one longer than %d bytes", d, maxLabelLength)
		}
	}
	return a, nil
}

// parent returns the domain without its first label, and false for a single-label name.
func parent(d string) (string, bool) {
	_, p, ok := strings.Cut(d, ".")
	return p, ok
}

// isWithin reports whether d is equal to or a subdomain of ancestor (both normalised).
func isWithin(d, ancestor string) bool {
	return d == ancestor || strings.HasSuffix(d, "."+ancestor)
}

// suffixList finds the registered domain (public suffix plus one label) of a normalised domain.
type suffixList interface {
	// registeredDomain returns the registered domain, or an error if d has no known public suffix or is itself
	// a public suffix.
	registeredDomain(d string) (string, error)
}

// builtinSuffixes is the public suffix list compiled into golang.org/x/net/publicsuffix.
type builtinSuffixes struct{}

func (builtinSuffixes) registeredDomain(d string) (string, error) {
	ps, icann := publicsuffix.PublicSuffix(d)
	// publicsuffix applies the implicit "*" rule to a top-level domain the list does not know, reporting it as
	// a non-ICANN single label (private-section entries always have a dot). The reference refuses such names.
	if !icann && !strings.Contains(ps, ".") {
		return "", fmt.Errorf("domain %q has no known public suffix", d)
	}
	rd, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return "", fmt.Errorf("domain %q is a public suffix", d)
	}
	return rd, nil
}

// fileSuffixes is a public suffix list read from a file in the publicsuffix.org format
// (https://publicsuffix.org/list/public_suffix_list.dat), with its names normalised like token domains.
type fileSuffixes struct {
	rules      map[string]bool // "example.com"
	wildcards  map[string]bool // "*.example.com", stored as "example.com"
	exceptions map[string]bool // "!www.example.com", stored as "www.example.com"
}

// parseSuffixList reads a public suffix list: one rule per line (its first whitespace-separated field), "//"
// comments and blank lines ignored, "*." wildcard and "!" exception rules.
func parseSuffixList(r io.Reader) (*fileSuffixes, error) {
	l := &fileSuffixes{rules: map[string]bool{}, wildcards: map[string]bool{}, exceptions: map[string]bool{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "//") {
			continue
		}
		rule := fields[0]
		set := l.rules
		switch {
		case strings.HasPrefix(rule, "!"):
			set, rule = l.exceptions, rule[1:]
		case strings.HasPrefix(rule, "*."):
			set, rule = l.wildcards, rule[2:]
		}
		d, err := normalizeDomain(rule)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		set[d] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(l.rules)+len(l.wildcards) == 0 {
		return nil, errors.New("no rules")
	}
	return l, nil
}

// publicSuffix applies the publicsuffix.org algorithm: an exception rule wins and makes its parent the suffix;
// otherwise the matching rule with the most labels; no match means the name is under an unknown top-level domain.
func (l *fileSuffixes) publicSuffix(d string) (string, bool) {
	for s, ok := d, true; ok; s, ok = parent(s) {
		if l.exceptions[s] {
			p, _ := parent(s)
			return p, p != ""
		}
	}
	for s, ok := d, true; ok; s, ok = parent(s) {
		if l.rules[s] {
			return s, true
		}
		if p, ok := parent(s); ok && l.wildcards[p] {
			return s, true
		}
	}
	return "", false
}

func (l *fileSuffixes) registeredDomain(d string) (string, error) {
	ps, ok := l.publicSuffix(d)
	if !ok {
		return "", fmt.Errorf("domain %q has no known public suffix", d)
	}
	if d == ps {
		return "", fmt.Errorf("domain %q is a public suffix", d)
	}
	rest := strings.TrimSuffix(d, "."+ps)
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest + "." + ps, nil
}

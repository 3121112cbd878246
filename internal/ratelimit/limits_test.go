package ratelimit

import (
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func TestParseLimits(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	good := "# limits\n\n" +
		"key " + strings.ToUpper(h) + " 100  # trailing comment\n" +
		"  domain   Bücher.Example.  7\n" +
		"domain example.org 0\n" +
		"public default 10\n"
	l, err := ParseLimits(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	var kh sigsum.Hash
	for i := range kh {
		kh[i] = 0xab
	}
	if l.Keys[kh] != 100 || len(l.Keys) != 1 {
		t.Errorf("keys = %v", l.Keys)
	}
	if l.Domains["xn--bcher-kva.example"] != 7 || l.Domains["example.org"] != 0 || len(l.Domains) != 2 {
		t.Errorf("domains = %v", l.Domains)
	}
	if l.Public == nil || l.Public.SuffixList != "default" || l.Public.N != 10 || l.Public.Line != 6 {
		t.Errorf("public = %+v", l.Public)
	}

	for _, tc := range []struct{ name, in, want string }{
		{"two fields", "key " + h, "line 1: want"},
		{"four fields", "\n\nkey " + h + " 1 2", "line 3: want"},
		{"unknown keyword", "keys " + h + " 1", `line 1: unknown keyword "keys"`},
		{"short hash", "key abcd 1", "line 1: key hash"},
		{"bad hex", "key " + strings.Repeat("zz", 32) + " 1", "line 1: key hash"},
		{"negative", "domain example.com -1", "line 1: limit"},
		{"plus sign", "domain example.com +1", "line 1: limit"},
		{"too large", "domain example.com 2147483648", "line 1: limit"},
		{"not a number", "domain example.com ten", "line 1: limit"},
		{"bad domain", "domain exa_mple.com 1", "line 1: domain"},
		{"empty label", "domain a..b 1", "line 1: domain"},
		{"duplicate key", "key " + h + " 1\nkey " + strings.ToUpper(h) + " 2", "line 2: key " + h + " is already limited on line 1"},
		{"duplicate domain", "domain bücher.example 1\n# x\ndomain XN--BCHER-KVA.example. 2", "line 3: domain xn--bcher-kva.example is already limited on line 1"},
		{"two public lines", "public default 1\npublic other 2", "line 2: a second public line (the first is line 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseLimits(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadLimitsSuffixFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "psl.dat", "// comment\ncom\nuk\nco.uk\n*.ck\n!www.ck\nрф\n")
	p := writeFile(t, dir, "limits", "public psl.dat 5\n")
	ll, err := loadLimits(p) // relative to the limits file's directory
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{"a.b.example.com", "example.com"},
		{"example.com", "example.com"},
		{"x.example.co.uk", "example.co.uk"},
		{"x.example.uk", "example.uk"},
		{"a.b.foo.ck", "b.foo.ck"}, // *.ck makes foo.ck a suffix
		{"a.www.ck", "www.ck"},     // !www.ck makes ck the suffix
		{"www.ck", "www.ck"},
		{"xn--80ak6aa92e.xn--p1ai", "xn--80ak6aa92e.xn--p1ai"},
		{"com", ""},
		{"co.uk", ""},
		{"foo.ck", ""},
		{"example.org", ""}, // unknown top-level domain
	} {
		got, err := ll.suffixes.registeredDomain(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("registeredDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	for _, tc := range []struct{ name, psl, limits, want string }{
		{"missing file", "", "\n\npublic nonexistent.dat 5\n", "line 3"},
		{"bad rule", "com\nexa_mple.com\n", "public psl2.dat 5\n", "line 1: public suffix list"},
		{"empty list", "// nothing\n", "public psl2.dat 5\n", "no rules"},
	} {
		d := t.TempDir()
		if tc.psl != "" {
			writeFile(t, d, "psl2.dat", tc.psl)
		}
		_, err := loadLimits(writeFile(t, d, "limits", tc.limits))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestBuiltinSuffixes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"www.example.co.uk", "example.co.uk"},
		{"a.b.example.com", "example.com"},
		{"foo.github.io", "foo.github.io"}, // private-section suffix
		{"xn--bcher-kva.de", "xn--bcher-kva.de"},
		{"a.xn--80ak6aa92e.xn--p1ai", "xn--80ak6aa92e.xn--p1ai"},
		{"com", ""},
		{"co.uk", ""},
		{"example.unknowntld", ""},
		{"localhost", ""},
	} {
		got, err := builtinSuffixes{}.registeredDomain(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("registeredDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"EXAMPLE.Com.", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.EXAMPLE.", "xn--bcher-kva.example"},
		{"ｅｘａｍｐｌｅ.com", "example.com"}, // full-width letters map under the lookup profile
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{".example.com", ""},
		{"under_score.example", ""},
		{"sp ace.example", ""},
		{strings.Repeat("a", 64) + ".example", ""},
		{strings.Repeat("a.", 127) + "com", ""},
		{"-lead.example", ""},
	} {
		got, err := normalizeDomain(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("normalizeDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{
		"",
		"# only a comment\n\n",
		"key " + strings.Repeat("00", 32) + " 10\n",
		"domain example.com 5 # comment\ndomain sub.example.com 0\n",
		"domain bücher.example 1\ndomain xn--bcher-kva.example 2\n",
		"public default 10\n",
		"public /etc/psl.dat 0\npublic default 1\n",
		"keys x 1\n",
		"domain a..b 1\n",
		"domain example.com 99999999999\n",
		"key " + strings.Repeat("ab", 32) + " 1\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseLimits(strings.NewReader(in))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for d, n := range l.Domains {
			if nd, err := normalizeDomain(d); err != nil || nd != d {
				t.Errorf("domain %q is not normalised: %q, %v", d, nd, err)
			}
			if n < 0 || n > maxLimit {
				t.Errorf("limit %d out of range", n)
			}
		}
		for _, n := range l.Keys {
			if n < 0 || n > maxLimit {
				t.Errorf("limit %d out of range", n)
			}
		}
	})
}

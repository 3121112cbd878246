package policy

import (
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// FuzzParse checks that Parse never panics, that its errors are one line, and that what it accepts is coherent:
// unique names and keys, and a quorum that Satisfied can evaluate.
func FuzzParse(f *testing.F) {
	k1, k2, k3 := hexKey(1), hexKey(2), hexKey(3)
	for _, s := range []string{
		"",
		"quorum none\n",
		"# comment\nlog " + k1 + " https://log.example\nquorum none\n",
		"witness a " + k1 + " https://a.example\nwitness b " + k2 + "\ngroup g any a b\nquorum g\n",
		"witness a " + k1 + "\nwitness b " + k2 + "\nwitness c " + k3 + "\ngroup g 2 a b c\ngroup h all g c\nquorum h\n",
		"witness a " + k1 + "\ngroup g 1 a\nquorum a\n",
		"group g any x\nquorum g\n",
		"witness a " + k1 + "\nwitness a " + k2 + "\nquorum a\n",
		"witness a " + k1 + "\ngroup g 0 a\nquorum g",
		"quorum none\nquorum none\n",
		"log " + k1 + "\r\nquorum none\r\n",
		"witness a+b " + k1 + "\nquorum none",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Parse(strings.NewReader(src))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		names := make(map[string]bool)
		keys := make(map[sigsum.PublicKey]bool)
		all := make(map[sigsum.Hash]bool)
		for _, l := range p.Logs() {
			if keys[l.Key] {
				t.Fatalf("duplicate key %s accepted", l.Key)
			}
			keys[l.Key] = true
		}
		for _, w := range p.Witnesses() {
			if names[w.Name] || keys[w.Key] {
				t.Fatalf("duplicate witness %q accepted", w.Name)
			}
			names[w.Name], keys[w.Key] = true, true
			all[w.Key.KeyHash()] = true
		}
		// Every witness cosigning satisfies any quorum (k never exceeds the member count); nobody cosigning
		// satisfies only quorum none.
		if !p.Satisfied(all) {
			t.Fatalf("quorum %q not satisfied by every witness", p.Quorum())
		}
		if p.Satisfied(nil) != (p.Quorum() == QuorumNone) {
			t.Fatalf("quorum %q: Satisfied(nil) = %v", p.Quorum(), p.Satisfied(nil))
		}
	})
}

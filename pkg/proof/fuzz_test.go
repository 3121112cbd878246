package proof

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are one line, and that whatever it accepts survives a
// round trip through MarshalASCII unchanged.
func FuzzParse(f *testing.F) {
	for _, c := range []struct{ size, index int }{{1, 0}, {2, 1}, {5, 2}} {
		fx := newFixture(f, c.size, c.index)
		f.Add(fx.proof.MarshalASCII())
		fx.proof.TreeHead.Cosignatures = nil
		f.Add(fx.proof.MarshalASCII())
	}
	f.Add([]byte(sigsumGoExample))
	f.Add([]byte(strings.Replace(strings.Replace(sigsumGoExample, "version=2", "version=1", 1), "leaf=", "leaf=abcd ", 1)))
	f.Add([]byte("version=2\nlog=\nleaf=\n\nsize=1\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Parse(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error message has several lines: %q", err)
			}
			return
		}
		out := p.MarshalASCII()
		p2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", out, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the proof:\n%+v\n%+v", p, p2)
		}
		if string(p2.MarshalASCII()) != string(out) {
			t.Fatalf("marshalling is not stable")
		}
	})
}

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// key returns a distinct fake public key for index i; the policy never checks that keys are on the curve.
func key(i byte) sigsum.PublicKey {
	var k sigsum.PublicKey
	for j := range k {
		k[j] = i
	}
	return k
}

func hexKey(i byte) string { return key(i).String() }

func TestParseGood(t *testing.T) {
	t.Parallel()
	src := fmt.Sprintf(`# a comment
log %s https://log.example/prefix   # trailing comment
log %s

witness w1 %s https://w1.example
witness w2 %s
	witness   w3   %s   http://127.0.0.1:8080/x#frag
group g1 any w1 w2
group g2 2 g1 w3
group g3 all w1 w2 w3
quorum g2
`, hexKey(1), strings.ToUpper(hexKey(2)), hexKey(3), hexKey(4), hexKey(5))
	p, err := Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	logs := p.Logs()
	if len(logs) != 2 || logs[0].Key != key(1) || logs[0].URL != "https://log.example/prefix" || logs[1].Key != key(2) || logs[1].URL != "" {
		t.Errorf("logs = %+v", logs)
	}
	ws := p.Witnesses()
	want := []Witness{{Name: "w1", Key: key(3), URL: "https://w1.example"}, {Name: "w2", Key: key(4)},
		{Name: "w3", Key: key(5), URL: "http://127.0.0.1:8080/x#frag"}}
	if len(ws) != len(want) {
		t.Fatalf("witnesses = %+v", ws)
	}
	for i := range want {
		if !reflect.DeepEqual(ws[i], want[i]) {
			t.Errorf("witness %d = %+v, want %+v", i, ws[i], want[i])
		}
	}
	if p.Quorum() != "g2" {
		t.Errorf("quorum = %q", p.Quorum())
	}
	if w, ok := p.WitnessByKeyHash(key(4).KeyHash()); !ok || w.Name != "w2" {
		t.Errorf("WitnessByKeyHash = %+v, %v", w, ok)
	}
	if _, ok := p.WitnessByKeyHash(key(9).KeyHash()); ok {
		t.Error("WitnessByKeyHash found an unknown key")
	}
	// The returned slices are copies: changing them does not change the policy.
	ws[0].Name = "changed"
	if p.Witnesses()[0].Name != "w1" {
		t.Error("Witnesses returned the policy's own slice")
	}
}

func TestParseMinimal(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"quorum none", "quorum none\n", "\r\nquorum none\r\n", "#x\n  quorum   none  # y"} {
		p, err := Parse(strings.NewReader(src))
		if err != nil {
			t.Errorf("%q: %v", src, err)
			continue
		}
		if p.Quorum() != QuorumNone || !p.Satisfied(nil) || len(p.Logs()) != 0 || len(p.Witnesses()) != 0 {
			t.Errorf("%q: unexpected policy %+v", src, p)
		}
	}
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := hexKey(1), hexKey(2), hexKey(3)
	tests := []struct {
		name string
		src  string
		line int    // 0: no line number expected
		want string // substring of the error
	}{
		{"empty", "", 0, "no quorum"},
		{"comments only", "# x\n\n", 0, "no quorum"},
		{"unknown statement", "quorum none\nwitnes w " + k1, 2, "unknown statement"},
		{"log no key", "log", 1, "want `log"},
		{"log extra", "log " + k1 + " https://a https://b", 1, "want `log"},
		{"log short key", "log abcd", 1, "public key"},
		{"log non hex", "log " + strings.Repeat("zz", 32), 1, "not hex"},
		{"log bad url", "log " + k1 + " ftp://x", 1, "URL"},
		{"log url no host", "log " + k1 + " https://", 1, "URL"},
		{"log dup key", "log " + k1 + "\nlog " + k1, 2, "already used on line 1"},
		{"witness and log same key", "log " + k1 + "\nwitness w " + k1, 2, "already used on line 1"},
		{"witness dup key", "witness a " + k1 + "\nwitness b " + k1, 2, "already used"},
		{"witness no key", "witness w", 1, "want `witness"},
		{"witness extra", "witness w " + k1 + " http://a x", 1, "want `witness"},
		{"witness dup name", "witness w " + k1 + "\nwitness w " + k2, 2, "already defined"},
		{"witness reserved", "witness none " + k1, 1, "reserved"},
		{"witness reserved any", "witness any " + k1, 1, "reserved"},
		{"witness plus", "witness a+b " + k1, 1, "'+'"},
		{"witness control", "witness a\x01b " + k1, 1, "printable"},
		{"witness bad utf8", "witness a\xffb " + k1, 1, "printable"},
		{"witness bad url", "witness w " + k1 + " nonsense", 1, "URL"},
		{"group no members", "witness w " + k1 + "\ngroup g any", 2, "at least one member"},
		{"group undefined member", "witness w " + k1 + "\ngroup g any w x", 2, `member "x"`},
		{"group forward ref", "group g any w\nwitness w " + k1, 1, "earlier line"},
		{"group self ref", "witness w " + k1 + "\ngroup g any g", 2, "earlier line"},
		{"group dup member", "witness w " + k1 + "\ngroup g any w w", 2, "listed twice"},
		{"group k zero", "witness w " + k1 + "\ngroup g 0 w", 2, "threshold"},
		{"group k too big", "witness w " + k1 + "\ngroup g 2 w", 2, "from 1 to 1"},
		{"group k leading zero", "witness w " + k1 + "\ngroup g 01 w", 2, "threshold"},
		{"group k negative", "witness w " + k1 + "\ngroup g -1 w", 2, "threshold"},
		{"group k word", "witness w " + k1 + "\ngroup g most w", 2, "threshold"},
		{"group name taken by witness", "witness w " + k1 + "\ngroup w any w", 2, "already defined"},
		{"witness name taken by group", "witness w " + k1 + "\ngroup g any w\nwitness g " + k2, 3, "already defined"},
		{"quorum twice", "quorum none\nquorum none", 2, "first is on line 1"},
		{"quorum undefined", "quorum g", 1, "not a witness or group"},
		{"quorum forward", "quorum w\nwitness w " + k1, 1, "not a witness or group"},
		{"quorum no arg", "quorum", 1, "want `quorum"},
		{"quorum two args", "witness w " + k1 + "\nquorum w w", 2, "want `quorum"},
		{"error on later line", "witness a " + k1 + "\nwitness b " + k2 + "\n\n# c\nwitness c " + k3 + " bad", 5, "URL"},
		{"long line", "quorum none\n" + strings.Repeat("x", maxLineLength+1), 2, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(strings.NewReader(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			var le *LineError
			if tt.line == 0 {
				if errors.As(err, &le) {
					t.Errorf("error %q has a line number, want none", msg)
				}
				return
			}
			if !errors.As(err, &le) || le.Line != tt.line {
				t.Errorf("error %q: want line %d", msg, tt.line)
			}
			if !strings.HasPrefix(msg, fmt.Sprintf("line %d: ", tt.line)) {
				t.Errorf("error %q does not start with the line number", msg)
			}
		})
	}
}

func TestSatisfied(t *testing.T) {
	t.Parallel()
	src := fmt.Sprintf(`witness a %s
witness b %s
witness c %s
witness d %s
witness e %s
group ab any a b
group abc2 2 a b c
group all3 all a b c
group nested 2 ab all3 d
group top all nested e
`, hexKey(1), hexKey(2), hexKey(3), hexKey(4), hexKey(5))
	set := func(names string) map[sigsum.Hash]bool {
		m := make(map[sigsum.Hash]bool)
		for _, n := range names {
			m[key(byte(n-'a'+1)).KeyHash()] = true
		}
		return m
	}
	tests := []struct {
		quorum, cosigners string
		want              bool
	}{
		{"a", "", false},
		{"a", "a", true},
		{"a", "bcde", false},
		{"ab", "b", true},
		{"ab", "cde", false},
		{"abc2", "a", false},
		{"abc2", "ac", true},
		{"abc2", "abc", true},
		{"all3", "ab", false},
		{"all3", "abc", true},
		{"nested", "a", false},  // ab only
		{"nested", "ad", true},  // ab + d
		{"nested", "abc", true}, // ab + all3
		{"nested", "d", false},
		{"nested", "cd", false}, // all3 incomplete, ab unmet
		{"top", "ad", false},    // no e
		{"top", "ade", true},
		{"top", "abcde", true},
		{"none", "", true},
	}
	for _, tt := range tests {
		p, err := Parse(strings.NewReader(src + "quorum " + tt.quorum + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Satisfied(set(tt.cosigners)); got != tt.want {
			t.Errorf("quorum %s with %q: got %v, want %v", tt.quorum, tt.cosigners, got, tt.want)
		}
	}
	// A false entry and unknown keys count for nothing.
	p, _ := Parse(strings.NewReader(src + "quorum a\n"))
	if p.Satisfied(map[sigsum.Hash]bool{key(1).KeyHash(): false, key(9).KeyHash(): true}) {
		t.Error("false entry or unknown key satisfied the quorum")
	}
}

// TestSatisfiedDeepSharing builds a chain where every group uses the previous one twice over; evaluation must stay
// linear rather than follow every path.
func TestSatisfiedDeepSharing(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	fmt.Fprintf(&b, "witness w0 %s\nwitness w1 %s\ngroup g0 all w0 w1\ngroup h0 any w1 g0\n", hexKey(1), hexKey(2))
	for i := 1; i < 200; i++ {
		fmt.Fprintf(&b, "group g%d all g%d h%d\ngroup h%d any h%d g%d\n", i, i-1, i-1, i, i-1, i)
	}
	b.WriteString("quorum g199\n")
	p, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Satisfied(map[sigsum.Hash]bool{key(1).KeyHash(): true}) {
		t.Error("satisfied with w0 only")
	}
	if !p.Satisfied(map[sigsum.Hash]bool{key(1).KeyHash(): true, key(2).KeyHash(): true}) {
		t.Error("not satisfied with both")
	}
}

func TestParseFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "policy")
	if err := os.WriteFile(good, []byte("witness w "+hexKey(1)+" https://w\nquorum w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ParseFile(good)
	if err != nil || p.Quorum() != "w" {
		t.Fatalf("ParseFile: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("quorum x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad file: %v", err)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("#\n", MaxFileSize/2+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

// An ML-DSA-44 witness is written with its 1312-byte key in hex; it counts by the SHA-256 of that key, and one key
// used twice is refused as an Ed25519 one is.
func TestMLDSAWitness(t *testing.T) {
	t.Parallel()
	mk := func(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), sigsum.MLDSA44PublicKeySize) }
	p, err := Parse(strings.NewReader(fmt.Sprintf("log %s\nwitness pq %s https://pq.example\nwitness ed %s\ngroup g all pq ed\nquorum g\n",
		key(1), mk(7), key(2))))
	if err != nil {
		t.Fatal(err)
	}
	ws := p.Witnesses()
	pq := bytes.Repeat([]byte{7}, sigsum.MLDSA44PublicKeySize)
	if len(ws) != 2 || !bytes.Equal(ws[0].MLDSA, pq) || ws[0].Key != (sigsum.PublicKey{}) || ws[0].KeyHash() != sigsum.HashBytes(pq) ||
		ws[1].MLDSA != nil || ws[1].KeyHash() != key(2).KeyHash() {
		t.Fatalf("witnesses = %+v", ws)
	}
	if !p.Satisfied(map[sigsum.Hash]bool{sigsum.HashBytes(pq): true, key(2).KeyHash(): true}) ||
		p.Satisfied(map[sigsum.Hash]bool{key(2).KeyHash(): true}) {
		t.Error("the ML-DSA witness does not count by its key hash")
	}
	for name, text := range map[string]string{
		"twice":   fmt.Sprintf("log %s\nwitness a %s\nwitness b %s\nquorum a\n", key(1), mk(7), mk(7)),
		"not hex": fmt.Sprintf("log %s\nwitness a %s\nquorum a\n", key(1), "zz"+mk(7)[2:]),
	} {
		if _, err := Parse(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

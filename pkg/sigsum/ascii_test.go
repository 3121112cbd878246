package sigsum

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	hash1 = "74f2bab0f7b496db35967b365a4bedc0f6378888dea671ec307ee99e677fe21d"
	sig1  = "36692dbfb0fb442b2b3cd18b8956694bc477051692bdd9b6fb457a4122b9018fb1992287d4a54e558b38ccb3a950b646bc4ae9cf5330fa1775c80d4548157702"
	key1  = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
)

func TestParseInt(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"9223372036854775807", MaxInt, true},
		{"9223372036854775808", 0, false}, // 2^63
		{"18446744073709551616", 0, false},
		{"", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1e3", 0, false},
		{"0x10", 0, false},
		{"１", 0, false}, // fullwidth digit
	} {
		got, err := ParseInt(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseInt(%q) error %v does not wrap ErrSyntax", c.in, err)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	addLeaf := "message=" + hash1 + "\nsignature=" + sig1 + "\npublic_key=" + key1 + "\n"
	sth := "size=5\nroot_hash=" + hash1 + "\nsignature=" + sig1 + "\n"
	cosig := "cosignature=" + hash1 + " 1700000000 " + sig1 + "\n"
	leaf := "leaf=" + hash1 + " " + sig1 + " " + hash1 + "\n"
	parsers := map[string]func([]byte) error{
		"add-leaf":    func(b []byte) error { _, err := ParseAddLeafRequest(b); return err },
		"sth":         func(b []byte) error { _, err := ParseSignedTreeHead(b); return err },
		"tree-head":   func(b []byte) error { _, err := ParseCosignedTreeHead(b); return err },
		"leaves":      func(b []byte) error { _, err := ParseLeavesASCII(b); return err },
		"inclusion":   func(b []byte) error { _, err := ParseInclusionProof(b); return err },
		"consistency": func(b []byte) error { _, err := ParseConsistencyProof(b); return err },
	}
	for _, c := range []struct {
		name, parser, in, errPart string
	}{
		{"wrong key order", "add-leaf", "signature=" + sig1 + "\nmessage=" + hash1 + "\npublic_key=" + key1 + "\n", `expected key "message"`},
		{"repeated non-final key", "sth", "size=5\nsize=5\nroot_hash=" + hash1 + "\nsignature=" + sig1 + "\n", `expected key "root_hash"`},
		{"uppercase key", "sth", strings.Replace(sth, "size=", "SIZE=", 1), `expected key "size"`},
		{"missing final newline", "add-leaf", strings.TrimSuffix(addLeaf, "\n"), "newline"},
		{"trailing line", "add-leaf", addLeaf + "extra=1\n", "trailing"},
		{"trailing empty line", "sth", sth + "\n", "trailing"},
		{"trailing bytes without newline", "add-leaf", addLeaf + "x", "trailing"},
		{"leading zero", "sth", strings.Replace(sth, "size=5", "size=05", 1), "leading zero"},
		{"2^63", "sth", strings.Replace(sth, "size=5", "size=9223372036854775808", 1), "2^63-1"},
		{"negative", "sth", strings.Replace(sth, "size=5", "size=-5", 1), "non-digit"},
		{"empty value", "sth", strings.Replace(sth, "size=5", "size=", 1), "empty integer"},
		{"short hex", "add-leaf", strings.Replace(addLeaf, hash1, hash1[2:], 1), "hex digits"},
		{"long hex", "add-leaf", strings.Replace(addLeaf, hash1, hash1+"00", 1), "hex digits"},
		{"odd hex", "add-leaf", strings.Replace(addLeaf, hash1, hash1[1:], 1), "hex digits"},
		{"non-hex", "add-leaf", strings.Replace(addLeaf, hash1, "zz"+hash1[2:], 1), "not hex"},
		{"missing key", "add-leaf", "message=" + hash1 + "\nsignature=" + sig1 + "\n", `missing key "public_key"`},
		{"empty body", "add-leaf", "", `missing key "message"`},
		{"no equals sign", "sth", "size 5\n", "no '='"},
		{"space before equals", "sth", "size =5\n", `expected key "size"`},
		{"CR not stripped", "sth", strings.Replace(sth, "size=5\n", "size=5\r\n", 1), "non-digit"},
		{"extra field", "tree-head", sth + strings.Replace(cosig, "\n", " 1\n", 1), "fields"},
		{"missing field", "leaves", "leaf=" + hash1 + " " + sig1 + "\n", "fields"},
		{"double space", "leaves", strings.Replace(leaf, " ", "  ", 1), "fields"},
		{"no leaves", "leaves", "", `missing key "leaf"`},
		{"cosignature time leading zero", "tree-head", sth + strings.Replace(cosig, " 1700000000 ", " 01 ", 1), "leading zero"},
		{"wrong key after cosignatures", "tree-head", sth + cosig + "size=5\n", `expected key "cosignature"`},
		{"inclusion without path", "inclusion", "leaf_index=1\n", `missing key "node_hash"`},
		{"consistency empty", "consistency", "", `missing key "node_hash"`},
		{"over-long line", "consistency", "node_hash=" + strings.Repeat("a", MaxLineLength) + "\n", "longer than"},
		{"over-long unterminated line", "consistency", "node_hash=" + strings.Repeat("a", MaxLineLength+10), "longer than"},
		{"invalid UTF-8 key", "sth", "\xff\xfe=5\n", `expected key "size"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := parsers[c.parser]([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted %q", c.in)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if !strings.Contains(err.Error(), c.errPart) {
				t.Errorf("error %q does not mention %q", err, c.errPart)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
		})
	}
}

func TestRoundTrips(t *testing.T) {
	t.Parallel()
	s := seedSigner(t, 7)
	leaf, err := SignLeaf(s, HashBytes([]byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	leaves := []Leaf{leaf, {Checksum: Hash{1}, KeyHash: Hash{2}}}
	if got, err := ParseLeavesASCII(MarshalLeavesASCII(leaves)); err != nil || len(got) != 2 || got[0] != leaves[0] || got[1] != leaves[1] {
		t.Errorf("leaves round trip: %v", err)
	}
	th := TreeHead{Size: MaxInt, RootHash: Hash{0xab}}
	sth, err := th.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseSignedTreeHead(sth.MarshalASCII()); err != nil || got != sth {
		t.Errorf("sth round trip: %v", err)
	}
	cth := CosignedTreeHead{SignedTreeHead: sth, Cosignatures: []Cosignature{{KeyHash: Hash{9}, Timestamp: 0}, {KeyHash: Hash{1}, Timestamp: MaxInt}}}
	got, err := ParseCosignedTreeHead(cth.MarshalASCII())
	if err != nil || !bytes.Equal(got.MarshalASCII(), cth.MarshalASCII()) || len(got.Cosignatures) != 2 {
		t.Errorf("cosigned tree head round trip: %v", err)
	}
	SortCosignatures(got.Cosignatures)
	if got.Cosignatures[0].KeyHash != (Hash{1}) {
		t.Error("SortCosignatures does not order by key hash")
	}
	dup := CosignedTreeHead{SignedTreeHead: sth, Cosignatures: []Cosignature{{KeyHash: Hash{9}}, {KeyHash: Hash{1}}, {KeyHash: Hash{9}, Timestamp: 1}}}
	if _, err := ParseCosignedTreeHead(dup.MarshalASCII()); err == nil || !strings.Contains(err.Error(), "two cosignatures") {
		t.Errorf("two cosignatures by one witness key hash: %v", err)
	}
	ip := InclusionProof{LeafIndex: 3, Path: []Hash{{1}, {2}}}
	if got, err := ParseInclusionProof(ip.MarshalASCII()); err != nil || got.LeafIndex != 3 || len(got.Path) != 2 || got.Path[1] != (Hash{2}) {
		t.Errorf("inclusion proof round trip: %v", err)
	}
	cp := ConsistencyProof{Path: []Hash{{3}}}
	if got, err := ParseConsistencyProof(cp.MarshalASCII()); err != nil || len(got.Path) != 1 || got.Path[0] != (Hash{3}) {
		t.Errorf("consistency proof round trip: %v", err)
	}
	// Hex is read in any case and written in lowercase.
	upper := strings.ToUpper(string(sth.MarshalASCII()))
	upper = strings.NewReplacer("SIZE", "size", "ROOT_HASH", "root_hash", "SIGNATURE", "signature").Replace(upper)
	if got, err := ParseSignedTreeHead([]byte(upper)); err != nil || got != sth {
		t.Errorf("uppercase hex not accepted: %v", err)
	}
	acr := AddCheckpointRequest{OldSize: 2, Proof: []Hash{{4}, {5}}, Note: sth.SignedNote(s.Public())}
	if got, err := ParseAddCheckpointRequest(acr.MarshalBinary()); err != nil || got.OldSize != 2 || len(got.Proof) != 2 || !bytes.Equal(got.Note, acr.Note) {
		t.Errorf("add-checkpoint round trip: %v", err)
	}
}

func TestParseNoteMalformed(t *testing.T) {
	t.Parallel()
	s := seedSigner(t, 1)
	th := TreeHead{Size: 1}
	sth, _ := th.Sign(s)
	good := sth.SignedNote(s.Public())
	cut := bytes.Index(good, []byte("\n\n")) + 2
	text, sigs := string(good[:cut]), string(good[cut:])
	for _, c := range []struct{ name, in string }{
		{"no blank line", strings.Replace(string(good), "\n\n", "\n", 1)},
		{"no signature", string(good[:bytes.Index(good, []byte("\n\n"))+2])},
		{"no final newline", strings.TrimSuffix(string(good), "\n")},
		{"hyphen not em dash", text + strings.Replace(sigs, "\u2014", "-", 1)},
		{"bad base64", text + strings.Replace(sigs, "=\n", "!\n", 1)},
		{"name with space", text + strings.Replace(sigs, "sigsum.org/v1", "sigsum org/v1", 1)},
		{"empty signature line", string(good) + "\n"},
	} {
		if _, err := ParseNote([]byte(c.in)); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	for _, c := range []struct{ name, in string }{
		{"one line", "sigsum.org/v1/tree/x\n"},
		{"four lines", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextension\n"},
		{"short root", "o\n1\nAAAA\n"},
		{"size leading zero", "o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"},
		{"empty origin", "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"},
	} {
		if _, _, err := ParseCheckpoint([]byte(c.in)); err == nil {
			t.Errorf("checkpoint %s: accepted", c.name)
		}
	}
	for _, c := range []struct{ name, in string }{
		{"no old line", "1\n\n"},
		{"old leading zero", "old 01\n\n"},
		{"no empty line", "old 1\n"},
		{"short proof hash", "old 1\nAAAA\n\n"},
	} {
		if _, err := ParseAddCheckpointRequest([]byte(c.in)); err == nil {
			t.Errorf("add-checkpoint %s: accepted", c.name)
		}
	}
	if _, _, err := ParseWitnessCosignature([]byte("— w AAAAAAAAAAAA\n"), s.Public()); err == nil {
		t.Error("a response without the witness's key id was accepted")
	}
}

func TestParseSubmitToken(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"example.org " + sig1, true},
		{"example.org " + strings.ToUpper(sig1), true},
		{"example.org", false},
		{" " + sig1, false},
		{"example.org  " + sig1, false},
		{"exa mple.org " + sig1, false},
		{"example.org\t" + sig1, false},
		{strings.Repeat("a", 254) + " " + sig1, false},
		{"example.org " + sig1[2:], false},
	} {
		if _, err := ParseSubmitToken(c.in); (err == nil) != c.ok {
			t.Errorf("ParseSubmitToken(%q): err=%v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestProofVerifyRejects(t *testing.T) {
	t.Parallel()
	leaves := []Hash{HashBytes([]byte("a")), HashBytes([]byte("b")), HashBytes([]byte("c"))}
	th := TreeHead{Size: 3, RootHash: RootHash(leaves)}
	old := TreeHead{Size: 2, RootHash: RootHash(leaves[:2])}
	good := InclusionProof{LeafIndex: 2, Path: []Hash{RootHash(leaves[:2])}}
	if err := good.Verify(leaves[2], &th); err != nil {
		t.Fatalf("good inclusion proof: %v", err)
	}
	bad := InclusionProof{LeafIndex: 1, Path: good.Path}
	if bad.Verify(leaves[2], &th) == nil {
		t.Error("wrong index accepted")
	}
	cp := ConsistencyProof{Path: []Hash{leaves[2]}}
	if err := cp.Verify(&old, &th); err != nil {
		t.Fatalf("good consistency proof: %v", err)
	}
	wrongOld := TreeHead{Size: 2, RootHash: leaves[0]}
	if cp.Verify(&wrongOld, &th) == nil {
		t.Error("inconsistent old root accepted")
	}
}

// A proof that fails says why on one line, roots in hex (logs and promote print it).
func TestProofErrorsAreOneLine(t *testing.T) {
	t.Parallel()
	older := TreeHead{Size: 2, RootHash: Hash{1}}
	newer := TreeHead{Size: 3, RootHash: Hash{2}}
	cp := ConsistencyProof{Path: []Hash{{3}, {4}}}
	ip := InclusionProof{LeafIndex: 1, Path: []Hash{{5}, {6}}}
	for _, err := range []error{cp.Verify(&older, &newer), ip.Verify(Hash{7}, &newer)} {
		var pe *ProofError
		if err == nil || !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "[") {
			t.Errorf("proof error %q: want one line without byte lists", err)
		}
	}
	if err := (&ConsistencyProof{Path: []Hash{{3}}}).Verify(&older, &TreeHead{Size: 4, RootHash: Hash{2}}); err == nil ||
		!strings.Contains(err.Error(), "calculated root ") {
		t.Errorf("root mismatch: %v", err)
	}
}

func TestExtends(t *testing.T) {
	t.Parallel()
	leaves := make([]Hash, 5)
	for i := range leaves {
		leaves[i] = HashBytes([]byte{byte(i)})
	}
	head := func(n int) TreeHead { return TreeHead{Size: uint64(n), RootHash: RootHash(leaves[:n])} }
	errProof := errors.New("no proof today")
	asked := 0
	good := func() (ConsistencyProof, error) { asked++; return ConsistencyProof{}, errProof }
	for _, tc := range []struct {
		name         string
		older, newer TreeHead
		proof        func() (ConsistencyProof, error)
		want         error // nil, ErrNotExtends or errProof
		asks         int
	}{
		{"same head", head(3), head(3), good, nil, 0},
		{"empty to any", head(0), head(4), good, nil, 0},
		{"empty to empty", head(0), head(0), good, nil, 0},
		{"two roots at one size", head(3), TreeHead{Size: 3, RootHash: Hash{1}}, good, ErrNotExtends, 0},
		{"a wrong empty root", TreeHead{Size: 0, RootHash: Hash{1}}, head(2), good, ErrNotExtends, 0},
		{"smaller", head(4), head(2), good, ErrNotExtends, 0},
		{"the proof's own failure", head(2), head(4), good, errProof, 1},
		{"a proof that does not verify", head(2), head(4), func() (ConsistencyProof, error) {
			return ConsistencyProof{Path: []Hash{{1}}}, nil
		}, ErrNotExtends, 0},
	} {
		asked = 0
		err := Extends(tc.older, tc.newer, tc.proof)
		switch {
		case tc.want == nil && err != nil, tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		case asked != tc.asks:
			t.Errorf("%s: asked for a proof %d times, want %d", tc.name, asked, tc.asks)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error spans lines: %q", tc.name, err)
		}
	}
}

package sigsum

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// sharedVectors is the project's shared copy of the vectors; testdata holds a copy so the package tests on a
// checkout without ../shared, and TestVectorCopyIsCurrent keeps the two equal where both exist.
const (
	sharedVectors = "../../../shared/testdata/sigsum-v1-vectors.txt"
	localVectors  = "testdata/sigsum-v1-vectors.txt"
)

// vectors is the parsed vector file: every key=value line (first occurrence wins) and every block under a header
// (a "# ..." comment or a "name:" line), as its raw lines and the exact bytes between <<< and >>>.
type vectors struct {
	kv     map[string]string
	blocks []vectorBlock
}

type vectorBlock struct {
	header string
	lines  []string
	exact  []byte
}

func readVectors(t *testing.T) *vectors {
	t.Helper()
	path := sharedVectors
	if _, err := os.Stat(path); err != nil {
		path = localVectors
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading vectors: %v", err)
	}
	v := &vectors{kv: map[string]string{}}
	var cur *vectorBlock
	inExact := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case inExact && l == ">>>":
			inExact = false
		case inExact:
			cur.exact = append(append(cur.exact, l...), '\n')
		case l == "<<<":
			inExact = true
		case l == "":
		case strings.HasPrefix(l, "#"), strings.HasSuffix(l, ":"), strings.Contains(l, ":") && !strings.Contains(l, "="):
			v.blocks = append(v.blocks, vectorBlock{header: l})
			cur = &v.blocks[len(v.blocks)-1]
		default:
			if k, val, ok := strings.Cut(l, "="); ok {
				if _, seen := v.kv[k]; !seen {
					v.kv[k] = val
				}
			}
			if cur != nil {
				cur.lines = append(cur.lines, l)
			}
		}
	}
	if inExact {
		t.Fatal("vectors: unterminated <<< block")
	}
	return v
}

func (v *vectors) block(t *testing.T, prefix string) *vectorBlock {
	t.Helper()
	for i := range v.blocks {
		if strings.HasPrefix(v.blocks[i].header, prefix) {
			return &v.blocks[i]
		}
	}
	t.Fatalf("vectors: no block %q", prefix)
	return nil
}

func (v *vectors) hex(t *testing.T, key string) []byte {
	t.Helper()
	s, ok := v.kv[key]
	if !ok {
		t.Fatalf("vectors: no key %q", key)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("vectors: %s: %v", key, err)
	}
	return b
}

func seedSigner(t testing.TB, b byte) *Ed25519Signer {
	t.Helper()
	s, err := NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func body(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func TestVectorCopyIsCurrent(t *testing.T) {
	shared, err := os.ReadFile(sharedVectors)
	if os.IsNotExist(err) {
		return // a checkout without ../shared: the local copy is all there is
	}
	if err != nil {
		t.Fatal(err)
	}
	local, err := os.ReadFile(localVectors)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, local) {
		t.Fatalf("%s differs from %s: copy it again", localVectors, sharedVectors)
	}
}

func TestVectors(t *testing.T) {
	t.Parallel()
	v := readVectors(t)
	logS, subS, witS := seedSigner(t, 1), seedSigner(t, 2), seedSigner(t, 3)
	logPub, subPub, witPub := logS.Public(), subS.Public(), witS.Public()

	for _, c := range []struct {
		name string
		got  []byte
	}{
		{"log_public_key", logPub[:]},
		{"submitter_public_key", subPub[:]},
		{"witness_public_key", witPub[:]},
		{"log_key_hash", hashPtr(logPub.KeyHash())},
		{"submitter_key_hash", hashPtr(subPub.KeyHash())},
		{"witness_key_hash", hashPtr(witPub.KeyHash())},
		{"empty_tree_root_hash", hashPtr(RootHash(nil))},
	} {
		if want := v.hex(t, c.name); !bytes.Equal(c.got, want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, want)
		}
	}

	const n = 5
	var leafHashes []Hash
	for i := 0; i < n; i++ {
		msg := HashBytes([]byte(fmt.Sprintf("message %d", i)))
		leaf, err := SignLeaf(subS, msg)
		if err != nil {
			t.Fatal(err)
		}
		req := AddLeafRequest{Message: msg, Signature: leaf.Signature, PublicKey: subPub}
		wantBody := body(v.block(t, fmt.Sprintf("add_leaf_body_%d:", i)).lines[:3])
		if got := req.MarshalASCII(); !bytes.Equal(got, wantBody) {
			t.Errorf("add-leaf body %d:\n%s\nwant\n%s", i, got, wantBody)
		}
		parsed, err := ParseAddLeafRequest(wantBody)
		if err != nil || parsed != req {
			t.Errorf("parsing add-leaf body %d: %v, %+v", i, err, parsed)
		}
		if !req.Verify() || !leaf.Verify(subPub) || parsed.Leaf() != leaf {
			t.Errorf("leaf %d does not verify or differs from its request", i)
		}
		if got, want := leaf.Checksum[:], v.hex(t, fmt.Sprintf("leaf_checksum_%d", i)); !bytes.Equal(got, want) {
			t.Errorf("leaf_checksum_%d = %x, want %x", i, got, want)
		}
		bin := leaf.MarshalBinary()
		if want := v.hex(t, fmt.Sprintf("leaf_binary_%d", i)); !bytes.Equal(bin, want) {
			t.Errorf("leaf_binary_%d = %x, want %x", i, bin, want)
		}
		if back, err := ParseLeafBinary(bin); err != nil || back != leaf {
			t.Errorf("binary leaf %d round trip: %v", i, err)
		}
		h := leaf.Hash()
		if want := v.hex(t, fmt.Sprintf("leaf_hash_%d", i)); !bytes.Equal(h[:], want) {
			t.Errorf("leaf_hash_%d = %x, want %x", i, h, want)
		}
		if !bytes.Equal(h[:], rfc6962.DefaultHasher.HashLeaf(bin)) {
			t.Errorf("leaf %d hash differs from RFC 6962", i)
		}
		leafHashes = append(leafHashes, h)
	}

	origin := Origin(logPub)
	if origin != v.kv["origin"] {
		t.Errorf("origin = %q, want %q", origin, v.kv["origin"])
	}
	th := TreeHead{Size: n, RootHash: RootHash(leafHashes)}
	if want := v.hex(t, "root_hash"); !bytes.Equal(th.RootHash[:], want) {
		t.Errorf("root_hash = %x, want %x", th.RootHash, want)
	}
	if got, want := th.Checkpoint(origin), v.block(t, "checkpoint_signed_bytes").exact; !bytes.Equal(got, want) {
		t.Errorf("checkpoint:\n%s\nwant\n%s", got, want)
	}
	sth, err := th.Sign(logS)
	if err != nil {
		t.Fatal(err)
	}
	if !sth.Verify(logPub) || sth.Verify(subPub) {
		t.Error("signed tree head verification is wrong")
	}
	const ts = 1700000000
	cs, err := th.Cosign(witS, origin, ts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := th.CosignatureSignedBytes(origin, ts), v.block(t, "cosignature_signed_bytes").exact; !bytes.Equal(got, want) {
		t.Errorf("cosignature signed bytes:\n%s\nwant\n%s", got, want)
	}
	if !cs.Verify(witPub, origin, &th) {
		t.Error("cosignature does not verify")
	}
	cth := CosignedTreeHead{SignedTreeHead: sth, Cosignatures: []Cosignature{cs}}
	wantGTH := body(v.block(t, "get_tree_head_body").lines)
	if got := cth.MarshalASCII(); !bytes.Equal(got, wantGTH) {
		t.Errorf("get-tree-head body:\n%s\nwant\n%s", got, wantGTH)
	}
	if parsed, err := ParseCosignedTreeHead(wantGTH); err != nil || !bytes.Equal(parsed.MarshalASCII(), wantGTH) {
		t.Errorf("parsing get-tree-head body: %v", err)
	}

	tree := testonly.New(rfc6962.DefaultHasher)
	for _, h := range leafHashes {
		tree.Append(h[:])
	}
	proofHeader := regexp.MustCompile(`^# (inclusion|consistency) proof:? (?:leaf )?(\d+) (?:in tree size|->) (\d+)$`)
	proofs := 0
	for _, b := range v.blocks {
		m := proofHeader.FindStringSubmatch(b.header)
		if m == nil {
			continue
		}
		proofs++
		a, _ := strconv.ParseUint(m[2], 10, 64)
		size, _ := strconv.ParseUint(m[3], 10, 64)
		if size != n {
			t.Fatalf("%s: vectors prove against size %d, this test builds %d", b.header, size, n)
		}
		if m[1] == "inclusion" {
			p, err := ParseInclusionProof(body(append([]string{"leaf_index=" + m[2]}, b.lines...)))
			if err != nil {
				t.Fatalf("%s: %v", b.header, err)
			}
			if err := p.Verify(leafHashes[a], &th); err != nil {
				t.Errorf("%s: %v", b.header, err)
			}
			want, _ := tree.InclusionProof(a, size)
			if got := hashSlices(p.Path); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: vector path differs from the reference tree's", b.header)
			}
			continue
		}
		p, err := ParseConsistencyProof(body(b.lines))
		if err != nil {
			t.Fatalf("%s: %v", b.header, err)
		}
		old := TreeHead{Size: a, RootHash: RootHash(leafHashes[:a])}
		if err := p.Verify(&old, &th); err != nil {
			t.Errorf("%s: %v", b.header, err)
		}
		want, _ := tree.ConsistencyProof(a, size)
		if got := hashSlices(p.Path); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: vector path differs from the reference tree's", b.header)
		}
	}
	if proofs != 6 {
		t.Errorf("found %d proof vectors, want 6", proofs)
	}

	tokenHeader := v.block(t, "sigsum-token:").header
	tok, err := SignSubmitToken(subS, "example.org", logPub)
	if err != nil {
		t.Fatal(err)
	}
	if got := "sigsum-token: " + tok.String(); got != tokenHeader {
		t.Errorf("token header = %q, want %q", got, tokenHeader)
	}
	parsedTok, err := ParseSubmitToken(strings.TrimPrefix(tokenHeader, "sigsum-token: "))
	if err != nil || parsedTok != tok || !parsedTok.Verify(subPub, logPub) || parsedTok.Verify(subPub, witPub) {
		t.Errorf("submit token parse/verify: %v", err)
	}

	if got, want := sth.SignedNote(logPub), v.block(t, "# signed note").exact; !bytes.Equal(got, want) {
		t.Errorf("signed note:\n%s\nwant\n%s", got, want)
	}
	const witnessName = "witness.example.org"
	wantLine := v.block(t, "# witness cosignature line").exact
	if got := CosignatureLine(witnessName, witPub, &cs); !bytes.Equal(got, wantLine) {
		t.Errorf("cosignature line:\n%s\nwant\n%s", got, wantLine)
	}
	back, name, err := ParseWitnessCosignature(wantLine, witPub)
	if err != nil || back != cs || name != witnessName {
		t.Errorf("parsing the cosignature line: %v (%+v under %q)", err, back, name)
	}
	note, err := ParseNote(sth.SignedNote(logPub))
	if err != nil {
		t.Fatal(err)
	}
	gotOrigin, gotTH, err := ParseCheckpoint(note.Text)
	if err != nil || gotOrigin != origin || gotTH != th || len(note.Signatures) != 1 ||
		note.Signatures[0].KeyID != LogKeyID(origin, logPub) || !bytes.Equal(note.Signatures[0].Blob, sth.Signature[:]) {
		t.Errorf("parsing the signed note: %v", err)
	}
}

func hashPtr(h Hash) []byte { return h[:] }

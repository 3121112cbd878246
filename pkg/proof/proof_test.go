package proof

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// signer returns a deterministic Ed25519 signer for seed.
func signer(t testing.TB, seed byte) *sigsum.Ed25519Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// inclusionPath computes the RFC 6962 audit path of leaf m in the tree over hashes (RFC 6962 §2.1.1), independently
// of the merkle library Verify uses.
func inclusionPath(hashes []sigsum.Hash, m int) []sigsum.Hash {
	n := len(hashes)
	if n <= 1 {
		return nil
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	if m < k {
		return append(inclusionPath(hashes[:k], m), sigsum.RootHash(hashes[k:]))
	}
	return append(inclusionPath(hashes[k:], m-k), sigsum.RootHash(hashes[:k]))
}

// fixture is a small log with one submitter and two witnesses, and a proof for one of its leaves.
type fixture struct {
	log, submitter, w1, w2 *sigsum.Ed25519Signer
	message                sigsum.Hash
	proof                  *Proof
}

// newFixture builds a tree of size leaves whose leaf at index is the submitter's leaf for message, signs it with
// the log key and cosigns it with both witnesses.
func newFixture(t testing.TB, size, index int) *fixture {
	t.Helper()
	f := &fixture{log: signer(t, 1), submitter: signer(t, 2), w1: signer(t, 3), w2: signer(t, 4)}
	f.message = sigsum.HashBytes([]byte("release.tar.gz contents"))
	other := signer(t, 9)
	hashes := make([]sigsum.Hash, size)
	var leaf sigsum.Leaf
	for i := range hashes {
		var l sigsum.Leaf
		var err error
		if i == index {
			l, err = sigsum.SignLeaf(f.submitter, f.message)
			leaf = l
		} else {
			l, err = sigsum.SignLeaf(other, sigsum.HashBytes([]byte(fmt.Sprint("other ", i))))
		}
		if err != nil {
			t.Fatal(err)
		}
		hashes[i] = l.Hash()
	}
	th := sigsum.TreeHead{Size: uint64(size), RootHash: sigsum.RootHash(hashes)}
	sth, err := th.Sign(f.log)
	if err != nil {
		t.Fatal(err)
	}
	cth := sigsum.CosignedTreeHead{SignedTreeHead: sth}
	for i, w := range []*sigsum.Ed25519Signer{f.w1, f.w2} {
		c, err := th.Cosign(w, sigsum.Origin(f.log.Public()), 1700000000+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		cth.Cosignatures = append(cth.Cosignatures, c)
	}
	var incl *sigsum.InclusionProof
	if size > 1 {
		incl = &sigsum.InclusionProof{LeafIndex: uint64(index), Path: inclusionPath(hashes, index)}
	}
	f.proof = New(f.log.Public().KeyHash(), &leaf, &cth, incl)
	return f
}

// policy returns a policy trusting the fixture's log, with the given quorum statement lines.
func (f *fixture) policy(t testing.TB, quorum string) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf("log %s http://127.0.0.1:1\nwitness w1 %s\nwitness w2 %s\n%s\n",
		f.log.Public(), f.w1.Public(), f.w2.Public(), quorum)
	p, err := policy.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMarshalLayout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, 0)
	f.proof.TreeHead.Cosignatures = f.proof.TreeHead.Cosignatures[:1]
	p, th, c := f.proof, &f.proof.TreeHead, &f.proof.TreeHead.Cosignatures[0]
	want := "version=2\n" +
		"log=" + f.log.Public().KeyHash().String() + "\n" +
		"leaf=" + f.submitter.Public().KeyHash().String() + " " + p.Signature.String() + "\n" +
		"\n" +
		"size=1\n" +
		"root_hash=" + th.RootHash.String() + "\n" +
		"signature=" + th.Signature.String() + "\n" +
		"cosignature=" + c.KeyHash.String() + " 1700000000 " + c.Signature.String() + "\n"
	if got := string(p.MarshalASCII()); got != want {
		t.Errorf("size 1 proof:\n%s\nwant:\n%s", got, want)
	}

	f = newFixture(t, 3, 2)
	f.proof.TreeHead.Cosignatures = nil
	p = f.proof
	want = "version=2\n" +
		"log=" + f.log.Public().KeyHash().String() + "\n" +
		"leaf=" + p.KeyHash.String() + " " + p.Signature.String() + "\n" +
		"\n" +
		"size=3\n" +
		"root_hash=" + p.TreeHead.RootHash.String() + "\n" +
		"signature=" + p.TreeHead.Signature.String() + "\n" +
		"\n" +
		"leaf_index=2\n" +
		"node_hash=" + p.Inclusion.Path[0].String() + "\n"
	if got := string(p.MarshalASCII()); got != want {
		t.Errorf("size 3 proof:\n%s\nwant:\n%s", got, want)
	}
}

// sigsumGoExample is the proof printed by sigsum-go's `sigsum-submit` in its documentation (doc/tools.md): the
// format this package must read and write byte for byte.
const sigsumGoExample = `version=2
log=c9e525b98f412ede185ff2ac5abf70920a2e63a6ae31c88b1138b85de328706b
leaf=5aa7e6233f9f4d2efbeb9eeef766dce8ba2aa5e8cdd3f53da94b5d59e67d92fc 40160c833571c121bfdc6a02006053a80d3e91a8b73abb4dd0e07cc3098d8e58a41921d8f5649e9fb81c9b7c6b458747c4c3b49cc08c869867100a7f7be78902

size=3
root_hash=5b0cc467f86fdd57b371e434843b571a4cb47c6a64dad4bc80d96dd7d15c63a9
signature=f6a87ce27a6df207eaaee6589ab73ac8cb5bead7bd0c0fea65556d847d11f3baea8ebdc686730f64e38000c77f5327048e73e08b7dc4de04b91f65930bedc100

leaf_index=2
node_hash=ede77b77a3bba27ea0af640d37e58281aef4459d71afdf5cf442cee8f9bebf5d
`

func TestSigsumGoExample(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(sigsumGoExample))
	if err != nil {
		t.Fatal(err)
	}
	if p.TreeHead.Size != 3 || p.Inclusion.LeafIndex != 2 || len(p.Inclusion.Path) != 1 ||
		p.LogKeyHash.String() != "c9e525b98f412ede185ff2ac5abf70920a2e63a6ae31c88b1138b85de328706b" {
		t.Errorf("parsed %+v", p)
	}
	if got := string(p.MarshalASCII()); got != sigsumGoExample {
		t.Errorf("round trip:\n%s\nwant:\n%s", got, sigsumGoExample)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ size, index int }{{1, 0}, {2, 0}, {2, 1}, {5, 4}, {8, 3}, {13, 12}} {
		f := newFixture(t, c.size, c.index)
		b := f.proof.MarshalASCII()
		p, err := Parse(b)
		if err != nil {
			t.Fatalf("size %d: %v\n%s", c.size, err, b)
		}
		if !reflect.DeepEqual(p, f.proof) {
			t.Errorf("size %d: round trip changed the proof:\n%+v\n%+v", c.size, p, f.proof)
		}
		if err := p.Verify(f.message, []sigsum.PublicKey{f.submitter.Public()}, f.policy(t, "group both all w1 w2\nquorum both")); err != nil {
			t.Errorf("size %d index %d: %v", c.size, c.index, err)
		}
	}
}

func TestParseVersion1(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4, 3)
	v2 := string(f.proof.MarshalASCII())
	checksum := sigsum.HashBytes(f.message[:])
	v1 := strings.Replace(strings.Replace(v2, "version=2", "version=1", 1),
		"leaf=", fmt.Sprintf("leaf=%x ", checksum[:ShortChecksumSize]), 1)
	p, err := Parse([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, f.proof) {
		t.Errorf("version 1 parsed to %+v, want %+v", p, f.proof)
	}
	if string(p.MarshalASCII()) != v2 {
		t.Errorf("version 1 proof not rewritten as version 2")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	good4 := string(newFixture(t, 4, 1).proof.MarshalASCII())
	good1 := string(newFixture(t, 1, 0).proof.MarshalASCII())
	parts := strings.Split(good4, "\n\n")
	head, th, incl := parts[0]+"\n", parts[1]+"\n", parts[2]
	for _, c := range []struct {
		name, in, want string
	}{
		{"empty", "", "empty file"},
		{"header only", head, "no tree head part"},
		{"version 3", strings.Replace(good4, "version=2", "version=3", 1), "unsupported version 3"},
		{"version 02", strings.Replace(good4, "version=2", "version=02", 1), "leading zero"},
		{"no version", strings.Replace(good4, "version=2\n", "", 1), "expected a version= line"},
		{"log line", strings.Replace(good4, "log=", "log=00", 1), "log: malformed message: hash has 66"},
		{"leaf fields", strings.Replace(good4, "leaf=", "leaf=abcd ", 1), "leaf line has 3 fields"},
		{"leaf hex", strings.Replace(good4, "leaf=", "leaf=zz", 1), "leaf key hash"},
		{"extra header", head + "x=1\n\n" + th + "\n" + incl, "unexpected line after leaf"},
		{"size 1 plus proof", good1 + "\nleaf_index=0\nnode_hash=" + strings.Repeat("00", 32) + "\n", "size 1 must have no inclusion"},
		{"no inclusion", head + "\n" + th, "no inclusion proof part"},
		{"four parts", good4 + "\n" + incl, "4 parts"},
		{"blank line twice", head + "\n\n" + th + "\n" + incl, "part 2 is empty"},
		{"trailing blank", good4 + "\n", "part 4 is empty"},
		{"no final newline", strings.TrimSuffix(good4, "\n"), "does not end in a newline"},
		{"crlf", strings.ReplaceAll(good4, "\n", "\r\n"), "malformed"},
		{"size 0", strings.Replace(head+"\n"+th, "size=4", "size=0", 1), "size 0"},
		{"index outside", strings.Replace(good4, "leaf_index=1", "leaf_index=4", 1), "outside the tree"},
		{"no node hash", head + "\n" + th + "\nleaf_index=1\n", "missing key \"node_hash\""},
		{"tree head key order", strings.Replace(good4, "size=4\n", "", 1), "expected key \"size\""},
		{"huge", strings.Repeat("x", MaxSize+1), "larger than"},
	} {
		_, err := Parse([]byte(c.in))
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want ErrSyntax containing %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error message has several lines: %q", c.name, err)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const quorumBoth = "group both all w1 w2\nquorum both"
	for _, c := range []struct {
		name    string
		size    int
		quorum  string
		tamper  func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash)
		wantErr error
	}{
		{name: "ok", size: 6, quorum: quorumBoth},
		{name: "ok size 1", size: 1, quorum: quorumBoth},
		{name: "ok quorum none without cosignatures", size: 3, quorum: "quorum none", tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.Cosignatures = nil
			return nil, sigsum.Hash{}
		}},
		{name: "ok one of two", size: 3, quorum: "group one any w1 w2\nquorum one", tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.Cosignatures[0].Signature[0] ^= 1
			return nil, sigsum.Hash{}
		}},
		{name: "ok several submitter keys", size: 3, quorum: quorumBoth, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			return []sigsum.PublicKey{signer(t, 7).Public(), f.submitter.Public()}, sigsum.Hash{}
		}},
		{name: "other data", size: 6, quorum: quorumBoth, wantErr: ErrLeafSignature, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			return nil, sigsum.HashBytes([]byte("other data"))
		}},
		{name: "other submitter", size: 6, quorum: quorumBoth, wantErr: ErrUnknownSubmitter, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			return []sigsum.PublicKey{signer(t, 7).Public()}, sigsum.Hash{}
		}},
		{name: "leaf signature", size: 6, quorum: quorumBoth, wantErr: ErrLeafSignature, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.Signature[10] ^= 1
			return nil, sigsum.Hash{}
		}},
		{name: "log not in policy", size: 6, quorum: quorumBoth, wantErr: ErrUnknownLog, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.LogKeyHash[0] ^= 1
			return nil, sigsum.Hash{}
		}},
		{name: "root hash", size: 6, quorum: quorumBoth, wantErr: ErrLogSignature, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.RootHash[0] ^= 1
			return nil, sigsum.Hash{}
		}},
		{name: "tree size", size: 6, quorum: quorumBoth, wantErr: ErrLogSignature, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.Size++
			return nil, sigsum.Hash{}
		}},
		{name: "missing cosignature", size: 6, quorum: quorumBoth, wantErr: ErrQuorum, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.Cosignatures = f.proof.TreeHead.Cosignatures[1:]
			return nil, sigsum.Hash{}
		}},
		{name: "bad cosignature", size: 6, quorum: quorumBoth, wantErr: ErrQuorum, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.TreeHead.Cosignatures[1].Timestamp++
			return nil, sigsum.Hash{}
		}},
		{name: "node hash", size: 6, quorum: quorumBoth, wantErr: ErrInclusion, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.Inclusion.Path[1][5] ^= 1
			return nil, sigsum.Hash{}
		}},
		{name: "leaf index", size: 6, quorum: quorumBoth, wantErr: ErrInclusion, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.Inclusion.LeafIndex--
			return nil, sigsum.Hash{}
		}},
		{name: "size 1 with a path", size: 1, quorum: quorumBoth, wantErr: ErrInclusion, tamper: func(f *fixture) ([]sigsum.PublicKey, sigsum.Hash) {
			f.proof.Inclusion.Path = []sigsum.Hash{{}}
			return nil, sigsum.Hash{}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, c.size, c.size-1)
			keys, msg := []sigsum.PublicKey{f.submitter.Public()}, f.message
			if c.tamper != nil {
				k, m := c.tamper(f)
				if k != nil {
					keys = k
				}
				if m != (sigsum.Hash{}) {
					msg = m
				}
			}
			err := f.proof.Verify(msg, keys, f.policy(t, c.quorum))
			if c.wantErr == nil && err != nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error message has several lines: %q", err)
			}
		})
	}
}

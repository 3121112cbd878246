package witness

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func TestPublishedRoundTrip(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(12)
	sth := l.Head()
	origin := sigsum.Origin(l.Public())
	var pws []policy.Witness
	var cs []sigsum.Cosignature
	for i := range byte(3) {
		s := signer(t, 50+i)
		c, err := sth.Cosign(s, origin, uint64(time.Now().Unix()))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		pws = append(pws, policy.Witness{Name: "w", Key: s.Public()})
	}
	sigsum.SortCosignatures(cs)
	path := filepath.Join(t.TempDir(), "published")

	for _, cth := range []sigsum.CosignedTreeHead{
		{SignedTreeHead: l.HeadAt(0)},
		{SignedTreeHead: sth, Cosignatures: cs},
	} {
		if err := SavePublished(path, cth); err != nil {
			t.Fatal(err)
		}
		got, err := LoadPublished(path, l.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.MarshalASCII(), cth.MarshalASCII()) {
			t.Errorf("round trip:\n%s\nwant\n%s", got.MarshalASCII(), cth.MarshalASCII())
		}
		if data, _ := os.ReadFile(path); !bytes.Equal(data, cth.MarshalASCII()) {
			t.Errorf("file is not the get-tree-head body:\n%s", data)
		}
	}
	got, _ := LoadPublished(path, l.Public())
	if v := VerifyCosignatures(l.Public(), &got.TreeHead, pws, got.Cosignatures); len(v) != 3 {
		t.Errorf("%d of 3 cosignatures verify after loading", len(v))
	}
	// Only known witnesses' valid cosignatures count, once each.
	bad := append([]sigsum.Cosignature(nil), got.Cosignatures...)
	bad[0].Signature[0] ^= 1
	bad = append(bad, got.Cosignatures[1])
	if v := VerifyCosignatures(l.Public(), &got.TreeHead, pws, bad); len(v) != 2 {
		t.Errorf("VerifyCosignatures kept %d of a bad one, a duplicate and two good ones, want 2", len(v))
	}
	if v := VerifyCosignatures(l.Public(), &got.TreeHead, pws[1:], got.Cosignatures); len(v) != 2 {
		t.Errorf("VerifyCosignatures kept %d with two of three witnesses known, want 2", len(v))
	}
	if v := VerifyCosignatures(l.Public(), &got.TreeHead, nil, got.Cosignatures); len(v) != 0 {
		t.Errorf("VerifyCosignatures kept %d with no witnesses", len(v))
	}
}

func TestLoadPublishedRefuses(t *testing.T) {
	t.Parallel()
	l := witnesstest.NewLog(1)
	l.Append(5)
	dir := t.TempDir()
	good := (&sigsum.CosignedTreeHead{SignedTreeHead: l.Head()}).MarshalASCII()
	tampered := bytes.Replace(good, []byte("size=5"), []byte("size=6"), 1)
	root := l.Head().RootHash.String()
	flipped := root[:10] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", root[10])+1)%16]) + root[11:]
	cases := map[string][]byte{
		"tampered size": tampered,
		"tampered root": bytes.Replace(good, []byte(root), []byte(flipped), 1),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), "junk\n"...),
		"empty":         nil,
		"huge":          bytes.Repeat([]byte("x"), maxPublishedBytes+1),
	}
	for name, data := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPublished(path, l.Public()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The right file under another log's key.
	path := filepath.Join(dir, "good")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPublished(path, l.Public()); err != nil {
		t.Fatalf("good file: %v", err)
	}
	if _, err := LoadPublished(path, witnesstest.NewLog(2).Public()); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("other key: %v", err)
	}
	if _, err := LoadPublished(filepath.Join(dir, "missing"), l.Public()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := SavePublished(filepath.Join(dir, "no", "such", "dir"), sigsum.CosignedTreeHead{}); err == nil {
		t.Error("SavePublished into a missing directory succeeded")
	}
}

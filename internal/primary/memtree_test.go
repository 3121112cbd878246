package primary

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func TestMemTreeProofs(t *testing.T) {
	t.Parallel()
	var hs []sigsum.Hash
	mt := newMemTree(0)
	for n := 1; n <= 70; n++ {
		leaf := sigsum.Leaf{Checksum: sigsum.HashBytes([]byte(fmt.Sprint(n)))}
		h := leaf.Hash()
		hs = append(hs, h)
		mt.append([]sigsum.Leaf{leaf})
		th := sigsum.TreeHead{Size: uint64(n), RootHash: sigsum.RootHash(hs)}
		for i := 0; i < n; i++ {
			idx, ok := mt.lookup(hs[i], uint64(n))
			if !ok || idx != uint64(i) {
				t.Fatalf("lookup of leaf %d in %d: %d, %v", i, n, idx, ok)
			}
			p, err := mt.inclusion(uint64(i), uint64(n))
			if err != nil || p.Verify(hs[i], &th) != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, n, err)
			}
		}
		for old := 1; old < n; old++ {
			oth := sigsum.TreeHead{Size: uint64(old), RootHash: sigsum.RootHash(hs[:old])}
			p, err := mt.consistency(uint64(old), uint64(n))
			if err != nil || p.Verify(&oth, &th) != nil {
				t.Fatalf("consistency %d→%d: %v", old, n, err)
			}
		}
	}
	if _, ok := mt.lookup(hs[69], 69); ok {
		t.Error("a leaf beyond the asked size was found")
	}
	if _, err := mt.inclusion(0, 71); err == nil {
		t.Error("a proof for a size not held was served")
	}
	if got := mt.leafRange(68, 70); len(got) != 2 || got[1].Hash() != hs[69] {
		t.Error("leafRange returned the wrong leaves")
	}
}

// TestProofsFromMemoryEqualStorage: the proofs served from memory are byte for byte Trillian's.
func TestProofsFromMemoryEqualStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	e.addLeaves(37)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.mem == nil || p.mem.size() != 37 {
		t.Fatalf("in-memory tree not kept up to date")
	}
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	c, _ := client.New(client.Config{URL: srv.URL})
	ctx := context.Background()
	fromMem := map[string]string{}
	for i := range e.leaves {
		ip, err := c.GetInclusionProof(ctx, 37, e.leaves[i].Hash())
		if err != nil {
			t.Fatal(err)
		}
		fromMem[fmt.Sprint("i", i)] = string(ip.MarshalASCII())
	}
	for old := uint64(1); old < 37; old++ {
		cp, err := c.GetConsistencyProof(ctx, old, 37)
		if err != nil {
			t.Fatal(err)
		}
		fromMem[fmt.Sprint("c", old)] = string(cp.MarshalASCII())
	}
	leavesMem, err := c.GetLeaves(ctx, 3, 30)
	if err != nil {
		t.Fatal(err)
	}
	p.mem = nil // now from storage
	if leavesSt, err := c.GetLeaves(ctx, 3, 30); err != nil || fmt.Sprint(leavesSt) != fmt.Sprint(leavesMem) {
		t.Fatalf("get-leaves differs between memory and storage: %v", err)
	}
	for i := range e.leaves {
		ip, err := c.GetInclusionProof(ctx, 37, e.leaves[i].Hash())
		if err != nil || string(ip.MarshalASCII()) != fromMem[fmt.Sprint("i", i)] {
			t.Fatalf("inclusion proof of leaf %d differs between memory and storage: %v", i, err)
		}
	}
	for old := uint64(1); old < 37; old++ {
		cp, err := c.GetConsistencyProof(ctx, old, 37)
		if err != nil || string(cp.MarshalASCII()) != fromMem[fmt.Sprint("c", old)] {
			t.Fatalf("consistency proof %d→37 differs between memory and storage: %v", old, err)
		}
	}
}

package primary

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/sigsumd/sigsumd/internal/tiletree"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestProofsFromMemoryEqualStorage: the proofs and leaves served from the tree in memory are byte for byte
// Trillian's, with every tile held, with the leaf hashes of tiles not held read back from storage, and for leaves
// found in storage only.
func TestProofsFromMemoryEqualStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	const n = 600 // two full tiles and a partial one
	e.addLeaves(n)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.tree == nil || p.tree.Size() != n {
		t.Fatalf("in-memory tree not kept up to date")
	}
	srv := httptest.NewServer(p.PublicHandler(""))
	t.Cleanup(srv.Close)
	c, _ := client.New(client.Config{URL: srv.URL})
	ctx := context.Background()
	olds := []uint64{1, 2, 255, 256, 257, 300, 512, 599}
	answers := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		for i := 0; i < n; i += 7 {
			ip, err := c.GetInclusionProof(ctx, n, e.leaves[i].Hash())
			if err != nil {
				t.Fatalf("inclusion proof of leaf %d: %v", i, err)
			}
			got[fmt.Sprint("i", i)] = string(ip.MarshalASCII())
		}
		for _, old := range olds {
			cp, err := c.GetConsistencyProof(ctx, old, n)
			if err != nil {
				t.Fatalf("consistency proof %d→%d: %v", old, n, err)
			}
			got[fmt.Sprint("c", old)] = string(cp.MarshalASCII())
		}
		for _, r := range [][2]uint64{{3, 30}, {200, 600}, {512, 600}} {
			leaves, err := c.GetLeaves(ctx, r[0], r[1])
			if err != nil {
				t.Fatalf("get-leaves %v: %v", r, err)
			}
			got[fmt.Sprint("l", r)] = fmt.Sprint(leaves)
		}
		return got
	}
	fromMem := answers()

	// Leaf hashes read back from storage: a tree that holds one tile.
	tree, err := tiletree.New(tiletree.Config{Source: e.log, MaxTiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.tree, p.text = tree, newLeafText()
	if err := p.indexCommitted(ctx, 0, n); err != nil {
		t.Fatal(err)
	}
	compare(t, "tiles from storage", answers(), fromMem)

	// Leaves the index does not hold: storage finds them, and the tree serves them next time.
	p.committed = newCommittedLeaves()
	compare(t, "leaves found in storage", answers(), fromMem)
	if _, ok := p.committed.lookup(e.leaves[7].Hash()); !ok {
		t.Error("a leaf found in storage was not remembered")
	}
	if _, err := c.GetInclusionProof(ctx, n, sigsum.HashBytes([]byte("never logged"))); client.StatusCode(err) != 404 {
		t.Errorf("inclusion proof of a leaf storage does not hold: %v, want 404", err)
	}

	p.tree = nil // all from storage
	compare(t, "storage", answers(), fromMem)
}

func compare(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("%s: answer %s differs from the one served from memory", what, k)
		}
	}
}

package integration

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/nodetls"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// cluster is a primary and its secondaries, each a real process on its own SQLite store.
type cluster struct {
	primary     *node
	secondaries []*node
	logKey      sigsum.PublicKey
}

func newCluster(t *testing.T, nsec int, primaryFlags ...string) *cluster {
	t.Helper()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), append([]string{"-interval", "300ms"}, primaryFlags...)...)
	c := &cluster{primary: p, logKey: p.publicKey()}
	for i := 0; i < nsec; i++ {
		s := newSecondary(t, filepath.Join(dir, "secondary"+string(rune('1'+i))), p)
		c.secondaries = append(c.secondaries, s)
	}
	p.addSecondaries(c.secondaries...)
	return c
}

func (c *cluster) start() {
	for _, s := range c.secondaries {
		s.start()
	}
	c.primary.start()
}

// submitted is a leaf and whether the log has answered 200 for it.
type submitted struct {
	req  *sigsum.AddLeafRequest
	leaf sigsum.Leaf
}

// submit adds n new leaves; each first answer must be 202 (nothing is committed at once).
func submit(t *testing.T, c *client.Client, s *submitter, n int) []submitted {
	t.Helper()
	var out []submitted
	for i := 0; i < n; i++ {
		req, leaf := s.next(t)
		committed, err := c.AddLeaf(context.Background(), req, nil)
		if err != nil {
			t.Fatalf("add-leaf: %v", err)
		}
		if committed {
			t.Fatalf("add-leaf of a new leaf answered 200 at once")
		}
		out = append(out, submitted{req, leaf})
	}
	return out
}

// allCommitted resubmits every leaf until each answers 200.
func allCommitted(t *testing.T, c *client.Client, leaves []submitted, timeout time.Duration) {
	t.Helper()
	pending := leaves
	waitFor(t, "add-leaf 200 for every leaf", timeout, func() bool {
		var still []submitted
		for _, l := range pending {
			committed, err := c.AddLeaf(context.Background(), l.req, nil)
			if err != nil {
				t.Fatalf("add-leaf retry: %v", err)
			}
			if !committed {
				still = append(still, l)
			}
		}
		pending = still
		return len(pending) == 0
	})
}

// checkLog verifies the published log holds exactly want, with proofs that verify.
func checkLog(t *testing.T, c *client.Client, logKey sigsum.PublicKey, want []submitted, older []sigsum.TreeHead) sigsum.TreeHead {
	t.Helper()
	ctx := context.Background()
	cth := treeHead(t, c, logKey)
	if cth.Size != uint64(len(want)) {
		t.Fatalf("published size %d, want %d", cth.Size, len(want))
	}
	var got []sigsum.Leaf
	for start := uint64(0); start < cth.Size; {
		leaves, err := c.GetLeaves(ctx, start, cth.Size)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, leaves...)
		start += uint64(len(leaves))
	}
	wantSet := map[sigsum.Leaf]bool{}
	for _, w := range want {
		wantSet[w.leaf] = true
	}
	hashes := make([]sigsum.Hash, len(got))
	for i, l := range got {
		if !wantSet[l] {
			t.Fatalf("leaf %d was not submitted (or appears twice)", i)
		}
		delete(wantSet, l)
		hashes[i] = l.Hash()
		if cth.Size >= 2 {
			proof, err := c.GetInclusionProof(ctx, cth.Size, hashes[i])
			if err != nil || proof.LeafIndex != uint64(i) || proof.Verify(hashes[i], &cth.TreeHead) != nil {
				t.Fatalf("inclusion proof of leaf %d: %v", i, err)
			}
		}
	}
	if sigsum.RootHash(hashes) != cth.RootHash {
		t.Fatal("published root is not the root of the published leaves")
	}
	for _, o := range older {
		if o.Size == 0 || o.Size == cth.Size {
			continue
		}
		proof, err := c.GetConsistencyProof(ctx, o.Size, cth.Size)
		if err != nil || proof.Verify(&o, &cth.TreeHead) != nil {
			t.Fatalf("consistency proof %d→%d: %v", o.Size, cth.Size, err)
		}
	}
	return cth.TreeHead
}

func TestReplicatedLog(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 2)
	cl.start()
	p, s2 := cl.primary, cl.secondaries[1]
	c := p.client()
	sub := newSubmitter(t, 7)

	first := submit(t, c, sub, 12)
	allCommitted(t, c, first, 60*time.Second)
	heads := []sigsum.TreeHead{checkLog(t, c, cl.logKey, first, nil)}

	// With one secondary down the primary serves reads, answers 202 and signs nothing new.
	s2.stop()
	second := submit(t, c, sub, 5)
	time.Sleep(2 * time.Second) // several rotation intervals
	if cth := treeHead(t, c, cl.logKey); cth.Size != 12 {
		t.Fatalf("published %d leaves with a secondary down, want 12", cth.Size)
	}
	for _, l := range second {
		if committed, err := c.AddLeaf(context.Background(), l.req, nil); err != nil || committed {
			t.Fatalf("add-leaf with a secondary down: committed=%v, %v", committed, err)
		}
	}
	checkLog(t, c, cl.logKey, first, heads)

	// The secondary restarts from its own store; publication resumes and nothing is lost.
	s2.start()
	all := append(first, second...)
	allCommitted(t, c, all, 60*time.Second)
	heads = append(heads, checkLog(t, c, cl.logKey, all, heads))

	// A restarted primary resumes from its sth file.
	p.stop()
	p.start()
	if cth := treeHead(t, c, cl.logKey); cth.Size != uint64(len(all)) {
		t.Fatalf("restarted primary publishes %d, want %d", cth.Size, len(all))
	}
	third := submit(t, c, sub, 3)
	all = append(all, third...)
	allCommitted(t, c, all, 60*time.Second)
	checkLog(t, c, cl.logKey, all, heads)
}

func TestQuorumOneOfTwo(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 2, "-secondary-quorum", "1")
	cl.secondaries[0].start()
	cl.primary.start() // the second secondary never runs
	c := cl.primary.client()
	leaves := submit(t, c, newSubmitter(t, 8), 4)
	allCommitted(t, c, leaves, 60*time.Second)
	checkLog(t, c, cl.logKey, leaves, nil)
}

// fakeCert is the internal TLS certificate of a fake node whose key s holds.
func fakeCert(t *testing.T, s sigsum.Signer) *tls.Certificate {
	t.Helper()
	c, err := nodetls.Certificate(s)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// fakeSecondary answers get-secondary-tree-head with whatever the test makes it say.
type fakeSecondary struct {
	signer sigsum.Signer
	answer atomic.Pointer[sigsum.SignedTreeHead]
	srv    *httptest.Server
}

func TestBadSecondaryNeverMovesTheHead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "200ms")
	fake := &fakeSecondary{signer: newSubmitter(t, 40).signer}
	fake.srv = startNodeServer(t, fake.signer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sth := fake.answer.Load(); sth != nil {
			w.Write(sth.MarshalASCII())
			return
		}
		http.Error(w, "no head", http.StatusServiceUnavailable)
	}))
	pubFile := filepath.Join(dir, "fake.pub")
	if err := key.WritePublicKeyFile(pubFile, fake.signer.Public(), "fake"); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(p.configFile(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\n[[primary.secondaries]]\nurl = \"" + fake.srv.URL + "\"\npubkey-file = \"" + pubFile + "\"\n")
	f.Close()
	p.start()
	c := p.client()
	logKey := p.publicKey()
	leaves := submit(t, c, newSubmitter(t, 9), 4)
	hashes := make([]sigsum.Hash, len(leaves))
	for i := range leaves {
		hashes[i] = leaves[i].leaf.Hash()
	}
	// Which order the primary sequenced them in is its business; wait until its internal API shows all four.
	// The internal API answers the configured secondary (the fake's key) only.
	internal, _ := client.New(client.Config{URL: p.internalURL(), HTTPClient: nodetls.HTTPClient(fakeCert(t, fake.signer), logKey)})
	var seq []sigsum.Leaf
	waitFor(t, "four leaves sequenced", 30*time.Second, func() bool {
		seq, _ = internal.GetLeaves(context.Background(), 0, 4)
		return len(seq) == 4
	})
	for i := range seq {
		hashes[i] = seq[i].Hash()
	}
	good := sigsum.TreeHead{Size: 4, RootHash: sigsum.RootHash(hashes)}

	sign := func(th sigsum.TreeHead, s sigsum.Signer) {
		sth, err := th.Sign(s)
		if err != nil {
			t.Fatal(err)
		}
		fake.answer.Store(&sth)
	}
	for _, c := range []struct {
		name, logged string
		set          func()
	}{
		{"bad signature", "does not verify", func() { sign(good, newSubmitter(t, 41).signer) }},
		{"size larger than the primary's", "larger than the primary", func() {
			sign(sigsum.TreeHead{Size: 5, RootHash: sigsum.Hash{1}}, fake.signer)
		}},
		{"inconsistent root", "inconsistent", func() {
			sign(sigsum.TreeHead{Size: 2, RootHash: sigsum.RootHash(hashes[1:3])}, fake.signer)
		}},
		{"different root at the same size", "differs", func() {
			sign(sigsum.TreeHead{Size: 4, RootHash: sigsum.Hash{2}}, fake.signer)
		}},
	} {
		c.set()
		waitFor(t, "the primary to log why it ignores a secondary with "+c.name, 20*time.Second, func() bool {
			b, _ := os.ReadFile(p.logFile())
			return strings.Contains(string(b), c.logged)
		})
		time.Sleep(500 * time.Millisecond)
		if cth := treeHead(t, p.client(), logKey); cth.Size != 0 {
			t.Fatalf("%s: published size %d, want 0", c.name, cth.Size)
		}
	}
	sign(good, fake.signer)
	allCommitted(t, c, leaves, 30*time.Second)
}

package secondary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// waitFor bounds every wait in these tests.
const waitFor = 30 * time.Second

func newSigner(t *testing.T, seed byte) *sigsum.Ed25519Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// makeLeaves returns n leaves whose contents are derived from tag and the index, so that two tags give different
// leaves at the same index. They are not validly signed: a secondary copies what its primary verified, and signing
// thousands of leaves under the race detector would dominate the test time.
func makeLeaves(t *testing.T, tag string, from, n int) []sigsum.Leaf {
	t.Helper()
	keyHash := newSigner(t, 2).Public().KeyHash()
	leaves := make([]sigsum.Leaf, n)
	for i := range leaves {
		l := &leaves[i]
		l.Checksum = sigsum.HashBytes(fmt.Appendf(nil, "%s %d", tag, from+i))
		s1, s2 := sigsum.HashBytes(l.Checksum[:]), sigsum.HashBytes(append(l.Checksum[:], 1))
		copy(l.Signature[:32], s1[:])
		copy(l.Signature[32:], s2[:])
		l.KeyHash = keyHash
	}
	return leaves
}

func rootOf(leaves []sigsum.Leaf) sigsum.Hash {
	hs := make([]sigsum.Hash, len(leaves))
	for i := range leaves {
		hs[i] = leaves[i].Hash()
	}
	return sigsum.RootHash(hs)
}

// fakePrimary serves the primary's internal get-leaves over a slice of leaves the test grows, and a public
// get-tree-head with a head the test sets.
type fakePrimary struct {
	t        *testing.T
	logKey   *sigsum.Ed25519Signer
	mu       sync.Mutex
	leaves   []sigsum.Leaf
	maxRange uint64
	head     *sigsum.SignedTreeHead
	starts   []uint64 // start of every get-leaves asked
	// served, when set, runs (under mu) after each get-leaves answer with its start and leaf count.
	served func(start uint64, n int)
	// hold, when set, runs (not under mu) before each get-leaves is answered, with its start.
	hold func(start uint64)
	// proofLeaves, when set, are the leaves get-consistency-proof proves over instead of leaves (a forked log).
	proofLeaves []sigsum.Leaf
	srv         *httptest.Server
	addr        string
}

func newFakePrimary(t *testing.T) *fakePrimary {
	p := &fakePrimary{t: t, logKey: newSigner(t, 1), maxRange: 512}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *fakePrimary) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /get-leaves/{start}/{end}", func(w http.ResponseWriter, r *http.Request) {
		start, err1 := sigsum.ParseInt(r.PathValue("start"))
		end, err2 := sigsum.ParseInt(r.PathValue("end"))
		if err1 != nil || err2 != nil || start >= end {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		hold := p.hold
		p.mu.Unlock()
		if hold != nil {
			hold(start)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.starts = append(p.starts, start)
		size := uint64(len(p.leaves))
		switch {
		case start == size:
			http.Error(w, "at end of tree", http.StatusNotFound)
			return
		case start > size:
			http.Error(w, "start beyond the tree", http.StatusBadRequest)
			return
		}
		end = min(end, size, start+p.maxRange)
		w.Write(sigsum.MarshalLeavesASCII(p.leaves[start:end]))
		if p.served != nil {
			p.served(start, int(end-start))
		}
	})
	mux.HandleFunc("GET /get-consistency-proof/{old}/{new}", func(w http.ResponseWriter, r *http.Request) {
		old, err1 := sigsum.ParseInt(r.PathValue("old"))
		size, err2 := sigsum.ParseInt(r.PathValue("new"))
		p.mu.Lock()
		leaves := p.proofLeaves
		if leaves == nil {
			leaves = p.leaves
		}
		tree := testonly.New(rfc6962.DefaultHasher)
		for _, l := range leaves {
			tree.AppendData(l.MarshalBinary())
		}
		p.mu.Unlock()
		if err1 != nil || err2 != nil || old == 0 || old >= size || size > tree.Size() {
			http.Error(w, "bad sizes", http.StatusBadRequest)
			return
		}
		hs, err := tree.ConsistencyProof(old, size)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var proof sigsum.ConsistencyProof
		for _, h := range hs {
			proof.Path = append(proof.Path, sigsum.Hash(h))
		}
		w.Write(proof.MarshalASCII())
	})
	mux.HandleFunc("GET /get-tree-head", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.head == nil {
			http.Error(w, "no tree head yet", http.StatusServiceUnavailable)
			return
		}
		cth := sigsum.CosignedTreeHead{SignedTreeHead: *p.head}
		w.Write(cth.MarshalASCII())
	})
	return mux
}

// start serves on p.addr (a fresh port the first time, the same one after stop).
func (p *fakePrimary) start() {
	p.t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for deadline := time.Now().Add(waitFor); ; {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.addr = l.Addr().String()
	srv := httptest.NewUnstartedServer(p.handler())
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
}

func (p *fakePrimary) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (p *fakePrimary) url() string { return "http://" + p.addr }

func (p *fakePrimary) add(leaves ...sigsum.Leaf) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaves = append(p.leaves, leaves...)
}

func (p *fakePrimary) set(i int, leaf sigsum.Leaf) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.leaves[i] = leaf
}

func (p *fakePrimary) snapshot() []sigsum.Leaf {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]sigsum.Leaf(nil), p.leaves...)
}

// publish signs and publishes a head over the first size leaves (or over root when given).
func (p *fakePrimary) publish(size int, root *sigsum.Hash) {
	p.t.Helper()
	th := sigsum.TreeHead{Size: uint64(size)}
	if root != nil {
		th.RootHash = *root
	} else {
		th.RootHash = rootOf(p.snapshot()[:size])
	}
	sth, err := th.Sign(p.logKey)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.head = &sth
}

func (p *fakePrimary) requestedStarts() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.starts...)
}

// node is a secondary with its own embedded Trillian on SQLite in dir.
type node struct {
	dir    string
	engine *engine.Engine
	log    engine.Log
	sec    *Secondary
	signer *sigsum.Ed25519Signer
	cancel context.CancelFunc
	done   chan error
	closed bool
}

type options struct {
	batch, storeBatch uint64
	selfCheck         bool
	publishedFile     string // with selfCheck: where the followed head is kept
	logger            *slog.Logger
	// stored, when set, receives the size of every AddSequencedLeaves the loop makes (from its debug log).
	stored func(n int)
}

func openNode(t *testing.T, dir string, p *fakePrimary, o options) *node {
	t.Helper()
	ctx := context.Background()
	e, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dir: dir, engine: e, signer: newSigner(t, 3)}
	t.Cleanup(func() { n.close(t) })
	n.log, err = e.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"),
		Type: trillian.TreeType_PREORDERED_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	internal, err := client.New(client.Config{URL: p.url(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Log: n.log, Signer: n.signer, Primary: internal, Interval: 20 * time.Millisecond,
		BatchSize: o.batch, StoreBatch: o.storeBatch, Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	if o.stored != nil {
		cfg.Logger = slog.New(storeCounter{o.stored})
	}
	if o.logger != nil {
		cfg.Logger = o.logger
	}
	if o.selfCheck {
		pub := p.logKey.Public()
		cfg.LogKey, cfg.PrimaryPublic = &pub, internal
		cfg.PublishedFile = o.publishedFile
	}
	if n.sec, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return n
}

// storeCounter is a slog handler that reports the count of every "storing leaves" record.
type storeCounter struct{ stored func(n int) }

func (storeCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h storeCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "storing leaves" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "count" {
				h.stored(int(a.Value.Int64()))
			}
			return true
		})
	}
	return nil
}
func (h storeCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h storeCounter) WithGroup(string) slog.Handler      { return h }

// tWriter sends log lines to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func (n *node) run() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.sec.Run(ctx) }()
}

// stop ends Run and returns its result.
func (n *node) stop(t *testing.T) error {
	t.Helper()
	if n.cancel == nil {
		return nil
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		return err
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

func (n *node) close(t *testing.T) {
	t.Helper()
	if n.closed {
		return
	}
	n.closed = true
	if err := n.stop(t); err != nil && !errors.Is(err, ErrDiverged) {
		t.Errorf("Run: %v", err)
	}
	if err := n.engine.Close(); err != nil {
		t.Errorf("closing engine: %v", err)
	}
}

// waitSize waits until the secondary's integrated tree has exactly the primary's leaves (size and root).
func (n *node) waitSize(t *testing.T, leaves []sigsum.Leaf) {
	t.Helper()
	want := sigsum.TreeHead{Size: uint64(len(leaves)), RootHash: rootOf(leaves)}
	deadline := time.Now().Add(waitFor)
	for {
		th, err := n.log.TreeHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if th.Size == want.Size {
			if th != want {
				t.Fatalf("tree head at size %d has root %s, want %s", th.Size, th.RootHash, want.RootHash)
			}
			return
		}
		if th.Size > want.Size {
			t.Fatalf("tree size %d beyond the primary's %d", th.Size, want.Size)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree stuck at size %d, want %d (health: %v)", th.Size, want.Size, n.sec.Healthy())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDiverged waits until Run stops with a divergence.
func (n *node) waitDiverged(t *testing.T) error {
	t.Helper()
	select {
	case err := <-n.done:
		n.cancel()
		n.cancel = nil
		if !errors.Is(err, ErrDiverged) {
			t.Fatalf("Run returned %v, want ErrDiverged", err)
		}
		if h := n.sec.Healthy(); !errors.Is(h, ErrDiverged) {
			t.Fatalf("Healthy() = %v, want ErrDiverged", h)
		}
		return err
	case <-time.After(waitFor):
		t.Fatalf("no divergence detected (health: %v, size %d)", n.sec.Healthy(), n.sec.TreeHead().Size)
		return nil
	}
}

func TestReplicatesAndFollows(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "a", 0, 1500)...)
	n := openNode(t, t.TempDir(), p, options{batch: 100, selfCheck: true})
	p.publish(1000, nil)
	n.run()
	n.waitSize(t, p.snapshot())

	p.add(makeLeaves(t, "a", 1500, 321)...)
	p.publish(1500, nil)
	n.waitSize(t, p.snapshot())
	if err := n.sec.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v", err)
	}
	// TreeHead() is what the loop last saw: it catches up with the tree within a poll.
	for deadline := time.Now().Add(waitFor); n.sec.TreeHead().Size != 1821; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("TreeHead().Size = %d, want 1821", n.sec.TreeHead().Size)
		}
	}
	// Every request after the first starts at the last leaf held, so at most one leaf is fetched twice.
	for _, s := range p.requestedStarts()[1:] {
		if s == 0 {
			t.Fatalf("a later request started at 0: %v", p.requestedStarts())
		}
	}
}

// While catching up, the loop stores several full answers at once (up to StoreBatch leaves), each checked against
// the last leaf of the one before; answers short of a full batch are stored as they come.
func TestCatchUpStoresSeveralAnswersAtOnce(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "c", 0, 2000)...)
	var mu sync.Mutex
	var stores []int
	n := openNode(t, t.TempDir(), p, options{batch: 100, storeBatch: 300, stored: func(k int) {
		mu.Lock()
		stores = append(stores, k)
		mu.Unlock()
	}})
	n.run()
	n.waitSize(t, p.snapshot())
	mu.Lock()
	defer mu.Unlock()
	// The first answer (from 0) has no junction leaf: 100 leaves. Then full stores of 3 answers × 99 new leaves.
	if len(stores) < 3 || stores[0] != 100 || stores[1] != 3*99 {
		t.Fatalf("stores while catching up: %v; want 100, then %d each", stores, 3*99)
	}
	total := 0
	for _, k := range stores {
		if k > 3*99 {
			t.Fatalf("a store of %d leaves, more than 3 answers: %v", k, stores)
		}
		total += k
	}
	if total != 2000 {
		t.Fatalf("stored %d leaves in all, want 2000: %v", total, stores)
	}
}

// While one batch is stored, the next is fetched; the loop stores it without asking again, drops it when the
// replica starts over, and refuses it when the primary changed the leaf it was checked against.
func TestCatchUpPrefetchesTheNextBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Batch of 3 answers × 99 new leaves; the first store (from 0, 100 leaves) prefetches nothing.
	const first, batch = 100, 3 * 99
	for _, tc := range []string{"used", "dropped on start over", "primary changed"} {
		t.Run(tc, func(t *testing.T) {
			t.Parallel()
			p := newFakePrimary(t)
			p.add(makeLeaves(t, "pf", 0, 2000)...)
			release := make(chan struct{})
			p.mu.Lock()
			p.hold = func(start uint64) {
				if start == first+batch-1 { // the junction of the batch after the second
					<-release
				}
			}
			p.mu.Unlock()
			n := openNode(t, t.TempDir(), p, options{batch: 100, storeBatch: 300})
			var r replica
			defer r.dropPrefetch()
			for _, want := range []uint64{first, first + batch} {
				if _, err := n.sec.step(ctx, &r); err != nil {
					t.Fatal(err)
				}
				if r.next != want {
					t.Fatalf("stored up to %d, want %d", r.next, want)
				}
			}
			pf := r.prefetch
			if pf == nil || pf.from != r.next || pf.after != r.last {
				t.Fatalf("no prefetch of the batch from %d after a full batch: %+v", r.next, pf)
			}
			switch tc {
			case "used":
				close(release)
				if _, err := n.sec.step(ctx, &r); err != nil || r.next != first+2*batch {
					t.Fatalf("step with a prefetched batch: stored up to %d (%v), want %d", r.next, err, first+2*batch)
				}
				seen := map[uint64]bool{}
				for _, s := range p.requestedStarts() {
					if seen[s] {
						t.Errorf("leaves from %d were asked for twice: %v", s, p.requestedStarts())
					}
					seen[s] = true
				}
			case "dropped on start over":
				r.valid = false // as after a failed step
				go func() { time.Sleep(50 * time.Millisecond); close(release) }()
				if _, err := n.sec.step(ctx, &r); err != nil {
					t.Fatal(err)
				}
				if pf.leaves != nil || pf.err == nil {
					t.Errorf("the prefetch was not stopped: %d leaves, err %v", len(pf.leaves), pf.err)
				}
			case "primary changed":
				p.set(first+batch-1, makeLeaves(t, "other", first+batch-1, 1)[0])
				close(release)
				if _, err := n.sec.step(ctx, &r); !errors.Is(err, ErrDiverged) {
					t.Fatalf("step with a prefetched batch from a changed primary: %v, want ErrDiverged", err)
				}
				if th, _ := n.log.TreeHead(ctx); th.Size > first+batch {
					t.Errorf("stored past the change: %d", th.Size)
				}
				return
			}
			n.run()
			n.waitSize(t, p.snapshot())
		})
	}
}

// Tiny batches still replicate: one leaf an answer (the junction leaf only), and two.
func TestTinyBatches(t *testing.T) {
	t.Parallel()
	for _, batch := range []uint64{1, 2} {
		p := newFakePrimary(t)
		p.add(makeLeaves(t, "t", 0, 40)...)
		n := openNode(t, t.TempDir(), p, options{batch: batch})
		n.run()
		n.waitSize(t, p.snapshot())
	}
}

func TestDefaultBatchFewerThanAsked(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.maxRange = 7 // far fewer than the 512 asked
	p.add(makeLeaves(t, "b", 0, 150)...)
	n := openNode(t, t.TempDir(), p, options{})
	n.run()
	n.waitSize(t, p.snapshot())
	p.mu.Lock()
	p.maxRange = 1 // only the junction leaf per answer: the follow-up request must still make progress
	p.mu.Unlock()
	p.add(makeLeaves(t, "b", 150, 8)...)
	n.waitSize(t, p.snapshot())
}

func TestPrimaryDownAndBack(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.maxRange = 10
	p.add(makeLeaves(t, "c", 0, 400)...)
	n := openNode(t, t.TempDir(), p, options{batch: 64})
	n.run()
	// Take the primary away in the middle of catching up (if it is that far yet; if not, at the end), when
	// stored-but-not-integrated leaves are likely.
	deadline := time.Now().Add(waitFor)
	for n.sec.TreeHead().Size < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("stuck at %d", n.sec.TreeHead().Size)
		}
		time.Sleep(time.Millisecond)
	}
	p.stop()
	p.add(makeLeaves(t, "c", 400, 100)...)
	for n.sec.Healthy() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no error reported while the primary is down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if errors.Is(n.sec.Healthy(), ErrDiverged) {
		t.Fatalf("an unreachable primary is not divergence: %v", n.sec.Healthy())
	}
	p.start()
	n.waitSize(t, p.snapshot())
	for deadline := time.Now().Add(waitFor); n.sec.Healthy() != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy after the primary came back: %v", n.sec.Healthy())
		}
	}
}

func TestRestartResumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "d", 0, 700)...)
	n := openNode(t, dir, p, options{batch: 128})
	n.run()
	n.waitSize(t, p.snapshot())
	n.close(t)

	p.add(makeLeaves(t, "d", 700, 150)...)
	before := len(p.requestedStarts())
	n2 := openNode(t, dir, p, options{batch: 128})
	if th, err := n2.log.TreeHead(context.Background()); err != nil || th.Size != 700 {
		t.Fatalf("reopened tree head: %+v, %v; want size 700", th, err)
	}
	n2.run()
	n2.waitSize(t, p.snapshot())
	if first := p.requestedStarts()[before]; first != 699 {
		t.Errorf("after restart the first request started at %d, want 699 (the stored size, minus the junction leaf)", first)
	}
}

func TestDivergedTip(t *testing.T) {
	t.Parallel()
	// The primary takes another history (its leaf 49 differs from ours, and it has grown), either between two
	// polls, or in the worst moment: right after answering the junction check with our leaf alone.
	for _, when := range []string{"between polls", "after the junction answer"} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			p := newFakePrimary(t)
			p.add(makeLeaves(t, "e", 0, 50)...)
			n := openNode(t, t.TempDir(), p, options{batch: 16})
			n.run()
			n.waitSize(t, p.snapshot())

			other := makeLeaves(t, "other", 49, 11)
			if when == "between polls" {
				p.set(49, other[0])
				p.add(other[1:]...)
			} else {
				p.mu.Lock()
				p.served = func(start uint64, count int) {
					if start == 49 && count == 1 {
						p.leaves = append(p.leaves[:49], other...)
						p.served = nil
					}
				}
				p.mu.Unlock()
			}
			n.waitDiverged(t)
			if th, _ := n.log.TreeHead(context.Background()); th.Size != 50 {
				t.Errorf("diverged replica advanced to %d", th.Size)
			}
			// Run holds the state: it refuses to start again.
			if err := n.sec.Run(context.Background()); !errors.Is(err, ErrDiverged) {
				t.Errorf("Run after divergence = %v", err)
			}
			srv := httptest.NewServer(n.sec.InternalHandler(""))
			defer srv.Close()
			if rsp, body := get(t, http.MethodGet, srv.URL+"/get-secondary-tree-head"); rsp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("get-secondary-tree-head after divergence: %d %q, want 503", rsp.StatusCode, body)
			}
		})
	}
}

func TestConflictingStoredLeaf(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "f", 0, 20)...)
	n := openNode(t, t.TempDir(), p, options{batch: 4})
	// A leaf from another history sits at index 0 (integrated or not by the time Run starts: either way it must
	// be caught, by the junction check or by Trillian's conflict).
	if err := n.log.AddSequencedLeaves(context.Background(), 0, makeLeaves(t, "other", 0, 1)); err != nil {
		t.Fatal(err)
	}
	n.run()
	n.waitDiverged(t)
	// Trillian stores the leaves of the conflicting batch that did not conflict, and its sequencer integrates them;
	// nothing after that batch may be stored.
	time.Sleep(50 * time.Millisecond) // a few sequencer passes
	if th, _ := n.log.TreeHead(context.Background()); th.Size > 4 {
		t.Errorf("diverged replica advanced to %d", th.Size)
	}
}

func TestSelfCheckDetectsInconsistentPublishedHead(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "g", 0, 40)...)
	n := openNode(t, t.TempDir(), p, options{batch: 16, selfCheck: true})
	// The log signed a head of size 20 over other leaves: our copy of the first 20 is not what was published.
	root := rootOf(makeLeaves(t, "other", 0, 20))
	p.publish(20, &root)
	n.run()
	n.waitDiverged(t)
}

func TestSelfCheckIgnoresBadSignature(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "h", 0, 40)...)
	n := openNode(t, t.TempDir(), p, options{batch: 16, selfCheck: true})
	// Signed by another key: says nothing about this replica, so it must not stop replication.
	root := rootOf(makeLeaves(t, "other", 0, 20))
	sth, err := (&sigsum.TreeHead{Size: 20, RootHash: root}).Sign(newSigner(t, 9))
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.head = &sth
	p.mu.Unlock()
	n.run()
	n.waitSize(t, p.snapshot())
	time.Sleep(60 * time.Millisecond) // a few polls, each with a self-check
	if err := n.sec.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v", err)
	}
}

// countingSigner counts signatures, to see the signed head is cached.
type countingSigner struct {
	sigsum.Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(msg []byte) (sigsum.Signature, error) {
	c.n.Add(1)
	return c.Signer.Sign(msg)
}

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp, string(b)
}

func TestGetSecondaryTreeHead(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "i", 0, 33)...)
	n := openNode(t, t.TempDir(), p, options{})
	cs := &countingSigner{Signer: n.signer}
	n.sec.cfg.Signer = cs // before Run or any request: no concurrent access
	n.run()
	n.waitSize(t, p.snapshot())
	want, err := n.log.TreeHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(n.sec.InternalHandler("/a/b/"))
	defer srv.Close()
	for _, path := range []string{"/get-secondary-tree-head", "/a/b/get-secondary-tree-head"} {
		rsp, body := get(t, http.MethodGet, srv.URL+path)
		if rsp.StatusCode != http.StatusOK || !strings.HasPrefix(rsp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET %s: %d %q %q", path, rsp.StatusCode, rsp.Header.Get("Content-Type"), body)
		}
		sth, err := sigsum.ParseSignedTreeHead([]byte(body))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if !sth.Verify(n.signer.Public()) {
			t.Errorf("GET %s: signature does not verify with the secondary's key", path)
		}
		if sth.Verify(p.logKey.Public()) {
			t.Errorf("GET %s: signed with the log's key", path)
		}
		if sth.TreeHead != want {
			t.Errorf("GET %s: %+v, want %+v", path, sth.TreeHead, want)
		}
	}
	if got := cs.n.Load(); got != 1 {
		t.Errorf("%d signatures for an unchanged head, want 1", got)
	}
	if rsp, _ := get(t, http.MethodHead, srv.URL+"/get-secondary-tree-head"); rsp.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", rsp.StatusCode)
	}
	for _, path := range []string{"/get-secondary-tree-head", "/a/b/get-secondary-tree-head"} {
		rsp, body := get(t, http.MethodPost, srv.URL+path)
		if rsp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(rsp.Header.Get("Allow"), "GET") {
			t.Errorf("POST %s: %d, Allow %q, body %q", path, rsp.StatusCode, rsp.Header.Get("Allow"), body)
		}
	}
	if rsp, _ := get(t, http.MethodGet, srv.URL+"/a/get-secondary-tree-head"); rsp.StatusCode != http.StatusNotFound {
		t.Errorf("wrong prefix: %d", rsp.StatusCode)
	}

	// The tree grows: a new signature, over the new head.
	p.add(makeLeaves(t, "i", 33, 5)...)
	n.waitSize(t, p.snapshot())
	_, body := get(t, http.MethodGet, srv.URL+"/get-secondary-tree-head")
	sth, err := sigsum.ParseSignedTreeHead([]byte(body))
	if err != nil || sth.Size != 38 || !sth.Verify(n.signer.Public()) {
		t.Errorf("after growth: %+v, %v", sth, err)
	}
	if got := cs.n.Load(); got != 2 {
		t.Errorf("%d signatures for two heads, want 2", got)
	}
}

// A get-secondary-tree-head carrying sigsum.WaitBeyondHeader is held until the replica holds more than the size it
// names, and answered at once when it already does or the value is malformed: the primary's rotation goes on as
// soon as the secondary holds the whole tree, without polling it.
func TestGetSecondaryTreeHeadWaits(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "w", 0, 33)...)
	n := openNode(t, t.TempDir(), p, options{})
	n.run()
	n.waitSize(t, p.snapshot())
	srv := httptest.NewServer(n.sec.InternalHandler(""))
	defer srv.Close()
	c, err := client.New(client.Config{URL: srv.URL, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Beyond a size the replica exceeds: at once, no request held.
	if sth, err := c.GetSecondaryTreeHeadWaiting(ctx, 32); err != nil || sth.Size != 33 {
		t.Fatalf("waiting beyond 32 of 33: %+v, %v", sth.TreeHead, err)
	}
	// A malformed value is ignored: the answer is immediate.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/get-secondary-tree-head", nil)
	req.Header.Set(sigsum.WaitBeyondHeader, "many")
	if rsp, err := http.DefaultClient.Do(req); err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("malformed header: %v, %v", rsp, err)
	} else {
		rsp.Body.Close()
	}
	if got := n.sec.headWaiters.Load(); got != 0 {
		t.Fatalf("%d requests held after immediate answers", got)
	}

	// Beyond its size: held until the replica grows, however slow the machine is at copying leaves.
	type answer struct {
		sth sigsum.SignedTreeHead
		err error
	}
	done := make(chan answer, 1)
	go func() {
		sth, err := c.GetSecondaryTreeHeadWaiting(ctx, 33)
		done <- answer{sth, err}
	}()
	for deadline := time.Now().Add(waitFor); n.sec.headWaiters.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request was never held")
		}
	}
	select {
	case a := <-done:
		t.Fatalf("answered before the replica grew: %+v, %v", a.sth.TreeHead, a.err)
	default:
	}
	p.add(makeLeaves(t, "w", 33, 5)...)
	a := <-done
	if a.err != nil || a.sth.Size != 38 || !a.sth.Verify(n.signer.Public()) {
		t.Fatalf("held answer: %+v, %v; want size 38 signed by the secondary", a.sth.TreeHead, a.err)
	}

	// A replica that does not grow answers with what it holds once the hold ends.
	if sth, err := c.GetSecondaryTreeHeadWaiting(ctx, 38); err != nil || sth.Size != 38 {
		t.Fatalf("held without growth: %+v, %v", sth.TreeHead, err)
	}
}

func TestPublicHandler(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "j", 0, 3)...)
	n := openNode(t, t.TempDir(), p, options{})
	n.run()
	n.waitSize(t, p.snapshot())
	srv := httptest.NewServer(n.sec.PublicHandler("log"))
	defer srv.Close()

	// The status page's facts: the node serves the page itself (internal/node), from this report.
	rep := n.sec.Status(context.Background(), time.Now())
	if rep.Role != "secondary" || rep.NodeKeyHash != n.signer.Public().KeyHash().String() || rep.LocalSize != 3 {
		t.Errorf("status: %+v", rep)
	}
	for _, req := range [][2]string{{"GET", "/log/get-tree-head"}, {"POST", "/log/add-leaf"}, {"GET", "/"},
		{"GET", "/log/get-leaves/0/1"}, {"GET", "/log/"}} {
		rsp, body := get(t, req[0], srv.URL+req[1])
		if rsp.StatusCode != http.StatusNotFound || body != notServed+"\n" {
			t.Errorf("%s %s: %d %q", req[0], req[1], rsp.StatusCode, body)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	c, err := client.New(client.Config{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	pub := newSigner(t, 1).Public()
	for name, cfg := range map[string]Config{
		"no log":         {Signer: newSigner(t, 3), Primary: c},
		"half selfcheck": {Log: struct{ engine.Log }{}, Signer: newSigner(t, 3), Primary: c, LogKey: &pub},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// waitPublished waits until the secondary has recorded a published head of size.
func (n *node) waitPublished(t *testing.T, size uint64) sigsum.CosignedTreeHead {
	t.Helper()
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		cth, checked, ok := n.sec.Published()
		if ok && cth.Size == size && !checked.IsZero() {
			return cth
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded published head %+v (known %v), want size %d", cth.TreeHead, ok, size)
		}
	}
}

// The secondary follows the log's published head, records the newest in its file, and knows it after a restart,
// before it has contacted anything.
func TestFollowsPublishedHead(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "f", 0, 40)...)
	dir := t.TempDir()
	file := filepath.Join(dir, "published-tree-head")
	n := openNode(t, dir, p, options{batch: 16, selfCheck: true, publishedFile: file})
	if _, _, ok := n.sec.Published(); ok {
		t.Fatal("a fresh secondary knows a published head")
	}
	p.publish(10, nil)
	n.run()
	n.waitPublished(t, 10)
	p.publish(30, nil)
	want := n.waitPublished(t, 30)
	n.waitSize(t, p.snapshot())
	b, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(b, want.MarshalASCII()) {
		t.Fatalf("published file %q (%v), want the head of size 30", b, err)
	}
	if err := n.sec.Ready(t.Context()); err != nil {
		t.Fatalf("Ready() = %v", err)
	}
	if d := n.sec.Degraded(); d != "" {
		t.Errorf("Degraded() = %q", d)
	}
	if d := n.sec.Detail(); !strings.Contains(d, "published head: size 30 with 0 cosignatures, confirmed") || !strings.Contains(d, "replica size 40") {
		t.Errorf("Detail() = %q", d)
	}
	n.close(t)

	// A restarted secondary knows the recorded head at once, whatever the primary does now.
	p.stop()
	n2 := openNode(t, dir, p, options{batch: 16, selfCheck: true, publishedFile: file})
	got, checked, ok := n2.sec.Published()
	if !ok || got.SignedTreeHead != want.SignedTreeHead || !checked.IsZero() {
		t.Fatalf("after a restart: %+v (known %v, checked %v), want size 30, not checked", got.TreeHead, ok, checked)
	}
	if d := n2.sec.Degraded(); !strings.Contains(d, "last confirmed not yet") {
		t.Errorf("Degraded() before any confirmation = %q", d)
	}
	n3 := openNode(t, t.TempDir(), p, options{batch: 16})
	if d := n3.sec.Degraded(); !strings.Contains(d, "does not follow the log's published head") {
		t.Errorf("Degraded() of a secondary that follows nothing = %q", d)
	}
}

// A log that publishes heads that do not extend each other is caught by the follower, even for sizes this
// replica does not hold yet: the evidence makes the node unready, and the recorded head stays the last good one.
func TestFollowerCatchesLogFork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fork func(p *fakePrimary)
	}{
		{"two roots for one size", func(p *fakePrimary) {
			root := rootOf(makeLeaves(t, "other", 0, 10))
			p.publish(10, &root)
		}},
		{"a larger head over another history", func(p *fakePrimary) {
			other := makeLeaves(t, "other", 0, 60)
			root := rootOf(other)
			p.mu.Lock()
			p.proofLeaves = other
			p.mu.Unlock()
			p.publish(60, &root)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newFakePrimary(t)
			p.add(makeLeaves(t, "k", 0, 20)...)
			release := make(chan struct{})
			p.mu.Lock()
			p.hold = func(uint64) { <-release } // this replica copies nothing: the follower alone decides
			p.mu.Unlock()
			t.Cleanup(func() { close(release) })
			dir := t.TempDir()
			n := openNode(t, dir, p, options{batch: 16, selfCheck: true, publishedFile: filepath.Join(dir, "published")})
			p.publish(10, nil)
			n.run()
			good := n.waitPublished(t, 10)
			tt.fork(p)
			deadline := time.Now().Add(waitFor)
			for !errors.Is(n.sec.Ready(t.Context()), ErrLogForked) {
				if time.Now().After(deadline) {
					t.Fatalf("Ready() = %v, want ErrLogForked", n.sec.Ready(t.Context()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got, _, _ := n.sec.Published(); got.SignedTreeHead != good.SignedTreeHead {
				t.Fatalf("recorded %+v after the fork, want the last good head", got.TreeHead)
			}
		})
	}
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A primary that is down fails every retry: the secondary logs that once (and then once a minute with a count),
// and once when replication recovers, not once per retry. Before the primary first answered, it is most often
// still starting: that wait is told at info level, once, not as a failure.
func TestPrimaryDownLoggedOnce(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "d", 0, 10)...)
	var logs lockedBuffer
	n := openNode(t, t.TempDir(), p, options{batch: 16, logger: slog.New(slog.NewTextHandler(&logs, nil))})
	p.stop()
	n.run()
	time.Sleep(time.Second) // retries every 20 to 80 ms
	p.start()
	n.waitSize(t, p.snapshot())
	time.Sleep(100 * time.Millisecond)
	out := logs.String()
	if got := strings.Count(out, `level=INFO msg="waiting for the primary to answer"`); got != 1 {
		t.Errorf("%d lines about waiting for the primary at start, want 1 at info:\n%s", got, out)
	}
	if strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="the primary answers"`) {
		t.Errorf("a primary starting after its secondary made a warning, or no line when it answered:\n%s", out)
	}

	p.stop()
	time.Sleep(time.Second)
	p.add(makeLeaves(t, "e", 10, 5)...)
	p.start()
	n.waitSize(t, p.snapshot())
	time.Sleep(100 * time.Millisecond)
	out = logs.String()
	if got := strings.Count(out, `level=WARN msg="replication step failed`); got != 1 {
		t.Errorf("%d lines about the failing primary, want 1:\n%s", got, out)
	}
	if !strings.Contains(out, "replication recovered") || !strings.Contains(out, "failures=") {
		t.Errorf("no recovery line with the count of failures:\n%s", out)
	}
}

// A start tells its story once: "caught up" when the replica first holds the primary's tree, and nothing more
// while it keeps up.
func TestCaughtUpLoggedOnce(t *testing.T) {
	t.Parallel()
	p := newFakePrimary(t)
	p.add(makeLeaves(t, "c", 0, 300)...)
	var logs lockedBuffer
	n := openNode(t, t.TempDir(), p, options{batch: 64, logger: slog.New(slog.NewTextHandler(&logs, nil))})
	n.run()
	n.waitSize(t, p.snapshot())
	for i := 0; i < 5; i++ { // a busy primary: small batches, each copied at once
		p.add(makeLeaves(t, "c", 300+10*i, 10)...)
		n.waitSize(t, p.snapshot())
	}
	time.Sleep(100 * time.Millisecond)
	if got := strings.Count(logs.String(), "caught up with the primary"); got != 1 {
		t.Errorf("%d caught-up lines, want 1:\n%s", got, logs.String())
	}
}

package engine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Benchmarks of the narrow Trillian interface on the embedded engine over SQLite: what every add-leaf, proof and
// get-leaves of a node costs below the handlers. Speed is measured here, never asserted.

// benchLog opens a new LOG tree on an embedded engine over SQLite.
func benchLog(b *testing.B) Log {
	b.Helper()
	dir := b.TempDir()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	RouteKlog(quiet)
	e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: Storage{Scheme: StorageSQLite, Target: filepath.Join(dir, "t.db")},
		SequencerInterval: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_LOG, Create: true})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// leafMaker signs distinct leaves.
type leafMaker struct {
	s sigsum.Signer
	n atomic.Int64
}

func newLeafMaker(b *testing.B) *leafMaker {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32)))
	if err != nil {
		b.Fatal(err)
	}
	return &leafMaker{s: s}
}

func (m *leafMaker) leaf(b *testing.B) sigsum.Leaf {
	l, err := sigsum.SignLeaf(m.s, sigsum.HashBytes(fmt.Appendf(nil, "bench %d", m.n.Add(1))))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// fill queues n leaves from 16 goroutines and waits until the tree has integrated them.
func fill(b *testing.B, l Log, m *leafMaker, n int) []sigsum.Leaf {
	b.Helper()
	ctx := context.Background()
	leaves := make([]sigsum.Leaf, n)
	for i := range leaves {
		leaves[i] = m.leaf(b)
	}
	queueAll(b, l, leaves)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		th, err := l.TreeHead(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if th.Size >= uint64(n) {
			return leaves
		}
		if time.Now().After(deadline) {
			b.Fatalf("tree stuck at %d, want %d", th.Size, n)
		}
	}
}

// queueAll queues the leaves from 16 goroutines.
func queueAll(tb testing.TB, l Log, leaves []sigsum.Leaf) {
	tb.Helper()
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(leaves); i += 16 {
				if _, err := l.QueueLeaf(context.Background(), &leaves[i]); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkQueueLeaf is one new leaf per call, from one goroutine: a SQLite write transaction each.
func BenchmarkQueueLeaf(b *testing.B) {
	l := benchLog(b)
	m := newLeafMaker(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		leaf := m.leaf(b)
		b.StartTimer()
		if dup, err := l.QueueLeaf(ctx, &leaf); err != nil || dup {
			b.Fatal(dup, err)
		}
	}
}

// BenchmarkQueueLeafParallel is new leaves from 16 goroutines per GOMAXPROCS, as concurrent add-leaf requests do.
func BenchmarkQueueLeafParallel(b *testing.B) {
	l := benchLog(b)
	m := newLeafMaker(b)
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			leaf := m.leaf(b)
			if _, err := l.QueueLeaf(ctx, &leaf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQueueLeafDuplicate queues a leaf that is already in the tree: Trillian answers AlreadyExists.
func BenchmarkQueueLeafDuplicate(b *testing.B) {
	l := benchLog(b)
	leaves := fill(b, l, newLeafMaker(b), 100)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if dup, err := l.QueueLeaf(ctx, &leaves[i%len(leaves)]); err != nil || !dup {
			b.Fatal(dup, err)
		}
		i++
	}
}

var benchTreeSizes = []int{1000, 10000}

func BenchmarkGetLeaves512(b *testing.B) {
	for _, n := range benchTreeSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			l := benchLog(b)
			fill(b, l, newLeafMaker(b), n)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				start := uint64(i % (n - 512))
				got, err := l.GetLeaves(ctx, start, 512)
				if err != nil || len(got) != 512 {
					b.Fatal(len(got), err)
				}
				i += 7919
			}
		})
	}
}

func BenchmarkInclusionProof(b *testing.B) {
	for _, n := range benchTreeSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			l := benchLog(b)
			leaves := fill(b, l, newLeafMaker(b), n)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := l.InclusionProof(ctx, uint64(n), leaves[i%n].Hash()); err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
		})
	}
}

// BenchmarkInclusionProofMiss is the lookup of a leaf not in the tree, as add-leaf does for every new leaf.
func BenchmarkInclusionProofMiss(b *testing.B) {
	l := benchLog(b)
	m := newLeafMaker(b)
	fill(b, l, m, 1000)
	absent := m.leaf(b)
	h := absent.Hash()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.InclusionProof(ctx, 1000, h); err == nil {
			b.Fatal("found a leaf never queued")
		}
	}
}

func BenchmarkTreeHead(b *testing.B) {
	l := benchLog(b)
	fill(b, l, newLeafMaker(b), 100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.TreeHead(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTileRead compares reading one 256-leaf tile's worth of leaves with reading only their hashes.
func BenchmarkTileRead(b *testing.B) {
	const n = 10000
	l := benchLog(b)
	fill(b, l, newLeafMaker(b), n)
	ctx := context.Background()
	b.Run("leaves", func(b *testing.B) {
		b.ReportAllocs()
		i := uint64(0)
		for b.Loop() {
			if _, err := l.GetLeaves(ctx, (i%39)*256, 256); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
	})
	b.Run("hashes", func(b *testing.B) {
		b.ReportAllocs()
		i := uint64(0)
		for b.Loop() {
			if _, err := l.LeafHashes(ctx, (i%39)*256, 256); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
	})
}

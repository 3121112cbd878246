package sqlitestore

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/log"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/mysql"
	"github.com/google/trillian/storage/testdb"
	stestonly "github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/types"
	"github.com/google/trillian/util/clock"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/protobuf/proto"
)

// mysqlBenchEnv names the environment variable with the DSN of a MySQL or
// MariaDB server for the comparison benchmarks, e.g.
// SIGSUMD_TEST_MYSQL='root@tcp(127.0.0.1:3306)/'. Unset: they are skipped.
const mysqlBenchEnv = "SIGSUMD_TEST_MYSQL"

// benchLeaf makes a unique leaf, hashed as the log server would.
func benchLeaf(prefix string, i int64) *trillian.LogLeaf {
	v := []byte(fmt.Sprintf("%s %d", prefix, i))
	h := rfc6962.DefaultHasher.HashLeaf(v)
	return &trillian.LogLeaf{LeafValue: v, MerkleLeafHash: h, LeafIdentityHash: h}
}

// benchTree creates and initialises a LOG tree on any storage pair.
func benchTree(ctx context.Context, b *testing.B, as storage.AdminStorage, ls storage.LogStorage) *trillian.Tree {
	b.Helper()
	tree, err := storage.CreateTree(ctx, as, proto.Clone(stestonly.LogTree).(*trillian.Tree))
	if err != nil {
		b.Fatalf("CreateTree: %v", err)
	}
	root, err := (&types.LogRootV1{RootHash: rfc6962.DefaultHasher.EmptyRoot(), TimestampNanos: uint64(time.Now().UnixNano())}).MarshalBinary()
	if err != nil {
		b.Fatalf("MarshalBinary: %v", err)
	}
	if err := ls.ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
		return tx.StoreSignedLogRoot(ctx, &trillian.SignedLogRoot{LogRoot: root})
	}); err != nil {
		b.Fatalf("storing the first root: %v", err)
	}
	return tree
}

// runQueueBench issues b.N single-leaf QueueLeaves calls (what one QueueLeaf
// RPC does) from the given number of goroutines.
func runQueueBench(b *testing.B, ls storage.LogStorage, tree *trillian.Tree, workers int) {
	ctx := context.Background()
	prefix := fmt.Sprintf("bench %d", time.Now().UnixNano())
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	b.ResetTimer()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if _, err := ls.QueueLeaves(ctx, tree, []*trillian.LogLeaf{benchLeaf(prefix, i)}, time.Now()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatalf("QueueLeaves: %v", err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// runIntegrateBench queues b.N leaves (untimed), then times Trillian's
// sequencer integrating them in batches of 1000.
func runIntegrateBench(b *testing.B, ls storage.LogStorage, tree *trillian.Tree) {
	ctx := context.Background()
	prefix := fmt.Sprintf("integrate %d", time.Now().UnixNano())
	const chunk = 1000
	// Queue a little in the past so that no leaf is inside the guard window.
	queued := time.Now().Add(-time.Minute)
	for start := 0; start < b.N; start += chunk {
		var leaves []*trillian.LogLeaf
		for i := start; i < min(start+chunk, b.N); i++ {
			leaves = append(leaves, benchLeaf(prefix, int64(i)))
		}
		if _, err := ls.QueueLeaves(ctx, tree, leaves, queued); err != nil {
			b.Fatalf("QueueLeaves: %v", err)
		}
	}
	log.InitMetrics(nil)
	b.ResetTimer()
	for done := 0; done < b.N; {
		n, err := log.IntegrateBatch(ctx, tree, chunk, 0, 0, clock.System, ls, quota.Noop())
		if err != nil {
			b.Fatalf("IntegrateBatch: %v", err)
		}
		if n == 0 {
			b.Fatalf("IntegrateBatch integrated nothing after %d of %d leaves", done, b.N)
		}
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

func benchStore(b *testing.B) (*Store, *trillian.Tree) {
	s := openTestStore(b)
	return s, benchTree(context.Background(), b, s.AdminStorage(), s.LogStorage())
}

// BenchmarkQueueLeaves measures QueueLeaf throughput on the SQLite store:
// serial (every call its own commit and fsync) and 64 concurrent callers
// (grouped commits).
func BenchmarkQueueLeaves(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, tree := benchStore(b)
			runQueueBench(b, s.LogStorage(), tree, workers)
		})
	}
}

// BenchmarkIntegrate measures how many leaves per second Trillian's sequencer
// integrates on the SQLite store.
func BenchmarkIntegrate(b *testing.B) {
	s, tree := benchStore(b)
	runIntegrateBench(b, s.LogStorage(), tree)
}

// mysqlStorage creates a scratch database with Trillian's schema on the server
// named by SIGSUMD_TEST_MYSQL, using Trillian's own test helper, and drops it
// at the end.
func mysqlStorage(b *testing.B) (storage.AdminStorage, storage.LogStorage) {
	dsn := os.Getenv(mysqlBenchEnv)
	if dsn == "" {
		b.Skipf("%s not set: no MySQL/MariaDB to compare with", mysqlBenchEnv)
	}
	b.Setenv(testdb.MySQLURIEnv, dsn)
	ctx := context.Background()
	db, done, err := testdb.NewTrillianDB(ctx, testdb.DriverMySQL)
	if err != nil {
		b.Fatalf("creating a MySQL test database: %v", err)
	}
	b.Cleanup(func() { done(context.Background()) })
	return mysql.NewAdminStorage(db), mysql.NewLogStorage(db, nil)
}

// BenchmarkQueueLeavesMySQL is BenchmarkQueueLeaves on Trillian's MySQL
// provider, for comparison.
func BenchmarkQueueLeavesMySQL(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			as, ls := mysqlStorage(b)
			tree := benchTree(context.Background(), b, as, ls)
			runQueueBench(b, ls, tree, workers)
		})
	}
}

// BenchmarkIntegrateMySQL is BenchmarkIntegrate on Trillian's MySQL provider.
func BenchmarkIntegrateMySQL(b *testing.B) {
	as, ls := mysqlStorage(b)
	tree := benchTree(context.Background(), b, as, ls)
	runIntegrateBench(b, ls, tree)
}

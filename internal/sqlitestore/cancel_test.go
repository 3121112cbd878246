package sqlitestore

import (
	"context"
	"testing"
	"time"

	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
)

// TestCommitAfterContextCancelled reproduces the start failure "reading committed leaves from 24576: getting
// leaves: sqlitestore: commit log transaction: sql: transaction has already been committed or rolled back": a
// read-only transaction whose reads all succeeded, but whose context ended (the caller's per-batch timeout) before
// Commit. database/sql rolls back a transaction when the context it began with is done, and a later Commit then
// fails with sql.ErrTxDone. The transaction now lives on the store's terms; each read still honours its context.
func TestCommitAfterContextCancelled(t *testing.T) {
	t.Parallel()
	s := openTestStore(t)
	ctx := context.Background()
	tree := createTree(ctx, t, s, stestonly.LogTree, true)
	if _, err := s.LogStorage().QueueLeaves(ctx, tree, testLeaves("c", 0, 10), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := integrate(ctx, t, s, tree, 100); n != 10 {
		t.Fatalf("integrated %d leaves, want 10", n)
	}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, cancel func()) error
	}{
		{"log snapshot", func(ctx context.Context, cancel func()) error {
			tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
			if err != nil {
				return err
			}
			defer tx.Close()
			leaves, err := tx.GetLeavesByRange(ctx, 0, 10)
			if err != nil || len(leaves) != 10 {
				t.Fatalf("GetLeavesByRange: %d leaves, %v", len(leaves), err)
			}
			cancel()
			time.Sleep(50 * time.Millisecond) // database/sql rolls back from its own goroutine
			return tx.Commit(ctx)
		}},
		{"log read-write transaction that only reads", func(ctx context.Context, cancel func()) error {
			return s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
				if _, err := tx.GetLeavesByRange(ctx, 0, 10); err != nil {
					t.Fatalf("GetLeavesByRange: %v", err)
				}
				cancel()
				time.Sleep(50 * time.Millisecond)
				return nil
			})
		}},
		{"admin snapshot", func(ctx context.Context, cancel func()) error {
			tx, err := s.AdminStorage().Snapshot(ctx)
			if err != nil {
				return err
			}
			defer tx.Close()
			if _, err := tx.GetTree(ctx, tree.TreeId); err != nil {
				t.Fatalf("GetTree: %v", err)
			}
			cancel()
			time.Sleep(50 * time.Millisecond)
			return tx.Commit()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if err := tc.run(cctx, cancel); err != nil {
				t.Fatalf("commit after the reads succeeded and the context ended: %v", err)
			}
		})
	}
	// A read on a context that has ended still fails at once.
	cctx, cancel := context.WithCancel(ctx)
	tx, err := s.LogStorage().SnapshotForTree(cctx, tree)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	cancel()
	if _, err := tx.GetLeavesByRange(cctx, 0, 10); err == nil {
		t.Fatal("a read on a cancelled context succeeded")
	}
}

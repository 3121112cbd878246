package sqlitestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestUpdateTreeRejectedChangesNothing: an UpdateTree whose result is invalid,
// or a transaction that fails after a valid UpdateTree, leaves the stored tree
// exactly as it was (the memory provider gets this wrong).
func TestUpdateTreeRejectedChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	as := s.AdminStorage()

	tests := []struct {
		desc     string
		template *trillian.Tree
		run      func(treeID int64) error
	}{
		{
			desc:     "invalid state with other changes",
			template: stestonly.LogTree,
			run: func(id int64) error {
				_, err := storage.UpdateTree(ctx, as, id, func(tr *trillian.Tree) {
					tr.DisplayName = "changed"
					tr.MaxRootDuration = durationpb.New(time.Hour)
					tr.TreeState = trillian.TreeState_UNKNOWN_TREE_STATE
				})
				return err
			},
		},
		{
			desc:     "type change of an active tree",
			template: stestonly.PreorderedLogTree,
			run: func(id int64) error {
				_, err := storage.UpdateTree(ctx, as, id, func(tr *trillian.Tree) { tr.TreeType = trillian.TreeType_LOG })
				return err
			},
		},
		{
			desc:     "freeze and type change in one update",
			template: stestonly.PreorderedLogTree,
			run: func(id int64) error {
				_, err := storage.UpdateTree(ctx, as, id, func(tr *trillian.Tree) {
					tr.TreeState = trillian.TreeState_FROZEN
					tr.TreeType = trillian.TreeType_LOG
				})
				return err
			},
		},
		{
			desc:     "LOG to PREORDERED_LOG",
			template: stestonly.LogTree,
			run: func(id int64) error {
				_, err := storage.UpdateTree(ctx, as, id, func(tr *trillian.Tree) { tr.TreeType = trillian.TreeType_PREORDERED_LOG })
				return err
			},
		},
		{
			desc:     "readonly field",
			template: stestonly.LogTree,
			run: func(id int64) error {
				_, err := storage.UpdateTree(ctx, as, id, func(tr *trillian.Tree) { tr.TreeId++ })
				return err
			},
		},
		{
			desc:     "valid update in a failing transaction",
			template: stestonly.LogTree,
			run: func(id int64) error {
				return as.ReadWriteTransaction(ctx, func(ctx context.Context, tx storage.AdminTX) error {
					if _, err := tx.UpdateTree(ctx, id, func(tr *trillian.Tree) { tr.TreeState = trillian.TreeState_FROZEN }); err != nil {
						return err
					}
					if _, err := tx.SoftDeleteTree(ctx, id); err != nil {
						return err
					}
					return errors.New("abort")
				})
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := createTree(ctx, t, s, tc.template, false)
			if err := tc.run(before.TreeId); err == nil {
				t.Fatal("update succeeded, want an error")
			}
			after, err := storage.GetTree(ctx, as, before.TreeId)
			if err != nil {
				t.Fatalf("GetTree: %v", err)
			}
			if !proto.Equal(before, after) {
				t.Errorf("stored tree changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestDeleteLifecycle: soft delete hides a tree from listings and from the
// sequencer, undelete brings it back, hard delete removes every row of it
// and nothing of other trees.
func TestDeleteLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	as := s.AdminStorage()

	keep := createTree(ctx, t, s, stestonly.LogTree, true)
	doomed := createTree(ctx, t, s, stestonly.LogTree, true)
	for _, tr := range []*trillian.Tree{keep, doomed} {
		if _, err := s.LogStorage().QueueLeaves(ctx, tr, testLeaves("d", 0, 20), time.Now()); err != nil {
			t.Fatalf("QueueLeaves: %v", err)
		}
		integrate(ctx, t, s, tr, 10) // 10 integrated, 10 still queued
	}

	listed := func(includeDeleted bool) map[int64]bool {
		trees, err := storage.ListTrees(ctx, as, includeDeleted)
		if err != nil {
			t.Fatalf("ListTrees: %v", err)
		}
		m := map[int64]bool{}
		for _, tr := range trees {
			m[tr.TreeId] = true
		}
		return m
	}
	active := func() map[int64]bool {
		ids, err := s.LogStorage().GetActiveLogIDs(ctx)
		if err != nil {
			t.Fatalf("GetActiveLogIDs: %v", err)
		}
		m := map[int64]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}

	if err := storage.HardDeleteTree(ctx, as, doomed.TreeId); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("HardDeleteTree of a live tree: %v, want FailedPrecondition", err)
	}
	if _, err := storage.UndeleteTree(ctx, as, doomed.TreeId); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("UndeleteTree of a live tree: %v, want FailedPrecondition", err)
	}
	del, err := storage.SoftDeleteTree(ctx, as, doomed.TreeId)
	if err != nil || !del.Deleted || del.DeleteTime == nil {
		t.Fatalf("SoftDeleteTree = %v, %v", del, err)
	}
	if listed(false)[doomed.TreeId] || !listed(true)[doomed.TreeId] || active()[doomed.TreeId] {
		t.Error("soft-deleted tree still listed or active")
	}
	if _, err := storage.SoftDeleteTree(ctx, as, doomed.TreeId); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second SoftDeleteTree: %v, want FailedPrecondition", err)
	}
	und, err := storage.UndeleteTree(ctx, as, doomed.TreeId)
	if err != nil || und.Deleted || und.DeleteTime != nil {
		t.Fatalf("UndeleteTree = %v, %v", und, err)
	}
	if !proto.Equal(und, doomed) {
		t.Errorf("undeleted tree differs from the original:\n%v\n%v", und, doomed)
	}
	if !listed(false)[doomed.TreeId] || !active()[doomed.TreeId] {
		t.Error("undeleted tree not listed or not active")
	}

	if _, err := storage.SoftDeleteTree(ctx, as, doomed.TreeId); err != nil {
		t.Fatalf("SoftDeleteTree: %v", err)
	}
	if err := storage.HardDeleteTree(ctx, as, doomed.TreeId); err != nil {
		t.Fatalf("HardDeleteTree: %v", err)
	}
	if _, err := storage.GetTree(ctx, as, doomed.TreeId); status.Code(err) != codes.NotFound {
		t.Errorf("GetTree after hard delete: %v, want NotFound", err)
	}
	for _, table := range []string{"Trees", "TreeHead", "Subtree", "LeafData", "SequencedLeafData", "Unsequenced"} {
		if n := count(t, s, "SELECT COUNT(*) FROM "+table+" WHERE TreeId = ?", doomed.TreeId); n != 0 {
			t.Errorf("%s keeps %d rows of the hard-deleted tree", table, n)
		}
		if n := count(t, s, "SELECT COUNT(*) FROM "+table+" WHERE TreeId = ?", keep.TreeId); n == 0 {
			t.Errorf("%s lost the rows of the other tree", table)
		}
	}
	if r := latestRoot(ctx, t, s, keep); r.TreeSize != 10 {
		t.Errorf("other tree size %d, want 10", r.TreeSize)
	}
}

package sqlitestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var fakeQueueTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func leafCode(q *trillian.QueuedLogLeaf) codes.Code {
	if q.GetStatus() == nil {
		return codes.OK
	}
	return codes.Code(q.Status.Code)
}

// TestQueueLeavesDedup follows the MySQL provider's TestQueueDuplicateLeaf
// (the calls accumulate): a leaf whose identity hash is known is reported as
// AlreadyExists with the stored leaf, and is not queued twice.
func TestQueueLeavesDedup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)

	leaves := testLeaves("leaf", 10, 15)   // 10..24
	leaves2 := testLeaves("leaf", 12, 15)  // 12..26: 13 duplicates
	leaves3 := testLeaves("leaf", 100, 3)  // 100..102
	other := identityLeaf("leaf 10", "id") // same value as leaves[0], other identity

	tests := []struct {
		desc    string
		leaves  []*trillian.LogLeaf
		wantDup []*trillian.LogLeaf // nil entry: newly queued
	}{
		{desc: "fresh", leaves: leaves, wantDup: make([]*trillian.LogLeaf, 15)},
		{desc: "overlap", leaves: leaves2, wantDup: append(append([]*trillian.LogLeaf{}, leaves[2:]...), nil, nil)},
		{
			desc:    "mixed",
			leaves:  []*trillian.LogLeaf{leaves[0], leaves3[0], leaves[1], leaves3[1], leaves[2]},
			wantDup: []*trillian.LogLeaf{leaves[0], nil, leaves[1], nil, leaves[2]},
		},
		{
			desc:    "within one call",
			leaves:  []*trillian.LogLeaf{leaves3[2], leaves3[2], leaves3[0]},
			wantDup: []*trillian.LogLeaf{nil, leaves3[2], leaves3[0]},
		},
		{desc: "same value, other identity", leaves: []*trillian.LogLeaf{other}, wantDup: []*trillian.LogLeaf{nil}},
	}
	firstQueued := map[string]time.Time{}
	for i, tc := range tests {
		// Later calls are queued at later times: a duplicate must report the
		// original queue time, not its own.
		ts := fakeQueueTime.Add(time.Duration(i) * time.Second)
		got, err := s.LogStorage().QueueLeaves(ctx, tree, cloneLeaves(tc.leaves), ts)
		if err != nil {
			t.Fatalf("%s: QueueLeaves: %v", tc.desc, err)
		}
		if len(got) != len(tc.leaves) {
			t.Fatalf("%s: got %d results, want %d", tc.desc, len(got), len(tc.leaves))
		}
		for j, want := range tc.wantDup {
			q := got[j]
			if want == nil {
				if leafCode(q) != codes.OK || !bytes.Equal(q.Leaf.LeafIdentityHash, tc.leaves[j].LeafIdentityHash) {
					t.Errorf("%s[%d]: got %v, want newly queued %x", tc.desc, j, q, tc.leaves[j].LeafIdentityHash)
				}
				firstQueued[string(tc.leaves[j].LeafIdentityHash)] = ts
				continue
			}
			if leafCode(q) != codes.AlreadyExists {
				t.Errorf("%s[%d]: code %v, want AlreadyExists", tc.desc, j, leafCode(q))
				continue
			}
			if !bytes.Equal(q.Leaf.LeafIdentityHash, want.LeafIdentityHash) || !bytes.Equal(q.Leaf.LeafValue, want.LeafValue) ||
				!bytes.Equal(q.Leaf.ExtraData, want.ExtraData) || !bytes.Equal(q.Leaf.MerkleLeafHash, want.MerkleLeafHash) {
				t.Errorf("%s[%d]: existing leaf %v, want %v", tc.desc, j, q.Leaf, want)
			}
			if got, want := q.Leaf.QueueTimestamp.AsTime(), firstQueued[string(want.LeafIdentityHash)]; !got.Equal(want) {
				t.Errorf("%s[%d]: existing leaf queue time %v, want the original %v", tc.desc, j, got, want)
			}
			if q.Leaf.LeafIndex != -1 {
				t.Errorf("%s[%d]: unsequenced existing leaf has index %d, want -1", tc.desc, j, q.Leaf.LeafIndex)
			}
		}
	}
	// 15 + 2 + 3 + 1 distinct identities.
	if n := count(t, s, "SELECT COUNT(*) FROM Unsequenced WHERE TreeId = ?", tree.TreeId); n != 21 {
		t.Errorf("queue holds %d leaves, want 21", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData WHERE TreeId = ?", tree.TreeId); n != 21 {
		t.Errorf("LeafData holds %d leaves, want 21", n)
	}

	// Once integrated, a resubmission still dedups, and now reports the index.
	for integrate(ctx, t, s, tree, 100) > 0 {
	}
	got, err := s.LogStorage().QueueLeaves(ctx, tree, cloneLeaves(leaves[:1]), time.Now())
	if err != nil {
		t.Fatalf("QueueLeaves after integration: %v", err)
	}
	if leafCode(got[0]) != codes.AlreadyExists || got[0].Leaf.LeafIndex < 0 || got[0].Leaf.IntegrateTimestamp == nil {
		t.Errorf("QueueLeaves of an integrated leaf: %v, want AlreadyExists with index and integrate time", got[0])
	}
	if n := count(t, s, "SELECT COUNT(*) FROM Unsequenced WHERE TreeId = ?", tree.TreeId); n != 0 {
		t.Errorf("queue holds %d leaves after integration and a duplicate, want 0", n)
	}
}

// TestQueueLeavesConcurrent queues overlapping leaf sets from many goroutines
// at once. Exactly one caller must get OK for each identity hash, all others
// AlreadyExists, and concurrent calls must share commits.
func TestQueueLeavesConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)

	const workers, distinct, perCall = 64, 200, 20
	before := s.queue.commits.Load()
	var (
		mu      sync.Mutex
		oks     = map[string]int{}
		dups    = map[string]int{}
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    []error
		allLeaf = testLeaves("c", 0, distinct)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			<-start
			batch := make([]*trillian.LogLeaf, perCall)
			for i := range batch {
				batch[i] = proto.Clone(allLeaf[(w*7+i*13)%distinct]).(*trillian.LogLeaf)
			}
			res, err := s.LogStorage().QueueLeaves(ctx, tree, batch, time.Now())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, q := range res {
				switch leafCode(q) {
				case codes.OK:
					oks[string(q.Leaf.LeafIdentityHash)]++
				case codes.AlreadyExists:
					dups[string(q.Leaf.LeafIdentityHash)]++
				default:
					errs = append(errs, fmt.Errorf("unexpected status %v", q.Status))
				}
			}
		}(w)
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("QueueLeaves errors: %v", errors.Join(errs...))
	}
	for h, n := range oks {
		if n != 1 {
			t.Errorf("leaf %x queued %d times", h, n)
		}
	}
	queued := count(t, s, "SELECT COUNT(*) FROM Unsequenced WHERE TreeId = ?", tree.TreeId)
	if int(queued) != len(oks) {
		t.Errorf("queue holds %d leaves, %d callers got OK", queued, len(oks))
	}
	if total := len(oks) + func() int {
		n := 0
		for _, d := range dups {
			n += d
		}
		return n
	}(); total != workers*perCall {
		t.Errorf("%d results, want %d", total, workers*perCall)
	}
	commits := s.queue.commits.Load() - before
	t.Logf("%d concurrent QueueLeaves calls took %d commits", workers, commits)
	if commits >= workers {
		t.Errorf("%d concurrent calls took %d commits: not grouped", workers, commits)
	}
}

// TestQueueBatchIsolation runs one batch in which a request fails: the other
// requests of the batch still commit, the failing one stores nothing.
func TestQueueBatchIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	good := createTree(ctx, t, s, stestonly.LogTree, true)
	uninit := createTree(ctx, t, s, stestonly.LogTree, false)

	mk := func(treeID int64, leaves []*trillian.LogLeaf) *queueRequest {
		return &queueRequest{ctx: ctx, treeID: treeID, leaves: leaves, ts: fakeQueueTime, done: make(chan queueResult, 1)}
	}
	reqs := []*queueRequest{
		mk(good.TreeId, testLeaves("a", 0, 3)),
		mk(uninit.TreeId, testLeaves("b", 0, 3)),
		mk(good.TreeId, testLeaves("a", 2, 3)), // overlaps the first request
	}
	results, err := s.queue.commitLive(reqs)
	if err != nil {
		t.Fatalf("commitLive: %v", err)
	}
	if results[0].err != nil || results[2].err != nil {
		t.Fatalf("good requests failed: %v, %v", results[0].err, results[2].err)
	}
	if results[1].err != storage.ErrTreeNeedsInit {
		t.Errorf("request on uninitialised tree: %v, want ErrTreeNeedsInit", results[1].err)
	}
	if c := leafCode(results[2].leaves[0]); c != codes.AlreadyExists {
		t.Errorf("leaf queued by an earlier request of the batch: %v, want AlreadyExists", c)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM Unsequenced WHERE TreeId = ?", good.TreeId); n != 5 {
		t.Errorf("good tree queue holds %d, want 5", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData WHERE TreeId = ?", uninit.TreeId); n != 0 {
		t.Errorf("failed request left %d leaves", n)
	}
}

func TestQueueLeavesErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)
	uninit := createTree(ctx, t, s, stestonly.LogTree, false)

	bad := testLeaves("x", 0, 2)
	bad[1].LeafIdentityHash = []byte("short")
	tests := []struct {
		desc   string
		tree   *trillian.Tree
		leaves []*trillian.LogLeaf
		check  func(error) bool
	}{
		{"bad identity hash", tree, bad, func(err error) bool { return err != nil }},
		{"uninitialised tree", uninit, testLeaves("y", 0, 1), func(err error) bool { return err == storage.ErrTreeNeedsInit }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := s.LogStorage().QueueLeaves(ctx, tc.tree, tc.leaves, fakeQueueTime)
			if !tc.check(err) {
				t.Errorf("QueueLeaves: unexpected error %v", err)
			}
		})
	}
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData"); n != 0 {
		t.Errorf("rejected calls stored %d leaves", n)
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.LogStorage().QueueLeaves(ctxDone, tree, testLeaves("z", 0, 1), fakeQueueTime); !errors.Is(err, context.Canceled) {
		t.Errorf("QueueLeaves with cancelled context: %v, want context.Canceled", err)
	}
}

func dequeue(ctx context.Context, t *testing.T, s *Store, tree *trillian.Tree, limit int, cutoff time.Time) []*trillian.LogLeaf {
	t.Helper()
	var got []*trillian.LogLeaf
	// Roll back: the leaves go back to the queue.
	errRollback := errors.New("rollback")
	err := s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
		var err error
		got, err = tx.DequeueLeaves(ctx, limit, cutoff)
		if err != nil {
			return err
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatalf("ReadWriteTransaction: %v", err)
	}
	return got
}

// TestDequeueOrderAndGuard checks queue order (queue time, then identity
// hash), the guard window cutoff, limits, and that a rolled back dequeue
// leaves the queue as it was.
func TestDequeueOrderAndGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)

	late := testLeaves("late", 0, 3)
	early := testLeaves("early", 0, 3)
	future := testLeaves("future", 0, 2)
	for _, b := range []struct {
		leaves []*trillian.LogLeaf
		ts     time.Time
	}{
		{late, fakeQueueTime},
		{early, fakeQueueTime.Add(-time.Second)},
		{future, fakeQueueTime.Add(time.Hour)},
	} {
		if _, err := s.LogStorage().QueueLeaves(ctx, tree, cloneLeaves(b.leaves), b.ts); err != nil {
			t.Fatalf("QueueLeaves: %v", err)
		}
	}
	sortedIDs := func(leaves []*trillian.LogLeaf) [][]byte {
		var ids [][]byte
		for _, l := range leaves {
			ids = append(ids, l.LeafIdentityHash)
		}
		sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i], ids[j]) < 0 })
		return ids
	}
	want := append(sortedIDs(early), sortedIDs(late)...)

	tests := []struct {
		desc   string
		limit  int
		cutoff time.Time
		want   [][]byte
	}{
		{"all inside guard window", 100, fakeQueueTime.Add(-2 * time.Second), nil},
		{"early batch only", 100, fakeQueueTime.Add(-time.Second), want[:3]},
		{"cutoff inclusive", 100, fakeQueueTime, want},
		{"limit", 4, fakeQueueTime, want[:4]},
		{"everything", 100, fakeQueueTime.Add(2 * time.Hour), append(append([][]byte{}, want...), sortedIDs(future)...)},
	}
	for _, tc := range tests {
		got := dequeue(ctx, t, s, tree, tc.limit, tc.cutoff)
		if len(got) != len(tc.want) {
			t.Errorf("%s: dequeued %d leaves, want %d", tc.desc, len(got), len(tc.want))
			continue
		}
		for i, l := range got {
			if !bytes.Equal(l.LeafIdentityHash, tc.want[i]) {
				t.Errorf("%s: leaf %d is %x, want %x", tc.desc, i, l.LeafIdentityHash, tc.want[i])
			}
			if l.QueueTimestamp == nil || len(l.MerkleLeafHash) != hashSize {
				t.Errorf("%s: leaf %d lacks queue time or Merkle hash: %v", tc.desc, i, l)
			}
		}
	}

	// Two dequeues in one transaction never hand out a leaf twice; sequencing
	// the dequeued leaves takes them off the queue.
	runTX := func(f storage.LogTXFunc) {
		t.Helper()
		if err := s.LogStorage().ReadWriteTransaction(ctx, tree, f); err != nil {
			t.Fatalf("ReadWriteTransaction: %v", err)
		}
	}
	runTX(func(ctx context.Context, tx storage.LogTreeTX) error {
		a, err := tx.DequeueLeaves(ctx, 2, fakeQueueTime)
		if err != nil {
			return err
		}
		b, err := tx.DequeueLeaves(ctx, 4, fakeQueueTime)
		if err != nil {
			return err
		}
		if len(a) != 2 || len(b) != 2 {
			t.Errorf("dequeued %d then %d, want 2 then the 2 not yet handed out", len(a), len(b))
		}
		all := append(a, b...)
		for i, l := range all {
			l.LeafIndex = int64(i)
			l.IntegrateTimestamp = timestamppb.Now()
		}
		return tx.UpdateSequencedLeaves(ctx, all)
	})
	if got := dequeue(ctx, t, s, tree, 100, fakeQueueTime); len(got) != 2 {
		t.Errorf("after sequencing 4 leaves, %d are left before the cutoff, want 2", len(got))
	}

	// A leaf that was not dequeued cannot be sequenced.
	err := s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
		l := testLeaves("stranger", 0, 1)[0]
		l.IntegrateTimestamp = timestamppb.Now()
		return tx.UpdateSequencedLeaves(ctx, []*trillian.LogLeaf{l})
	})
	if err == nil {
		t.Error("UpdateSequencedLeaves of a leaf that was not dequeued succeeded")
	}
}

// TestLeavesByRangeAndHash integrates leaves through Trillian's sequencer and
// reads them back: by range (the leaves, and their hashes alone) and by hash.
func TestLeavesByRangeAndHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, true)
	empty := createTree(ctx, t, s, stestonly.LogTree, true)

	const n = 1200 // more than one IN (...) chunk
	leaves := testLeaves("r", 0, n)
	if _, err := s.LogStorage().QueueLeaves(ctx, tree, cloneLeaves(leaves), fakeQueueTime); err != nil {
		t.Fatalf("QueueLeaves: %v", err)
	}
	for integrate(ctx, t, s, tree, 500) > 0 {
	}
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != n {
		t.Fatalf("tree size %d, want %d", r.TreeSize, n)
	}
	// leafAt is each index's Merkle leaf hash, in the order the sequencer chose.
	leafAt := make(map[int64][]byte, n)

	read := func(tr *trillian.Tree, f func(tx storage.ReadOnlyLogTreeTX) error) error {
		tx, err := s.LogStorage().SnapshotForTree(ctx, tr)
		if err != nil {
			t.Fatalf("SnapshotForTree: %v", err)
		}
		defer tx.Close()
		if err := f(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := read(tree, func(tx storage.ReadOnlyLogTreeTX) error {
		all, err := tx.GetLeavesByRange(ctx, 0, n)
		for _, l := range all {
			leafAt[l.LeafIndex] = l.MerkleLeafHash
		}
		return err
	}); err != nil || len(leafAt) != n {
		t.Fatalf("reading the %d leaves: %v (%d read)", n, err, len(leafAt))
	}

	rangeTests := []struct {
		desc         string
		tree         *trillian.Tree
		start, count int64
		wantN        int
		wantCode     codes.Code
	}{
		{"whole tree", tree, 0, n, n, codes.OK},
		{"middle", tree, 500, 10, 10, codes.OK},
		{"clipped at tree size", tree, n - 5, 100, 5, codes.OK},
		{"start at size", tree, n, 1, 0, codes.OutOfRange},
		{"empty tree", empty, 0, 1, 0, codes.OutOfRange},
		{"zero count", tree, 0, 0, 0, codes.InvalidArgument},
		{"negative start", tree, -1, 1, 0, codes.InvalidArgument},
	}
	for _, tc := range rangeTests {
		err := read(tc.tree, func(tx storage.ReadOnlyLogTreeTX) error {
			got, err := tx.GetLeavesByRange(ctx, tc.start, tc.count)
			if err != nil {
				return err
			}
			if len(got) != tc.wantN {
				t.Errorf("%s: %d leaves, want %d", tc.desc, len(got), tc.wantN)
			}
			for i, l := range got {
				if l.LeafIndex != tc.start+int64(i) {
					t.Errorf("%s: leaf %d has index %d", tc.desc, i, l.LeafIndex)
				}
				if l.QueueTimestamp == nil || l.IntegrateTimestamp == nil || len(l.ExtraData) == 0 {
					t.Errorf("%s: leaf %d incomplete: %v", tc.desc, i, l)
				}
			}
			return nil
		})
		if c := status.Code(err); c != tc.wantCode {
			t.Errorf("%s: error %v, want code %v", tc.desc, err, tc.wantCode)
		}
		// The hashes alone, as a proof reads them, are those of the same leaves; none from the size on.
		got, err := s.LeafHashesByRange(ctx, tc.tree, tc.start, tc.count)
		wantCode := tc.wantCode
		if wantCode == codes.OutOfRange {
			wantCode = codes.OK
		}
		if c := status.Code(err); c != wantCode {
			t.Errorf("%s: LeafHashesByRange error %v, want code %v", tc.desc, err, wantCode)
		}
		if len(got) != tc.wantN {
			t.Errorf("%s: %d leaf hashes, want %d", tc.desc, len(got), tc.wantN)
		}
		for i := range got {
			if want := leafAt[tc.start+int64(i)]; !bytes.Equal(got[i], want) {
				t.Errorf("%s: leaf hash %d is %x, want the leaf's, %x", tc.desc, i, got[i], want)
			}
		}
	}

	// A leaf's index by hash, as a proof of it finds it: each leaf's, none for an unknown hash, none in another tree.
	for i := int64(0); i < n; i += 97 {
		if got, ok, err := s.LeafIndexByHash(ctx, tree, leafAt[i]); err != nil || !ok || got != i {
			t.Errorf("LeafIndexByHash(leaf %d) = %d, %v, %v", i, got, ok, err)
		}
		if _, ok, err := s.LeafIndexByHash(ctx, empty, leafAt[i]); err != nil || ok {
			t.Errorf("LeafIndexByHash(leaf %d) in the empty tree = %v, %v; want none", i, ok, err)
		}
	}
	if _, ok, err := s.LeafIndexByHash(ctx, tree, bytes.Repeat([]byte{7}, hashSize)); err != nil || ok {
		t.Errorf("LeafIndexByHash(unknown) = %v, %v; want none", ok, err)
	}

	// By hash: all of them (chunked), ordered, with an unknown hash mixed in.
	hashes := [][]byte{bytes.Repeat([]byte{7}, hashSize)}
	for i := n - 1; i >= 0; i-- {
		hashes = append(hashes, leaves[i].MerkleLeafHash)
	}
	if err := read(tree, func(tx storage.ReadOnlyLogTreeTX) error {
		got, err := tx.GetLeavesByHash(ctx, hashes, true)
		if err != nil {
			return err
		}
		if len(got) != n {
			t.Fatalf("GetLeavesByHash: %d leaves, want %d", len(got), n)
		}
		for i, l := range got {
			if l.LeafIndex != int64(i) {
				t.Fatalf("GetLeavesByHash ordered: leaf %d has index %d", i, l.LeafIndex)
			}
		}
		none, err := tx.GetLeavesByHash(ctx, hashes[:1], false)
		if err != nil || len(none) != 0 {
			t.Errorf("GetLeavesByHash(unknown) = %v, %v; want nothing", none, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The stored values are what was queued, in the order the sequencer chose.
	if err := read(tree, func(tx storage.ReadOnlyLogTreeTX) error {
		got, err := tx.GetLeavesByRange(ctx, 0, n)
		if err != nil {
			return err
		}
		var hs [][]byte
		seen := map[string]bool{}
		for _, l := range got {
			hs = append(hs, l.MerkleLeafHash)
			seen[string(l.LeafValue)] = true
		}
		if len(seen) != n {
			t.Errorf("%d distinct values read back, want %d", len(seen), n)
		}
		if r := latestRoot(ctx, t, s, tree); !bytes.Equal(r.RootHash, merkleRoot(t, hs)) {
			t.Errorf("root %x does not match the leaves (%x)", r.RootHash, merkleRoot(t, hs))
		}
		return nil
	}); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
}

func TestGetActiveLogIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	as := s.AdminStorage()

	mk := func(template *trillian.Tree, state trillian.TreeState, deleted bool) int64 {
		tree := createTree(ctx, t, s, template, false)
		var err error
		switch state {
		case trillian.TreeState_FROZEN, trillian.TreeState_DRAINING:
			tree, err = storage.UpdateTree(ctx, as, tree.TreeId, func(tr *trillian.Tree) { tr.TreeState = state })
			if err != nil {
				t.Fatalf("UpdateTree: %v", err)
			}
		}
		if deleted {
			if _, err := storage.SoftDeleteTree(ctx, as, tree.TreeId); err != nil {
				t.Fatalf("SoftDeleteTree: %v", err)
			}
		}
		return tree.TreeId
	}
	if ids, err := s.LogStorage().GetActiveLogIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("GetActiveLogIDs on an empty store = %v, %v", ids, err)
	}
	want := []int64{
		mk(stestonly.LogTree, trillian.TreeState_ACTIVE, false),
		mk(stestonly.PreorderedLogTree, trillian.TreeState_ACTIVE, false),
		mk(stestonly.LogTree, trillian.TreeState_DRAINING, false),
		mk(stestonly.PreorderedLogTree, trillian.TreeState_DRAINING, false),
	}
	mk(stestonly.LogTree, trillian.TreeState_FROZEN, false)
	mk(stestonly.PreorderedLogTree, trillian.TreeState_FROZEN, false)
	mk(stestonly.LogTree, trillian.TreeState_ACTIVE, true)
	got, err := s.LogStorage().GetActiveLogIDs(ctx)
	if err != nil {
		t.Fatalf("GetActiveLogIDs: %v", err)
	}
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GetActiveLogIDs = %v, want %v", got, want)
	}
}

// TestSignedLogRoots: the latest root is the one with the newest timestamp;
// two roots in one transaction and roots with metadata are refused; a tree
// without a root reports ErrTreeNeedsInit with an open snapshot.
func TestSignedLogRoots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	tree := createTree(ctx, t, s, stestonly.LogTree, false)

	tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
	if err != storage.ErrTreeNeedsInit || tx == nil {
		t.Fatalf("SnapshotForTree of an uninitialised tree = %v, %v; want a transaction and ErrTreeNeedsInit", tx, err)
	}
	if _, err := tx.LatestSignedLogRoot(ctx); err != storage.ErrTreeNeedsInit {
		t.Errorf("LatestSignedLogRoot = %v, want ErrTreeNeedsInit", err)
	}
	if err := tx.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	hash := bytes.Repeat([]byte{1}, 32)
	r1 := &types.LogRootV1{TimestampNanos: 98765, TreeSize: 16, RootHash: hash}
	r2 := &types.LogRootV1{TimestampNanos: 98766, TreeSize: 16, RootHash: hash}
	storeRoot(ctx, t, s, tree, r1)
	storeRoot(ctx, t, s, tree, r2)
	if got := latestRoot(ctx, t, s, tree); got.TimestampNanos != r2.TimestampNanos {
		t.Errorf("latest root timestamp %d, want %d", got.TimestampNanos, r2.TimestampNanos)
	}

	tests := []struct {
		desc  string
		roots []*types.LogRootV1
	}{
		{"two roots in one transaction", []*types.LogRootV1{{TimestampNanos: 200000, RootHash: hash}, {TimestampNanos: 200001, RootHash: hash}}},
		{"metadata", []*types.LogRootV1{{TimestampNanos: 300000, RootHash: hash, Metadata: []byte("m")}}},
		{"same timestamp as a stored root", []*types.LogRootV1{{TimestampNanos: 98766, RootHash: hash}}},
	}
	for _, tc := range tests {
		err := s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
			for _, r := range tc.roots {
				b, err := r.MarshalBinary()
				if err != nil {
					return err
				}
				if err := tx.StoreSignedLogRoot(ctx, &trillian.SignedLogRoot{LogRoot: b}); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			t.Errorf("%s: stored", tc.desc)
		}
	}
	if got := latestRoot(ctx, t, s, tree); got.TimestampNanos != r2.TimestampNanos {
		t.Errorf("after refused writes, latest root timestamp %d, want %d", got.TimestampNanos, r2.TimestampNanos)
	}
}

package sqlitestore

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/extension"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/server"
	"github.com/google/trillian/server/admin"
	"github.com/google/trillian/server/interceptor"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/util/clock"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// trillianEnv is an in-process Trillian log and admin server on a Store,
// reached over an in-memory gRPC connection. Sequencing is left to the test
// (integrate), so that it is deterministic.
type trillianEnv struct {
	log   trillian.TrillianLogClient
	admin trillian.TrillianAdminClient
}

func newTrillianEnv(t *testing.T, s *Store) *trillianEnv {
	t.Helper()
	reg := extension.Registry{AdminStorage: s.AdminStorage(), LogStorage: s.LogStorage(), QuotaManager: quota.Noop()}
	gs := grpc.NewServer(grpc.UnaryInterceptor(interceptor.ErrorWrapper))
	trillian.RegisterTrillianLogServer(gs, server.NewTrillianLogRPCServer(reg, clock.System))
	trillian.RegisterTrillianAdminServer(gs, admin.New(reg, nil))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		gs.Stop()
	})
	return &trillianEnv{log: trillian.NewTrillianLogClient(cc), admin: trillian.NewTrillianAdminClient(cc)}
}

func (e *trillianEnv) createTree(ctx context.Context, t *testing.T, template *trillian.Tree) *trillian.Tree {
	t.Helper()
	tree, err := e.admin.CreateTree(ctx, &trillian.CreateTreeRequest{Tree: proto.Clone(template).(*trillian.Tree)})
	if err != nil {
		t.Fatalf("CreateTree: %v", err)
	}
	if _, err := e.log.InitLog(ctx, &trillian.InitLogRequest{LogId: tree.TreeId}); err != nil {
		t.Fatalf("InitLog: %v", err)
	}
	return tree
}

func (e *trillianEnv) addSequenced(ctx context.Context, t *testing.T, treeID int64, leaves []*trillian.LogLeaf) []*trillian.QueuedLogLeaf {
	t.Helper()
	// The server fills in the hashes; send only what a client sends.
	req := &trillian.AddSequencedLeavesRequest{LogId: treeID}
	for _, l := range leaves {
		req.Leaves = append(req.Leaves, &trillian.LogLeaf{LeafValue: l.LeafValue, ExtraData: l.ExtraData, LeafIndex: l.LeafIndex})
	}
	resp, err := e.log.AddSequencedLeaves(ctx, req)
	if err != nil {
		t.Fatalf("AddSequencedLeaves: %v", err)
	}
	return resp.Results
}

// getTree reads the tree as the sequencer would (from admin storage).
func getTree(ctx context.Context, t *testing.T, s *Store, id int64) *trillian.Tree {
	t.Helper()
	tree, err := storage.GetTree(ctx, s.AdminStorage(), id)
	if err != nil {
		t.Fatalf("GetTree: %v", err)
	}
	return tree
}

func integrateAll(ctx context.Context, t *testing.T, s *Store, tree *trillian.Tree) {
	t.Helper()
	for integrate(ctx, t, s, tree, 1000) > 0 {
	}
}

func hashesOf(leaves []*trillian.LogLeaf) [][]byte {
	hs := make([][]byte, len(leaves))
	for i, l := range leaves {
		hs[i] = l.MerkleLeafHash
	}
	return hs
}

func pending(ctx context.Context, t *testing.T, s *Store, treeID int64) int64 {
	t.Helper()
	n, err := s.PendingSequencedLeaves(ctx, treeID)
	if err != nil {
		t.Fatalf("PendingSequencedLeaves: %v", err)
	}
	return n
}

// TestPreorderedContiguousBatches: leaves written in contiguous batches are
// integrated, and the root equals both an independent RFC 6962 computation
// and the root of a LOG tree holding the same leaves in the same order.
func TestPreorderedContiguousBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	pre := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	logTree := env.createTree(ctx, t, stestonly.LogTree)

	leaves := testLeaves("p", 0, 300)
	for start := 0; start < len(leaves); start += 100 {
		for i, r := range env.addSequenced(ctx, t, pre.TreeId, leaves[start:start+100]) {
			if leafCode(r) != codes.OK {
				t.Fatalf("leaf %d: %v", start+i, r.Status)
			}
		}
	}
	if r := latestRoot(ctx, t, s, pre); r.TreeSize != 0 {
		t.Fatalf("size %d before integration, want 0: only the sequencer moves a preordered tree", r.TreeSize)
	}
	if n := pending(ctx, t, s, pre.TreeId); n != 300 {
		t.Errorf("pending = %d, want 300", n)
	}
	integrateAll(ctx, t, s, pre)
	preRoot := latestRoot(ctx, t, s, pre)
	if preRoot.TreeSize != 300 {
		t.Fatalf("integrated size %d, want 300", preRoot.TreeSize)
	}
	if n := pending(ctx, t, s, pre.TreeId); n != 0 {
		t.Errorf("pending after integration = %d, want 0", n)
	}
	if want := merkleRoot(t, hashesOf(leaves)); !bytes.Equal(preRoot.RootHash, want) {
		t.Errorf("preordered root %x, want %x", preRoot.RootHash, want)
	}

	// The LOG tree orders a batch by identity hash, so queue one leaf per call
	// with increasing times to get the same order.
	base := time.Now().Add(-time.Hour)
	for i, l := range leaves {
		if _, err := s.LogStorage().QueueLeaves(ctx, logTree, cloneLeaves([]*trillian.LogLeaf{l}), base.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatalf("QueueLeaves: %v", err)
		}
	}
	integrateAll(ctx, t, s, logTree)
	if logRoot := latestRoot(ctx, t, s, logTree); logRoot.TreeSize != 300 || !bytes.Equal(logRoot.RootHash, preRoot.RootHash) {
		t.Errorf("LOG tree of the same leaves: size %d root %x, want 300 and %x", logRoot.TreeSize, logRoot.RootHash, preRoot.RootHash)
	}

	// Proofs served from the stored tiles check out.
	proof, err := env.log.GetInclusionProof(ctx, &trillian.GetInclusionProofRequest{LogId: pre.TreeId, LeafIndex: 123, TreeSize: 300})
	if err != nil || len(proof.Proof.Hashes) == 0 {
		t.Fatalf("GetInclusionProof = %v, %v", proof, err)
	}
}

// TestPreorderedConflicts: per-leaf statuses as the MySQL provider gives them,
// while the RPC itself succeeds; conflicting leaves leave no trace.
func TestPreorderedConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)

	base := testLeaves("base", 0, 5) // 0..4
	env.addSequenced(ctx, t, tree.TreeId, base)

	intruder := testLeaves("intruder", 4, 1)[0] // a new value at the taken index 4
	batch := []*trillian.LogLeaf{base[3], intruder}
	batch = append(batch, testLeaves("next", 5, 3)...) // 5..7
	batch[0].LeafIndex = 3
	got := env.addSequenced(ctx, t, tree.TreeId, batch)
	want := []struct {
		code codes.Code
		msg  string
	}{
		{codes.FailedPrecondition, "conflicting LeafIdentityHash"},
		{codes.FailedPrecondition, "conflicting LeafIndex"},
		{codes.OK, "OK"},
		{codes.OK, "OK"},
		{codes.OK, "OK"},
	}
	for i, w := range want {
		if leafCode(got[i]) != w.code || got[i].GetStatus().GetMessage() != w.msg {
			t.Errorf("leaf %d: status %v, want %v %q", i, got[i].Status, w.code, w.msg)
		}
	}
	// The same value at another index is a conflicting identity hash too.
	moved := testLeaves("base", 0, 1)[0]
	moved.LeafIndex = 8
	if r := env.addSequenced(ctx, t, tree.TreeId, []*trillian.LogLeaf{moved}); r[0].GetStatus().GetMessage() != "conflicting LeafIdentityHash" {
		t.Errorf("known value at a new index: %v, want conflicting LeafIdentityHash", r[0].Status)
	}
	// The refused intruder left nothing behind: it can be stored at a free index.
	intruder.LeafIndex = 8
	if r := env.addSequenced(ctx, t, tree.TreeId, []*trillian.LogLeaf{intruder}); leafCode(r[0]) != codes.OK {
		t.Errorf("refused leaf stored later at a free index: %v, want OK", r[0].Status)
	}

	integrateAll(ctx, t, s, getTree(ctx, t, s, tree.TreeId))
	all := append(append(append([]*trillian.LogLeaf{}, base...), batch[2:]...), intruder)
	r := latestRoot(ctx, t, s, tree)
	if r.TreeSize != 9 || !bytes.Equal(r.RootHash, merkleRoot(t, hashesOf(all))) {
		t.Errorf("size %d root %x, want 9 and %x", r.TreeSize, r.RootHash, merkleRoot(t, hashesOf(all)))
	}
	resp, err := env.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: tree.TreeId, StartIndex: 4, Count: 1})
	if err != nil || len(resp.Leaves) != 1 || !bytes.Equal(resp.Leaves[0].LeafValue, base[4].LeafValue) {
		t.Errorf("leaf 4 = %v, %v; want the original", resp, err)
	}

	// Storage-level checks the server's validation would hide.
	bad := testLeaves("bad", 20, 2)
	bad[1].LeafIdentityHash = []byte{1, 2, 3}
	if _, err := s.LogStorage().AddSequencedLeaves(ctx, tree, bad, time.Now()); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("AddSequencedLeaves with a short hash: %v, want FailedPrecondition", err)
	}
	neg := testLeaves("neg", 0, 1)
	neg[0].LeafIndex = -1
	res, err := s.LogStorage().AddSequencedLeaves(ctx, tree, neg, time.Now())
	if err != nil || leafCode(res[0]) != codes.OutOfRange {
		t.Errorf("AddSequencedLeaves at -1 = %v, %v; want OutOfRange", res, err)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData WHERE TreeId = ?", tree.TreeId); n != 9 {
		t.Errorf("LeafData holds %d leaves, want 9", n)
	}
}

// TestPreorderedGap: leaves past a gap are stored but not integrated until
// the gap is filled.
func TestPreorderedGap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	leaves := testLeaves("g", 0, 15)

	env.addSequenced(ctx, t, tree.TreeId, leaves[:5])
	env.addSequenced(ctx, t, tree.TreeId, leaves[10:])
	integrateAll(ctx, t, s, tree)
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != 5 || !bytes.Equal(r.RootHash, merkleRoot(t, hashesOf(leaves[:5]))) {
		t.Fatalf("size %d with a gap at 5, want 5 and the root of the first 5", r.TreeSize)
	}
	if n := integrate(ctx, t, s, tree, 1000); n != 0 {
		t.Errorf("another pass integrated %d leaves across the gap", n)
	}
	if n := pending(ctx, t, s, tree.TreeId); n != 5 {
		t.Errorf("pending = %d, want 5 (past the gap)", n)
	}
	// The storage serves stored leaves past the size up to the first gap only.
	tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
	if err != nil {
		t.Fatalf("SnapshotForTree: %v", err)
	}
	got, err := tx.GetLeavesByRange(ctx, 0, 100)
	if err != nil || len(got) != 5 {
		t.Errorf("GetLeavesByRange(0, 100) = %d leaves, %v; want 5", len(got), err)
	}
	got, err = tx.GetLeavesByRange(ctx, 10, 100)
	if err != nil || len(got) != 5 {
		t.Errorf("GetLeavesByRange(10, 100) = %d leaves, %v; want the 5 stored past the gap", len(got), err)
	}
	_ = tx.Close()

	env.addSequenced(ctx, t, tree.TreeId, leaves[5:10])
	integrateAll(ctx, t, s, tree)
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != 15 || !bytes.Equal(r.RootHash, merkleRoot(t, hashesOf(leaves))) {
		t.Errorf("after filling the gap: size %d root %x, want 15 and %x", r.TreeSize, r.RootHash, merkleRoot(t, hashesOf(leaves)))
	}
	if n := pending(ctx, t, s, tree.TreeId); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// TestPromote turns an integrated PREORDERED_LOG tree into a LOG tree the way
// sigsumctl promote does, through the admin API: freeze, change the type while
// frozen, unfreeze, each a separate update. Queueing and sequencing then go on
// from the preordered leaves, and known leaves are deduplicated.
func TestPromote(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	pre := testLeaves("promote", 0, 50)
	env.addSequenced(ctx, t, tree.TreeId, pre)
	integrateAll(ctx, t, s, getTree(ctx, t, s, tree.TreeId))
	if n := pending(ctx, t, s, tree.TreeId); n != 0 {
		t.Fatalf("pending = %d before promotion, want 0", n)
	}

	update := func(mutate func(*trillian.Tree), paths ...string) (*trillian.Tree, error) {
		tr := proto.Clone(getTree(ctx, t, s, tree.TreeId)).(*trillian.Tree)
		mutate(tr)
		return env.admin.UpdateTree(ctx, &trillian.UpdateTreeRequest{Tree: tr, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	}
	// Shortcuts are refused.
	if _, err := update(func(tr *trillian.Tree) { tr.TreeType = trillian.TreeType_LOG }, "tree_type"); err == nil {
		t.Fatal("type change of an active tree accepted")
	}
	if _, err := update(func(tr *trillian.Tree) {
		tr.TreeType = trillian.TreeType_LOG
		tr.TreeState = trillian.TreeState_FROZEN
	}, "tree_type", "tree_state"); err == nil {
		t.Fatal("freeze and type change in one update accepted")
	}
	steps := []struct {
		desc   string
		mutate func(*trillian.Tree)
		path   string
	}{
		{"freeze", func(tr *trillian.Tree) { tr.TreeState = trillian.TreeState_FROZEN }, "tree_state"},
		{"type", func(tr *trillian.Tree) { tr.TreeType = trillian.TreeType_LOG }, "tree_type"},
		{"unfreeze", func(tr *trillian.Tree) { tr.TreeState = trillian.TreeState_ACTIVE }, "tree_state"},
	}
	for _, st := range steps {
		if _, err := update(st.mutate, st.path); err != nil {
			t.Fatalf("%s: %v", st.desc, err)
		}
	}
	promoted := getTree(ctx, t, s, tree.TreeId)
	if promoted.TreeType != trillian.TreeType_LOG || promoted.TreeState != trillian.TreeState_ACTIVE {
		t.Fatalf("promoted tree is %v %v", promoted.TreeType, promoted.TreeState)
	}

	// A preordered leaf resubmitted is a duplicate; new leaves go on at 50.
	resp, err := env.log.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: tree.TreeId, Leaf: &trillian.LogLeaf{LeafValue: pre[7].LeafValue}})
	if err != nil || leafCode(resp.QueuedLeaf) != codes.AlreadyExists || resp.QueuedLeaf.Leaf.LeafIndex != 7 {
		t.Errorf("QueueLeaf of a preordered leaf = %v, %v; want AlreadyExists at 7", resp, err)
	}
	more := testLeaves("after", 0, 20)
	for _, l := range more {
		resp, err := env.log.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: tree.TreeId, Leaf: &trillian.LogLeaf{LeafValue: l.LeafValue}})
		if err != nil || leafCode(resp.QueuedLeaf) != codes.OK {
			t.Fatalf("QueueLeaf = %v, %v", resp, err)
		}
	}
	integrateAll(ctx, t, s, promoted)
	r := latestRoot(ctx, t, s, promoted)
	if r.TreeSize != 70 {
		t.Fatalf("size after promotion and 20 new leaves: %d, want 70", r.TreeSize)
	}
	lr, err := env.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: tree.TreeId, StartIndex: 0, Count: 70})
	if err != nil || len(lr.Leaves) != 70 {
		t.Fatalf("GetLeavesByRange = %v, %v", lr, err)
	}
	if !bytes.Equal(r.RootHash, merkleRoot(t, hashesOf(lr.Leaves))) {
		t.Error("root does not match the leaves")
	}
	for i := range pre {
		if !bytes.Equal(lr.Leaves[i].LeafValue, pre[i].LeafValue) {
			t.Fatalf("leaf %d changed by promotion", i)
		}
	}
	// A preordered write to the promoted tree is refused by the server.
	if _, err := env.log.AddSequencedLeaves(ctx, &trillian.AddSequencedLeavesRequest{LogId: tree.TreeId,
		Leaves: []*trillian.LogLeaf{{LeafValue: []byte("late"), LeafIndex: 70}}}); err == nil {
		t.Error("AddSequencedLeaves on the promoted LOG tree accepted")
	}
}

// TestSequencerDequeuesHashesOnly: the sequencer's storage dequeues a preordered tree's stored leaves as index and
// hashes, up to the first gap; LogStorage dequeues whole leaves, as the MySQL provider does.
func TestSequencerDequeuesHashesOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	leaves := testLeaves("h", 0, 12)
	env.addSequenced(ctx, t, tree.TreeId, leaves[:8])
	env.addSequenced(ctx, t, tree.TreeId, leaves[9:]) // a gap at 8

	for _, c := range []struct {
		name   string
		st     storage.LogStorage
		values bool
	}{
		{"sequencer", s.SequencerLogStorage(), false},
		{"log", s.LogStorage(), true},
	} {
		var got []*trillian.LogLeaf
		err := c.st.ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
			var err error
			got, err = tx.DequeueLeaves(ctx, 100, time.Now())
			return err
		})
		if err != nil {
			t.Fatalf("%s: DequeueLeaves: %v", c.name, err)
		}
		if len(got) != 8 {
			t.Fatalf("%s: dequeued %d leaves, want the 8 before the gap", c.name, len(got))
		}
		for i, l := range got {
			want := leaves[i]
			if l.LeafIndex != int64(i) || !bytes.Equal(l.MerkleLeafHash, want.MerkleLeafHash) ||
				!bytes.Equal(l.LeafIdentityHash, want.LeafIdentityHash) {
				t.Errorf("%s: leaf %d: index %d hashes %x %x, want %d %x %x", c.name, i, l.LeafIndex,
					l.MerkleLeafHash, l.LeafIdentityHash, i, want.MerkleLeafHash, want.LeafIdentityHash)
			}
			if hasValue := len(l.LeafValue) > 0; hasValue != c.values {
				t.Errorf("%s: leaf %d has a value: %v, want %v", c.name, i, hasValue, c.values)
			}
		}
	}
}

// TestInsertOrder: a batch is stored in identity hash order, leaves with one hash in their given order, and a
// batch whose indices do not strictly increase in the given order.
func TestInsertOrder(t *testing.T) {
	t.Parallel()
	leaf := func(index int64, hash byte) *trillian.LogLeaf {
		return &trillian.LogLeaf{LeafIndex: index, LeafIdentityHash: bytes.Repeat([]byte{hash}, 32)}
	}
	for _, c := range []struct {
		name   string
		leaves []*trillian.LogLeaf
		want   []int
	}{
		{"by hash", []*trillian.LogLeaf{leaf(0, 9), leaf(1, 3), leaf(2, 7)}, []int{1, 2, 0}},
		{"same hash keeps order", []*trillian.LogLeaf{leaf(0, 5), leaf(1, 2), leaf(2, 5), leaf(3, 5)}, []int{1, 0, 2, 3}},
		{"repeated index", []*trillian.LogLeaf{leaf(4, 9), leaf(4, 1)}, []int{0, 1}},
		{"decreasing index", []*trillian.LogLeaf{leaf(5, 9), leaf(3, 1)}, []int{0, 1}},
		{"empty", nil, []int{}},
	} {
		if got := insertOrder(c.leaves); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: insertOrder = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPreorderedConflictsLargeAndRepeated: conflicts in a large batch (stored in identity hash order, reported in
// the given order), and a batch that repeats an identity hash: the first leaf with the hash loses its taken index
// and leaves no trace, so the second one, at a free index, is stored.
func TestPreorderedConflictsLargeAndRepeated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)

	known := testLeaves("known", 0, 1)[0]
	taker := testLeaves("taker", 1000+450, 1)[0]
	env.addSequenced(ctx, t, tree.TreeId, []*trillian.LogLeaf{known})
	env.addSequenced(ctx, t, tree.TreeId, []*trillian.LogLeaf{taker})

	batch := testLeaves("large", 1000, 600)
	batch[300] = testLeaves("known", 0, 1)[0]
	batch[300].LeafIndex = 1300
	got, err := s.LogStorage().AddSequencedLeaves(ctx, tree, batch, time.Now())
	if err != nil {
		t.Fatalf("AddSequencedLeaves: %v", err)
	}
	for i, r := range got {
		want := "OK"
		switch i {
		case 300:
			want = "conflicting LeafIdentityHash"
		case 450:
			want = "conflicting LeafIndex"
		}
		if r.GetStatus().GetMessage() != want {
			t.Errorf("leaf %d: %v, want %q", i, r.GetStatus(), want)
		}
	}
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData WHERE TreeId = ? AND LeafIdentityHash = ?", tree.TreeId,
		batch[450].LeafIdentityHash); n != 0 {
		t.Errorf("the leaf refused for its index left %d LeafData rows", n)
	}

	x := testLeaves("twice", 1450, 1)[0] // index 1450 is taken
	y := testLeaves("twice", 1450, 1)[0]
	y.LeafIndex = 2000
	got, err = s.LogStorage().AddSequencedLeaves(ctx, tree, []*trillian.LogLeaf{x, y}, time.Now())
	if err != nil {
		t.Fatalf("AddSequencedLeaves: %v", err)
	}
	if got[0].GetStatus().GetMessage() != "conflicting LeafIndex" || leafCode(got[1]) != codes.OK {
		t.Errorf("one hash twice, first at a taken index: %v, %v; want conflicting LeafIndex, then OK", got[0].Status, got[1].Status)
	}
}

// TestPreorderedBulk: the paths of AddSequencedLeaves. A clean batch (several bulk statements long) is stored in
// bulk; one that repeats a leaf or reaches a taken index goes leaf by leaf at once; one with a leaf known at another
// index, which only the inserts find, is rolled back and stored leaf by leaf. Each gives the per-leaf results of
// the MySQL provider, and what is stored is exactly the leaves that answered OK.
func TestPreorderedBulk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	store := func(leaves []*trillian.LogLeaf) []*trillian.QueuedLogLeaf {
		t.Helper()
		res, err := s.LogStorage().AddSequencedLeaves(ctx, tree, leaves, time.Now())
		if err != nil {
			t.Fatalf("AddSequencedLeaves: %v", err)
		}
		return res
	}
	paths := func() (int64, int64) { return s.bulkStores.Load(), s.bulkConflicts.Load() }
	wantResults := func(name string, got []*trillian.QueuedLogLeaf, bad map[int]string) {
		t.Helper()
		for i, r := range got {
			want, ok := bad[i]
			if !ok {
				want = "OK"
			}
			if r.GetStatus().GetMessage() != want || (want == "OK") != (leafCode(r) == codes.OK) {
				t.Errorf("%s: leaf %d: %v, want %q", name, i, r.GetStatus(), want)
			}
		}
	}

	clean := testLeaves("clean", 0, 2*bulkRows+44)
	wantResults("clean", store(clean), nil)
	if b, c := paths(); b != 1 || c != 0 {
		t.Fatalf("clean batch: %d bulk stores, %d conflicts; want 1, 0", b, c)
	}

	repeated := testLeaves("repeated", 1000, 10)
	repeated[7] = testLeaves("repeated", 1002, 1)[0]
	repeated[7].LeafIndex = 1007
	wantResults("repeated", store(repeated), map[int]string{7: "conflicting LeafIdentityHash"})
	overlapping := testLeaves("overlap", 2000, 10)
	overlapping = append(testLeaves("clean", 298, 2), overlapping...) // 298, 299: stored above, at their own index
	overlapping[1].LeafIndex = 1999
	wantResults("overlapping", store(overlapping), map[int]string{0: "conflicting LeafIdentityHash", 1: "conflicting LeafIdentityHash"})
	if b, c := paths(); b != 1 || c != 0 {
		t.Fatalf("after the repeated and overlapping batches: %d bulk stores, %d conflicts; want 1, 0", b, c)
	}

	moved := testLeaves("late", 3000, 200)
	moved[150] = testLeaves("clean", 5, 1)[0]
	moved[150].LeafIndex = 3150
	wantResults("moved", store(moved), map[int]string{150: "conflicting LeafIdentityHash"})
	if b, c := paths(); b != 1 || c != 1 {
		t.Fatalf("after a batch with a known leaf at a new index: %d bulk stores, %d conflicts; want 1, 1", b, c)
	}

	// Exactly the leaves that answered OK are stored, each once and at its index.
	stored := append(append(append([]*trillian.LogLeaf{}, clean...), repeated[:7]...), repeated[8:]...)
	stored = append(append(stored, overlapping[2:]...), moved[:150]...)
	stored = append(stored, moved[151:]...)
	if n := count(t, s, "SELECT COUNT(*) FROM LeafData WHERE TreeId = ?", tree.TreeId); n != int64(len(stored)) {
		t.Errorf("LeafData holds %d leaves, want %d", n, len(stored))
	}
	if n := count(t, s, "SELECT COUNT(*) FROM SequencedLeafData WHERE TreeId = ?", tree.TreeId); n != int64(len(stored)) {
		t.Errorf("SequencedLeafData holds %d leaves, want %d", n, len(stored))
	}
	for _, l := range stored {
		if n := count(t, s, `SELECT COUNT(*) FROM LeafData l JOIN SequencedLeafData q ON q.TreeId = l.TreeId
			AND q.SequenceNumber = l.SequenceNumber AND q.LeafIdentityHash = l.LeafIdentityHash
			WHERE l.TreeId = ? AND l.LeafIdentityHash = ? AND l.SequenceNumber = ? AND l.LeafValue = ?
			AND l.ExtraData = ? AND q.MerkleLeafHash = ?`,
			tree.TreeId, l.LeafIdentityHash, l.LeafIndex, l.LeafValue, l.ExtraData, l.MerkleLeafHash); n != 1 {
			t.Fatalf("leaf %d (%q) is stored %d times as given", l.LeafIndex, l.LeafValue, n)
		}
	}
	integrateAll(ctx, t, s, getTree(ctx, t, s, tree.TreeId))
	if r := latestRoot(ctx, t, s, tree); r.TreeSize != uint64(len(clean)) ||
		!bytes.Equal(r.RootHash, merkleRoot(t, hashesOf(clean))) {
		t.Errorf("integrated size %d root %x, want %d and the clean batch's root (a gap follows it)", r.TreeSize,
			r.RootHash, len(clean))
	}
}

// TestDirectReadsStopAtTheRoot: a preordered tree's leaves stored ahead of its root are not integrated, and the
// direct reads a proof makes (hashes by range, index by hash) do not see them until the sequencer integrates them.
func TestDirectReadsStopAtTheRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openTestStore(t)
	env := newTrillianEnv(t, s)
	tree := env.createTree(ctx, t, stestonly.PreorderedLogTree)
	leaves := testLeaves("ahead", 0, 40)
	env.addSequenced(ctx, t, tree.TreeId, leaves)

	if hs, err := s.LeafHashesByRange(ctx, tree, 0, 40); err != nil || len(hs) != 0 {
		t.Errorf("before integration: LeafHashesByRange = %d hashes, %v; want none", len(hs), err)
	}
	if _, ok, err := s.LeafIndexByHash(ctx, tree, leaves[3].MerkleLeafHash); err != nil || ok {
		t.Errorf("before integration: LeafIndexByHash = %v, %v; want none", ok, err)
	}
	if vs, err := s.LeafValuesByRange(ctx, tree, 0, 40); err != nil || len(vs) != 0 {
		t.Errorf("before integration: LeafValuesByRange = %d values, %v; want none", len(vs), err)
	}
	integrateAll(ctx, t, s, tree)
	for _, c := range []struct{ start, count, want int64 }{{0, 1, 1}, {10, 100, 30}, {39, 5, 1}, {40, 5, 0}, {1000, 1, 0}} {
		vs, err := s.LeafValuesByRange(ctx, tree, c.start, c.count)
		if err != nil || int64(len(vs)) != c.want {
			t.Fatalf("after integration: LeafValuesByRange(%d, %d) = %d values, %v; want %d", c.start, c.count, len(vs), err, c.want)
		}
		for i, v := range vs {
			if !bytes.Equal(v, leaves[c.start+int64(i)].LeafValue) {
				t.Errorf("LeafValuesByRange(%d, %d): value %d differs from leaf %d's", c.start, c.count, i, c.start+int64(i))
			}
		}
	}
	for _, c := range []struct{ start, count int64 }{{-1, 1}, {0, 0}} {
		if _, err := s.LeafValuesByRange(ctx, tree, c.start, c.count); err == nil {
			t.Errorf("LeafValuesByRange(%d, %d): no error", c.start, c.count)
		}
	}
	hs, err := s.LeafHashesByRange(ctx, tree, 10, 100)
	if err != nil || len(hs) != 30 {
		t.Fatalf("after integration: LeafHashesByRange(10, 100) = %d hashes, %v; want 30", len(hs), err)
	}
	for i, h := range hs {
		if !bytes.Equal(h, leaves[10+i].MerkleLeafHash) {
			t.Errorf("hash %d differs from leaf %d's", i, 10+i)
		}
	}
	if i, ok, err := s.LeafIndexByHash(ctx, tree, leaves[33].MerkleLeafHash); err != nil || !ok || i != 33 {
		t.Errorf("after integration: LeafIndexByHash(leaf 33) = %d, %v, %v", i, ok, err)
	}
}

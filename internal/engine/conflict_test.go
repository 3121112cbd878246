package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestAddSequencedLeavesConflicts stores leaves again, or others, where leaves are stored already: integrated
// (0..5) or stored past a gap and not integrated (8, 9). The very leaf at its own index is fine; a different leaf at
// a stored index, or a stored leaf at another index, is ErrConflict. The remote view (gRPC only) sees integrated
// leaves only: where it cannot read a refused leaf back it fails, but never calls that a conflict.
func TestAddSequencedLeavesConflicts(t *testing.T) {
	t.Parallel()
	all := testLeaves(t, 12)
	leaves, other := all[:10], all[10:]
	// unsettled: the remote view cannot tell; it must fail, but not with ErrConflict.
	const unsettled = "unsettled"
	for _, tc := range []struct {
		name   string
		start  uint64
		add    []sigsum.Leaf
		want   error  // embedded view
		remote string // "ok", "conflict" or unsettled
	}{
		{"same integrated leaves at their indices", 2, leaves[2:5], nil, "ok"},
		{"same stored leaves at their indices", 8, leaves[8:10], nil, unsettled},
		{"stored leaves and new ones after them", 4, leaves[4:8], nil, "ok"},
		{"new leaves filling the gap, then stored ones", 6, leaves[6:10], nil, "ok"}, // remote: 8, 9 get integrated
		{"different leaf at an integrated index", 2, other[:1], ErrConflict, "conflict"},
		{"different leaf at a stored index", 9, other[:1], ErrConflict, unsettled},
		{"integrated leaf at a free index", 7, leaves[3:4], ErrConflict, "conflict"},
		{"integrated leaf at another integrated index", 2, leaves[3:4], ErrConflict, "conflict"},
		{"stored leaf at a free index", 6, leaves[8:9], ErrConflict, unsettled},
		{"same leaves, then a different one at an integrated index", 3, []sigsum.Leaf{leaves[3], leaves[4], other[0]},
			ErrConflict, "conflict"},
		{"same leaves, then one at an index past the stored ones", 4, []sigsum.Leaf{leaves[4], leaves[5], leaves[2]},
			ErrConflict, "conflict"},
	} {
		for _, storage := range testStores(t) {
			kind := strings.Split(storage, ":")[0]
			e := startEngine(t, storage)
			for _, view := range []string{"embedded", "remote"} {
				t.Run(fmt.Sprintf("%s/%s/%s", kind, view, tc.name), func(t *testing.T) {
					ctx := context.Background()
					l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(t.TempDir(), "tree-id"),
						Type: trillian.TreeType_PREORDERED_LOG, Create: true})
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := l.(*embeddedLog); !ok {
						t.Fatalf("OpenTree of an embedded engine returned %T", l)
					}
					if err := l.AddSequencedLeaves(ctx, 0, leaves[:6]); err != nil {
						t.Fatal(err)
					}
					if err := l.AddSequencedLeaves(ctx, 8, leaves[8:]); err != nil {
						t.Fatal(err)
					}
					waitSize(t, l, 6)
					if view == "remote" {
						r := e.OpenTreeByID(l.TreeID()).(*remoteLog)
						r.settleWait = time.Second
						l = r
					}
					err = l.AddSequencedLeaves(ctx, tc.start, tc.add)
					switch {
					case view == "embedded" && !errors.Is(err, tc.want) || view == "embedded" && tc.want == nil && err != nil:
						t.Errorf("AddSequencedLeaves = %v, want %v", err, tc.want)
					case view == "remote" && tc.remote == "ok" && err != nil:
						t.Errorf("AddSequencedLeaves = %v, want success", err)
					case view == "remote" && tc.remote == "conflict" && !errors.Is(err, ErrConflict):
						t.Errorf("AddSequencedLeaves = %v, want ErrConflict", err)
					case view == "remote" && tc.remote == unsettled && (err == nil || errors.Is(err, ErrConflict)):
						t.Errorf("AddSequencedLeaves = %v, want an error other than ErrConflict", err)
					}
				})
			}
		}
	}
}

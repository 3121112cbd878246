package engine

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/trillian"
)

// WaitGrowth returns as soon as the sequencer integrates leaves beyond the size, and with the unchanged head when
// the wait runs out.
func TestWaitGrowth(t *testing.T) {
	t.Parallel()
	for _, storage := range testStores(t, "memory:") {
		t.Run(storage[:6], func(t *testing.T) {
			e := startEngine(t, storage)
			ctx := context.Background()
			l, err := e.OpenTree(ctx, TreeConfig{IDFile: filepath.Join(t.TempDir(), "tree-id"), Type: trillian.TreeType_LOG, Create: true})
			if err != nil {
				t.Fatal(err)
			}
			leaves := testLeaves(t, 2)
			if _, err := l.QueueLeaf(ctx, &leaves[0]); err != nil {
				t.Fatal(err)
			}
			waitSize(t, l, 1)

			th, err := l.WaitGrowth(ctx, 1, 50*time.Millisecond)
			if err != nil || th.Size != 1 {
				t.Fatalf("no growth: %+v, %v; want size 1 after the wait", th, err)
			}
			type answer struct {
				size uint64
				err  error
			}
			done := make(chan answer, 1)
			go func() {
				th, err := l.WaitGrowth(ctx, 1, time.Minute)
				done <- answer{th.Size, err}
			}()
			time.Sleep(50 * time.Millisecond)
			if _, err := l.QueueLeaf(ctx, &leaves[1]); err != nil {
				t.Fatal(err)
			}
			select {
			case a := <-done:
				if a.err != nil || a.size != 2 {
					t.Fatalf("after growth: size %d, %v; want 2", a.size, a.err)
				}
			case <-time.After(30 * time.Second): // far below the minute: the commit, not the timer, ended it
				t.Fatal("WaitGrowth did not notice the sequencer's commit")
			}

			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := l.WaitGrowth(cctx, 2, time.Minute); err == nil {
				t.Fatal("WaitGrowth on a cancelled context: no error")
			}
		})
	}
}

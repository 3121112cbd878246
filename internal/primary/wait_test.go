package primary

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// An internal get-leaves carrying sigsum.WaitBeyondHeader is held until the tree grows beyond the size it names,
// then answered with the new leaves; without the header, or once the wait ends, the answer is the usual one.
func TestInternalGetLeavesWaitsForGrowth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.mustStart(nil, 0)
	e.addLeaves(3)
	srv := httptest.NewServer(p.InternalHandler(""))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{URL: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Without the header: the known leaf alone, and 404 at the end, at once.
	if leaves, err := c.GetLeaves(ctx, 2, 10); err != nil || len(leaves) != 1 {
		t.Fatalf("plain junction: %d leaves, %v", len(leaves), err)
	}
	if _, err := c.GetLeaves(ctx, 3, 10); client.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("plain get-leaves at the end: %v, want 404", err)
	}
	// With it and no growth: the same answers once the wait ends.
	p.leavesWait.Store(int64(100 * time.Millisecond))
	if leaves, err := c.GetLeavesWaiting(ctx, 2, 10, 3); err != nil || len(leaves) != 1 {
		t.Fatalf("waiting junction, no new leaves: %d leaves, %v", len(leaves), err)
	}
	// A size below the tree's: no wait, the leaves there are.
	if leaves, err := c.GetLeavesWaiting(ctx, 0, 10, 1); err != nil || len(leaves) != 3 {
		t.Fatalf("waiting beyond 1 of 3: %d leaves, %v", len(leaves), err)
	}

	// Growth ends the wait, however slow the machine is at adding leaves.
	p.leavesWait.Store(int64(time.Minute))
	for _, start := range []uint64{2, 3} {
		type answer struct {
			leaves []sigsum.Leaf
			err    error
		}
		done := make(chan answer, 1)
		size := uint64(len(e.leaves))
		go func() {
			leaves, err := c.GetLeavesWaiting(ctx, start, start+10, size)
			done <- answer{leaves, err}
		}()
		select {
		case a := <-done:
			t.Fatalf("start %d: answered before the tree grew: %d leaves, %v", start, len(a.leaves), a.err)
		case <-time.After(100 * time.Millisecond):
		}
		e.addLeaves(2)
		a := <-done
		if a.err != nil {
			t.Fatalf("start %d: %v", start, a.err)
		}
		// At least one new leaf (the sequencer may have integrated the two in separate passes), at most both.
		want := e.leaves[start:]
		if n := len(a.leaves); n < int(size-start)+1 || n > len(want) {
			t.Fatalf("start %d: %d leaves after the tree grew from %d to %d", start, n, size, len(e.leaves))
		}
		for i := range a.leaves {
			if a.leaves[i] != want[i] {
				t.Fatalf("start %d: leaf %d differs", start, start+uint64(i))
			}
		}
	}
}

// A secondary answering with more leaves than the primary's tree held when the rotation read it (the tree grew
// while the rotation waited for the answer) still counts, checked against the tree as it is now.
func TestRotationCountsSecondaryAheadOfTheReadTree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	signer := seedSigner(t, 11)
	e.addLeaves(4)
	var mu sync.Mutex // the handler's goroutine grows e.leaves
	grew := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !grew { // the first ask only: the tree grows between the rotation's read and this answer
			grew = true
			e.addLeaves(3)
		}
		writeSignedHead(w, signer, e.head(len(e.leaves)))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{URL: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := e.mustStart([]Secondary{{Name: "ahead", Client: c, Key: signer.Public()}}, 0)
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	want := e.head(7)
	mu.Unlock()
	if got := p.Signed().TreeHead; got != want {
		t.Fatalf("signed %+v, want the secondary's head of size 7 %+v", got, want)
	}
}

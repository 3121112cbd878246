package repeatlog

import (
	"errors"
	"testing"
	"time"
)

// A failure that repeats is logged when it starts, when it changes (beyond its numbers), every DefaultEvery,
// and when it ends.
func TestFailures(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	var r Failures
	for i, step := range []struct {
		at     time.Duration
		err    string // "" is a success
		logged bool
		count  int
	}{
		{0, "size 3 is below the signed size 5", true, 1},
		{time.Second, "size 4 is below the signed size 6", false, 2}, // the same, numbers aside
		{2 * time.Second, "tree head signature does not verify", true, 3},
		{3 * time.Second, "tree head signature does not verify", false, 4},
		{2*time.Second + DefaultEvery, "tree head signature does not verify", true, 5},
		{DefaultEvery + 3*time.Second, "", true, 5}, // the end, with the count
		{DefaultEvery + 4*time.Second, "", false, 0},
		{DefaultEvery + 5*time.Second, "tree head signature does not verify", true, 1},
	} {
		var logged bool
		var count int
		if step.err == "" {
			logged, count = r.OK()
		} else {
			logged, count = r.Fail(t0.Add(step.at), errors.New(step.err))
		}
		if logged != step.logged || count != step.count {
			t.Errorf("step %d (%q): logged %v, count %d; want %v, %d", i, step.err, logged, count, step.logged, step.count)
		}
	}
}

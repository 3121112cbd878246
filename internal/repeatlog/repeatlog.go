// Package repeatlog decides when a failure that repeats (every rotation, every retry, every request) is logged:
// when it starts or changes, the same failure at most every Failures.Every with how many times it happened, and
// when it ends. A node that fails the same way all night writes a few lines, not thousands.
package repeatlog

import (
	"strings"
	"time"
)

// DefaultEvery is how often the same failure is logged again when Failures.Every is zero.
const DefaultEvery = 10 * time.Minute

// Failures tracks one kind of repeating failure. It is not safe for concurrent use: guard it with the caller's
// lock.
type Failures struct {
	// Every spaces out the lines of the same failure (zero: DefaultEvery).
	Every time.Duration

	count  int       // failures in a row
	kind   string    // the last failure's message without its digits
	logged time.Time // when a failure was last logged
}

// Fail counts a failure at now and says whether to log it, with the count so far. Two failures are the same when
// their messages differ in digits only (sizes, durations, ports): a secondary catching up fails with a new size
// every time.
func (f *Failures) Fail(now time.Time, err error) (log bool, count int) {
	f.count++
	kind := strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' {
			return -1
		}
		return c
	}, err.Error())
	every := f.Every
	if every == 0 {
		every = DefaultEvery
	}
	if f.count == 1 || kind != f.kind || now.Sub(f.logged) >= every {
		f.kind, f.logged = kind, now
		return true, f.count
	}
	return false, f.count
}

// OK ends a run of failures and says whether there was one to log the end of, with its count.
func (f *Failures) OK() (log bool, count int) {
	n := f.count
	f.count, f.kind = 0, ""
	return n > 0, n
}

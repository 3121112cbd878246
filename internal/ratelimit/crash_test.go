package ratelimit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestChargesSurviveCrash checks that every charge Charge returned from is in the state a new Limiter loads,
// though the old one was never closed (a SIGKILL): periodic saves are off, so only the journal carries them.
func TestChargesSurviveCrash(t *testing.T) {
	t.Parallel()
	kh := keyHash(t, "k")
	for _, tc := range []struct {
		name        string
		before      int  // charges before an optional snapshot
		snapshot    bool // save the state file between the two rounds, as the periodic save does
		after       int  // charges after it
		concurrent  bool // charge from as many goroutines at once
		tornTail    bool // the crash left half a journal record
		limit, want int
	}{
		{"eight of ten", 8, false, 0, false, false, 10, 8},
		{"across a snapshot", 3, true, 4, false, false, 10, 7},
		{"snapshot only", 5, true, 0, false, false, 10, 5},
		{"concurrent", 0, false, 60, true, false, 1000, 60},
		{"torn tail", 8, false, 0, false, true, 10, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			clock := newClock()
			res := newResolver()
			res.set("example.org", keyHex(t, "rl"))
			cfg := Config{
				LimitsFile: writeFile(t, dir, "limits", "key "+kh.String()+" "+strconv.Itoa(tc.limit)+"\ndomain example.org "+
					strconv.Itoa(tc.limit)+"\n"),
				StateFile:    filepath.Join(dir, "rate-limit-state"),
				LogKey:       testLogKey,
				Resolver:     res,
				Now:          clock.Now,
				SaveInterval: -1,
				GlobalLimit:  tc.limit,
			}
			l, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			charge := func(n int) {
				var wg sync.WaitGroup
				for i := 0; i < n; i++ {
					one := func(i int) {
						defer wg.Done()
						// Alternate a key line and a token line (which is also charged to the global counter).
						var d *Decision
						var err error
						if i%2 == 0 {
							d, err = l.Check(context.Background(), kh, "")
						} else {
							d, err = l.Check(context.Background(), keyHash(t, "other"+strconv.Itoa(i)), token(t, "rl", "example.org"))
						}
						if err != nil {
							t.Error(err)
							return
						}
						l.Charge(d)
					}
					wg.Add(1)
					if tc.concurrent {
						go one(i)
					} else {
						one(i)
					}
				}
				wg.Wait()
			}
			charge(tc.before)
			if tc.snapshot {
				if err := l.save(); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(3 * time.Minute)
			charge(tc.after)
			total := tc.before + tc.after
			if tc.tornTail {
				js, _ := filepath.Glob(cfg.StateFile + journalSuffix + "*")
				if len(js) == 0 {
					t.Fatal("no journal file")
				}
				f, err := os.OpenFile(js[len(js)-1], os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString("29000000 key:")
				f.Close()
			}
			// The crash: l is abandoned, never closed.

			clock.Advance(time.Minute)
			l2, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l2.Close() })
			keys, domain, global := l2.Usage(RuleKey, kh.String()), l2.Usage(RuleDomain, "example.org"), l2.Usage(RulePublic, "")
			if keys+domain != tc.want || keys != (total+1)/2 || domain != total/2 || global != domain {
				t.Fatalf("after the crash: key %d, domain %d, global %d; want %d charges in all (%d key, %d domain = global)",
					keys, domain, global, tc.want, (total+1)/2, total/2)
			}
			// The limits hold across the crash.
			for i := keys; i < tc.limit; i++ {
				d, err := l2.Check(context.Background(), kh, "")
				if err != nil {
					t.Fatalf("charge %d of %d after the crash: %v", i+1, tc.limit, err)
				}
				l2.Charge(d)
			}
			if _, err := l2.Check(context.Background(), kh, ""); !errors.Is(err, ErrRateLimited) {
				t.Fatalf("charge %d of a limit of %d after the crash: %v", tc.limit+1, tc.limit, err)
			}
		})
	}
}

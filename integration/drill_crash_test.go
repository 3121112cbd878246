package integration

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestDrillCrash: a primary and two secondaries under steady add-leaf load from several submitters; the primary
// (and, separately, a secondary) is SIGKILLed at random moments and restarted from its own store, again and again.
// Every tree head ever published is recorded. At the end every leaf that ever got 200 must be in the log, every
// recorded head must be consistent with the final one, and no two heads of one size may differ.
//
// Length: SIGSUMD_DRILL_SECONDS of kills (default 12 for `make test`; `make drills` runs longer).
func TestDrillCrash(t *testing.T) {
	t.Parallel()
	length := drillSeconds(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 10))
	t.Logf("crash drill: %v of kills, seed %d", length, seed)

	cl := newCluster(t, 2, "-interval", "150ms")
	cl.start()
	p := cl.primary
	tailOnFailure(t, append([]*node{p}, cl.secondaries...)...)
	heads := recordHeads(t, p.publicURL(), cl.logKey, 25*time.Millisecond)
	load := startLoad(t, p.publicURL(), 4, 101, 40*time.Millisecond)
	waitFor(t, "the first acknowledged leaves", 60*time.Second, func() bool { return load.ackedCount() >= 5 })

	// Kills: two of every three hit the primary, the third a random secondary; each at a random moment of the
	// load, each victim down for a random moment before it restarts from its own store.
	var primaryKills, secondaryKills int
	deadline := time.Now().Add(length)
	for i := 0; time.Now().Before(deadline); i++ {
		time.Sleep(time.Duration(200+rng.IntN(1000)) * time.Millisecond)
		victim := p
		if i%3 == 2 {
			victim = cl.secondaries[rng.IntN(len(cl.secondaries))]
			secondaryKills++
		} else {
			primaryKills++
		}
		victim.kill()
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		victim.start()
	}
	// The log still makes progress after the last kill.
	before := load.ackedCount()
	waitFor(t, "new acknowledgements after the last restart", 60*time.Second, func() bool { return load.ackedCount() > before })
	if open := load.finish(90 * time.Second); open > 0 {
		t.Errorf("%d submitted leaves were still not acknowledged 90s after the last kill", open)
	}
	waitPublished(t, p)
	heads.stop()

	a := auditLog(t, p.client(), cl.logKey, load.ackedLeaves(), heads)
	fmt.Printf("crash drill: %v, seed %d: kills survived %d (primary %d, secondary %d), leaves acknowledged %d, "+
		"leaves lost %d, heads checked %d, forks %d, final size %d, add-leaf requests %d (%d failed while nodes were down)\n",
		length, seed, primaryKills+secondaryKills, primaryKills, secondaryKills, a.acked, a.lost, a.checked, a.forks,
		a.final.Size, load.tries, load.fails)
	if a.acked == 0 || a.checked < 2 {
		t.Errorf("the drill proved little: %d leaves acknowledged, %d heads recorded", a.acked, a.checked)
	}
}

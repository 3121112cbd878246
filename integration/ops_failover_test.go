package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// failoverCommands returns the sigsumctl and sigsumd commands of docs/OPERATIONS.md's failover section, in order.
func failoverCommands(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	a := strings.Index(doc, "## Failover: promoting a secondary")
	end := strings.Index(doc[a+1:], "\n## ")
	if a < 0 || end < 0 {
		t.Fatal("docs/OPERATIONS.md has no failover section")
	}
	var cmds [][]string
	for _, line := range strings.Split(doc[a:a+1+end], "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "sigsumctl ") || strings.HasPrefix(line, "sigsumd ") {
			cmds = append(cmds, strings.Fields(line))
		}
	}
	return cmds
}

// TestOperationsFailover runs the failover procedure of docs/OPERATIONS.md, command by command, on a log whose
// primary was SIGKILLed, with the paths and addresses of the doc mapped to the test's, and measures the recovery
// time: SIGKILL to the first add-leaf 200 on the new primary, at the rotation interval promote writes (the
// default), with the commands run back to back (no operator typing).
func TestOperationsFailover(t *testing.T) {
	t.Parallel()
	cmds := failoverCommands(t)
	var kinds []string
	for _, c := range cmds {
		kinds = append(kinds, c[0]+" "+c[1])
	}
	if want := []string{"sigsumctl status", "sigsumctl promote", "sigsumctl promote", "sigsumd -role"}; !slices.Equal(kinds, want) {
		t.Fatalf("the failover section's commands are %q, want %q: update this test with the doc", kinds, want)
	}

	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "300ms")
	s1 := newSecondary(t, filepath.Join(dir, "s1"), p)
	s2 := newSecondary(t, filepath.Join(dir, "s2"), p)
	p.addSecondaries(s1, s2)
	s1.start()
	s2.start()
	p.start()
	c, logKey := p.client(), p.publicKey()
	allCommitted(t, c, submit(t, c, newSubmitter(t, 51), 8), 60*time.Second)
	last := treeHead(t, c, logKey)
	recordedHead(t, s1, last.Size)

	p.kill()
	killed := time.Now()
	s1.stop()
	subst := strings.NewReplacer(
		"/etc/sigsumd/secondary.toml", s1.configFile(),
		"/root/log-key", filepath.Join(p.dir, "key"),
		"https://10.0.0.3:6967", s2.internalURL(),
		"/etc/sigsumd/secondary-b.pub", filepath.Join(s2.dir, "key.pub"),
		"/var/lib/sigsumd", s1.dir,
	)
	var printed string
	for _, cmd := range cmds[:3] {
		args := strings.Fields(subst.Replace(strings.Join(cmd[1:], " ")))
		out := ctl(t, args...)
		t.Logf("sigsumctl %s:\n%s", strings.Join(args, " "), out)
		for _, line := range strings.Split(out, "\n") {
			if l := strings.TrimSpace(line); strings.HasPrefix(l, "sigsumd ") {
				printed = l
			}
		}
	}
	start := subst.Replace(strings.Join(cmds[3], " "))
	if printed != start {
		t.Fatalf("promote printed %q, the doc says %q", printed, start)
	}
	args := strings.Fields(start)[1:]
	np := &node{t: t, role: "primary", dir: s1.dir, public: s1.public, internal: s1.internal, conf: args[3]}
	t.Cleanup(np.kill)
	if got := np.args()[:4]; !slices.Equal(got, args) {
		t.Fatalf("the harness would run sigsumd %q, the doc %q", got, args)
	}
	np.start()
	// Step 5: the other secondary follows the new primary.
	s2.stop()
	s2.extra = []string{"-interval", "100ms", "-primary-url", np.internalURL(), "-primary-public-url", np.publicURL()}
	s2.start()
	nc := np.client()
	first := treeHead(t, nc, logKey)
	if first.TreeHead != last.TreeHead {
		t.Fatalf("the new primary's first head %+v, want the last published %+v", first.TreeHead, last.TreeHead)
	}
	leaf := submit(t, nc, newSubmitter(t, 52), 1)
	allCommitted(t, nc, leaf, 60*time.Second)
	rto := time.Since(killed)
	fmt.Printf("failover (docs/OPERATIONS.md commands, default interval): SIGKILL -> first add-leaf 200 on the new primary %v\n",
		rto.Round(time.Millisecond))
	grown := treeHead(t, nc, logKey)
	proof, err := nc.GetConsistencyProof(context.Background(), last.Size, grown.Size)
	if err != nil || proof.Verify(&last.TreeHead, &grown.TreeHead) != nil {
		t.Fatalf("the new primary's head of size %d does not extend the last published one: %v", grown.Size, err)
	}
}

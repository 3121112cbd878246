package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// dirState lists a data directory's files with their sizes and modification times, leaving out the store's
// own files (SQLite checkpoints its WAL when a process opens it) and the lock: what a refused promotion must not
// change.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "trillian.db") || e.Name() == "sigsumd.lock" {
			continue // the store's files, and the lock promote takes
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	return out
}

// recordedSize waits until the secondary in dir has recorded the log's published head of size, and returns it.
func recordedHead(t *testing.T, n *node, size uint64) sigsum.CosignedTreeHead {
	t.Helper()
	var cth sigsum.CosignedTreeHead
	waitFor(t, fmt.Sprintf("%s to record the published head of size %d", n.dir, size), 30*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(n.dir, "published-tree-head"))
		if err != nil {
			return false
		}
		cth, err = sigsum.ParseCosignedTreeHead(b)
		return err == nil && cth.Size == size
	})
	return cth
}

// TestDrillPromoteRefusesUnsafe runs sigsumctl promote against real nodes in every state where promoting could
// fork the log: each is refused with a one-line reason and changes nothing on disk. Then the safe promotion goes
// through, the new primary's first head extends the last published one, and the old primary, started again,
// publishes nothing new.
func TestDrillPromoteRefusesUnsafe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "300ms")
	s1 := newSecondary(t, filepath.Join(dir, "s1"), p)
	s2 := newSecondary(t, filepath.Join(dir, "s2"), p)
	// bare replicates but was set up without the log's URL and key: it follows no published head.
	bare := &node{t: t, role: "secondary", dir: filepath.Join(dir, "bare"), public: freePort(t), internal: freePort(t),
		extra: []string{"-interval", "100ms"}}
	ctl(t, "init", "-role", "secondary", "-data-dir", bare.dir, "-primary-url", p.internalURL(),
		"-log-public-key", filepath.Join(p.dir, "key.pub"))
	t.Cleanup(bare.kill)
	// lag follows the published head but cannot reach the primary's internal API: it holds nothing.
	lag := newSecondary(t, filepath.Join(dir, "lag"), p)
	lag.extra = []string{"-interval", "100ms", "-primary-url", fmt.Sprintf("https://127.0.0.1:%d", freePort(t))}
	p.addSecondaries(s1, s2, bare)
	for _, n := range []*node{s1, s2, bare, lag} {
		n.start()
	}
	p.start()
	c, logKey := p.client(), p.publicKey()
	leaves := submit(t, c, newSubmitter(t, 41), 10)
	allCommitted(t, c, leaves, 60*time.Second)
	last := treeHead(t, c, logKey)
	recordedHead(t, s1, last.Size)
	recordedHead(t, lag, last.Size)

	logKeyFile, logPub := filepath.Join(p.dir, "key"), filepath.Join(p.dir, "key.pub")
	refuse := func(n *node, want string, args ...string) {
		t.Helper()
		before := dirState(t, n.dir)
		ctlFails(t, want, append([]string{"promote", "-config", n.configFile()}, args...)...)
		if after := dirState(t, n.dir); !slices.Equal(before, after) {
			t.Fatalf("a refused promotion changed %s:\nbefore %v\nafter  %v", n.dir, before, after)
		}
	}

	// The old primary still answers.
	s1.stop()
	refuse(s1, "the old primary still", "-key-file", logKeyFile)
	p.kill()

	// The key is not the log's.
	refuse(s1, "not the log's key", "-key-file", filepath.Join(s1.dir, "key"))

	// The node is behind the head the log published (it recorded it, but never got the leaves).
	lag.stop()
	refuse(lag, fmt.Sprintf("recorded head %s shows a published head of size %d: the local tree has only 0 leaves",
		filepath.Join(lag.dir, "published-tree-head"), last.Size), "-key-file", logKeyFile)

	// A published head the local tree does not extend (a diverged replica, or a forged head).
	forged, err := (&sigsum.TreeHead{Size: last.Size, RootHash: sigsum.Hash{9}}).Sign(loadNodeSigner(t, p))
	if err != nil {
		t.Fatal(err)
	}
	forgedFile := filepath.Join(t.TempDir(), "forged")
	if err := os.WriteFile(forgedFile, (&sigsum.CosignedTreeHead{SignedTreeHead: forged}).MarshalASCII(), 0o644); err != nil {
		t.Fatal(err)
	}
	refuse(s1, fmt.Sprintf("at size %d the root", last.Size), "-key-file", logKeyFile, "-published", forgedFile)

	// No source at all: a secondary that followed nothing, with the old primary gone.
	bare.stop()
	refuse(bare, "no source showed", "-key-file", logKeyFile, "-log-public-key", logPub)

	// Another secondary holds more than this one: it may hold published leaves this one lacks. (s2 stays running.)
	// Not constructed here: the primary publishes only what every secondary holds, so s2 == s1. The unit tests
	// of internal/promote cover a replica ahead.

	// The safe promotion: the recorded head, the forged file left out, the other secondary asked. The log's
	// public URL now answers 502 (a proxy in front of a dead primary): that is not a live old primary.
	proxyLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.public))
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no backend", http.StatusBadGateway)
	})}
	go proxy.Serve(proxyLn)
	out := ctl(t, "promote", "-config", s1.configFile(), "-key-file", logKeyFile,
		"-secondary", s2.internalURL()+","+filepath.Join(s2.dir, "key.pub"))
	proxy.Close()
	t.Logf("sigsumctl promote:\n%s", out)
	if !strings.Contains(out, "checked: the local tree") {
		t.Fatalf("promote did not say what it checked:\n%s", out)
	}
	np := &node{t: t, role: "primary", dir: s1.dir, public: s1.public, internal: s1.internal,
		conf: filepath.Join(s1.dir, "sigsumd-primary.toml"), extra: []string{"-interval", "300ms"}}
	t.Cleanup(np.kill)
	s2.stop()
	s2.extra = []string{"-interval", "100ms", "-primary-url", np.internalURL(), "-primary-public-url", np.publicURL()}
	bare.extra = []string{"-interval", "100ms", "-primary-url", np.internalURL()}
	np.start()
	s2.start()
	nc := np.client()
	first := treeHead(t, nc, logKey)
	if first.Size != last.Size || first.RootHash != last.RootHash {
		t.Fatalf("the new primary's first head %+v, want the last published %+v", first.TreeHead, last.TreeHead)
	}
	more := submit(t, nc, newSubmitter(t, 42), 3)
	allCommitted(t, nc, more, 60*time.Second)
	grown := treeHead(t, nc, logKey)
	proof, err := nc.GetConsistencyProof(context.Background(), last.Size, grown.Size)
	if err != nil || proof.Verify(&last.TreeHead, &grown.TreeHead) != nil {
		t.Fatalf("the new primary's head of size %d does not extend the last published one: %v", grown.Size, err)
	}

	// The old primary comes back: its secondaries follow the new primary now, so it signs nothing new.
	bare.start()
	p.start()
	stale := submit(t, c, newSubmitter(t, 43), 1)
	time.Sleep(3 * time.Second) // ten of its rotation intervals
	if again := treeHead(t, c, logKey); again.SignedTreeHead != last.SignedTreeHead {
		t.Fatalf("the restarted old primary published %+v, want nothing new after %+v", again.TreeHead, last.TreeHead)
	}
	if committed, err := c.AddLeaf(context.Background(), stale[0].req, nil); err != nil || committed {
		t.Fatalf("the restarted old primary committed a leaf (%v, %v)", committed, err)
	}
}

package promote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func signer(t *testing.T, b byte) sigsum.Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// secondaryEnv is a stopped secondary's store: a PREORDERED_LOG tree holding leaves.
type secondaryEnv struct {
	t      *testing.T
	dir    string
	engine *engine.Engine
	log    engine.Log
	leaves []sigsum.Leaf
	logKey sigsum.Signer
}

// newSecondaryEnv stores integrated leaves and then pending ones; with pending leaves the engine's sequencer is
// left idle, so they stay unintegrated until reopen.
func newSecondaryEnv(t *testing.T, integrated, pending int) *secondaryEnv {
	t.Helper()
	dir := t.TempDir()
	e := &secondaryEnv{t: t, dir: dir, logKey: signer(t, 1)}
	e.open()
	l, err := e.engine.OpenTree(context.Background(), engine.TreeConfig{IDFile: e.treeIDFile(), Type: trillian.TreeType_PREORDERED_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	e.log = l
	sub := signer(t, 2)
	for i := 0; i < integrated+pending; i++ {
		leaf, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint(i))))
		if err != nil {
			t.Fatal(err)
		}
		e.leaves = append(e.leaves, leaf)
	}
	ctx := context.Background()
	if integrated > 0 {
		if err := l.AddSequencedLeaves(ctx, 0, e.leaves[:integrated]); err != nil {
			t.Fatal(err)
		}
		e.waitSize(uint64(integrated))
	}
	if pending > 0 {
		// Stored with the sequencer stopped: the state a secondary killed between store and integration leaves.
		e.engine.Close()
		e.openWith(engine.EmbeddedConfig{NoSequencer: true})
		if err := e.log.AddSequencedLeaves(ctx, uint64(integrated), e.leaves[integrated:]); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *secondaryEnv) open() {
	e.openWith(engine.EmbeddedConfig{SequencerInterval: 10 * time.Millisecond})
}

// reopen restarts the engine with a running sequencer, as sigsumctl promote does.
func (e *secondaryEnv) reopen() {
	e.engine.Close()
	e.open()
}

func (e *secondaryEnv) openWith(cfg engine.EmbeddedConfig) {
	e.t.Helper()
	cfg.Storage = engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(e.dir, "trillian.db")}
	eng, err := engine.StartEmbedded(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.engine = eng
	if e.log != nil {
		e.log = eng.OpenTreeByID(e.log.TreeID())
	}
	e.t.Cleanup(func() { eng.Close() })
}

func (e *secondaryEnv) treeIDFile() string { return filepath.Join(e.dir, "tree-id") }
func (e *secondaryEnv) sthFile() string    { return filepath.Join(e.dir, "sth") }

func (e *secondaryEnv) waitSize(n uint64) sigsum.TreeHead {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		th, err := e.log.TreeHead(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if th.Size >= n {
			return th
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("tree stuck at %d, want %d", th.Size, n)
		}
	}
}

func (e *secondaryEnv) head(n int) sigsum.TreeHead {
	hs := make([]sigsum.Hash, n)
	for i := range hs {
		hs[i] = e.leaves[i].Hash()
	}
	return sigsum.TreeHead{Size: uint64(n), RootHash: sigsum.RootHash(hs)}
}

func (e *secondaryEnv) published(n int) *sigsum.SignedTreeHead {
	th := e.head(n)
	sth, err := th.Sign(e.logKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return &sth
}

// config promotes with the evidence of one published head (none if nil).
func (e *secondaryEnv) config(published *sigsum.SignedTreeHead) Config {
	cfg := Config{Engine: e.engine, TreeIDFile: e.treeIDFile(), STHFile: e.sthFile(),
		JournalFile: filepath.Join(e.dir, "promote-journal"), LogKey: e.logKey.Public(),
		IntegrateTimeout: 20 * time.Second}
	if published != nil {
		cfg.Evidence = []Evidence{{Source: "test", Head: published.TreeHead, Published: true}}
	}
	return cfg
}

// checkPromoted verifies the end state: a LOG tree holding every leaf, that a primary starts from and grows.
func (e *secondaryEnv) checkPromoted() {
	e.t.Helper()
	ctx := context.Background()
	tree, err := e.engine.Tree(ctx, e.log.TreeID())
	if err != nil {
		e.t.Fatal(err)
	}
	if tree.TreeType != trillian.TreeType_LOG || tree.TreeState != trillian.TreeState_ACTIVE {
		e.t.Fatalf("tree is %s %s, want LOG ACTIVE", tree.TreeType, tree.TreeState)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "promote-journal")); !os.IsNotExist(err) {
		e.t.Error("journal left behind")
	}
	l, err := e.engine.OpenTree(ctx, engine.TreeConfig{IDFile: e.treeIDFile(), Type: trillian.TreeType_LOG})
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := primary.New(ctx, primary.Config{Log: l, Signer: e.logKey, STHFile: e.sthFile()})
	if err != nil {
		e.t.Fatal(err)
	}
	if got, want := p.Signed().TreeHead, e.head(len(e.leaves)); got != want {
		e.t.Fatalf("new primary signed %+v, want the local tree %+v", got, want)
	}
	next, _ := sigsum.SignLeaf(signer(e.t, 2), sigsum.Hash{0xff})
	if _, err := l.QueueLeaf(ctx, &next); err != nil {
		e.t.Fatal(err)
	}
	e.log = l
	e.waitSize(uint64(len(e.leaves) + 1))
}

func TestPromote(t *testing.T) {
	t.Parallel()
	e := newSecondaryEnv(t, 5, 3)
	if n, err := e.engine.PendingSequencedLeaves(context.Background(), e.log.TreeID()); err != nil || n != 3 {
		t.Fatalf("setup: pending = %d, %v; want 3", n, err)
	}
	e.reopen()
	var out bytes.Buffer
	cfg := e.config(e.published(4))
	cfg.Out = &out
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	e.checkPromoted()
	if err := Run(context.Background(), e.config(nil)); err == nil || !strings.Contains(err.Error(), "sth file") {
		t.Errorf("promoting a running primary's store: %v", err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	e := newSecondaryEnv(t, 3, 0)
	var out bytes.Buffer
	cfg := e.config(nil)
	cfg.DryRun, cfg.Out = true, &out
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "freeze") {
		t.Errorf("dry run printed %q", out.String())
	}
	tree, _ := e.engine.Tree(context.Background(), e.log.TreeID())
	if tree.TreeType != trillian.TreeType_PREORDERED_LOG || tree.TreeState != trillian.TreeState_ACTIVE {
		t.Errorf("dry run changed the tree to %s %s", tree.TreeType, tree.TreeState)
	}
	if _, err := os.Stat(primary.StartupFile(e.sthFile())); !os.IsNotExist(err) {
		t.Error("dry run wrote the startup file")
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name, want string
		setup      func(e *secondaryEnv, cfg *Config)
	}{
		{"published head larger than the local tree", "test shows a published head of size 4: the local tree has only 3 leaves", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence[0].Head = sigsum.TreeHead{Size: 4, RootHash: sigsum.Hash{1}}
		}},
		{"published head with another root", "at size 3 the root", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence[0].Head = sigsum.TreeHead{Size: 3, RootHash: sigsum.Hash{1}}
		}},
		{"published head inconsistent", "the local tree does not extend it", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence[0].Head = sigsum.TreeHead{Size: 2, RootHash: sigsum.Hash{1}}
		}},
		{"a replica ahead of the local tree", "secondary x shows a replica head of size 5", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence = append(cfg.Evidence, Evidence{Source: "secondary x", Head: sigsum.TreeHead{Size: 5}})
		}},
		{"no source", "no source showed", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence = nil
		}},
		{"every source unavailable", "no source showed", func(e *secondaryEnv, cfg *Config) {
			cfg.Evidence = []Evidence{{Source: "recorded head", Err: os.ErrNotExist}, {Source: "old primary", Err: errors.New("refused")}}
		}},
		{"existing sth file", "sth file", func(e *secondaryEnv, cfg *Config) {
			os.WriteFile(e.sthFile(), []byte("x"), 0o644)
		}},
		{"tree already LOG and ACTIVE", "already LOG and ACTIVE", func(e *secondaryEnv, cfg *Config) {
			if err := Run(ctx, *cfg); err != nil {
				t.Fatal(err)
			}
			os.Remove(primary.StartupFile(e.sthFile()))
		}},
		{"frozen without a promotion in progress", "FROZEN", func(e *secondaryEnv, cfg *Config) {
			p := &promotion{cfg: *cfg, id: e.log.TreeID(), tree: &trillian.Tree{}}
			if err := p.update(ctx, "froze", &trillian.Tree{TreeState: trillian.TreeState_FROZEN}, "tree_state"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newSecondaryEnv(t, 3, 0)
			cfg := e.config(e.published(3))
			c.setup(e, &cfg)
			before, _ := e.engine.Tree(ctx, e.log.TreeID())
			files := dirFiles(t, e.dir)
			err := Run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("refusal is not one line: %q", err)
			}
			if after := dirFiles(t, e.dir); !slices.Equal(files, after) {
				t.Errorf("a refused promotion changed the data directory from %v to %v", files, after)
			}
			after, _ := e.engine.Tree(ctx, e.log.TreeID())
			if before.TreeType != after.TreeType || before.TreeState != after.TreeState {
				t.Errorf("a refused promotion changed the tree from %s %s to %s %s", before.TreeType, before.TreeState,
					after.TreeType, after.TreeState)
			}
		})
	}
}

// dirFiles lists the files of dir that a promotion may write (the store's own files change as SQLite runs).
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "trillian.db") {
			out = append(out, e.Name())
		}
	}
	return out
}

// The refusals can be overridden in words, and the override says what it risks.
func TestAcceptForkRisk(t *testing.T) {
	t.Parallel()
	e := newSecondaryEnv(t, 3, 0)
	cfg := e.config(nil)
	var out bytes.Buffer
	cfg.AcceptForkRisk, cfg.Out = true, &out
	cfg.Evidence = []Evidence{{Source: "secondary x", Head: sigsum.TreeHead{Size: 5}}}
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "WARNING: -accept-fork-risk") || !strings.Contains(s, "fork") {
		t.Errorf("the override does not say what it risks:\n%s", s)
	}
	e.checkPromoted()
}

// The sources check the signatures of what they show.
func TestSources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newSecondaryEnv(t, 3, 0)
	dir := t.TempDir()
	good := sigsum.CosignedTreeHead{SignedTreeHead: *e.published(3)}
	th := e.head(3)
	other, _ := th.Sign(signer(t, 9))
	bad := sigsum.CosignedTreeHead{SignedTreeHead: other}
	write := func(name string, cth sigsum.CosignedTreeHead) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, cth.MarshalASCII(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	goodFile, badFile := write("good", good), write("bad", bad)
	for _, c := range []struct {
		name    string
		ev      Evidence
		wantErr string
	}{
		{"recorded", RecordedHead(goodFile, e.logKey.Public()), ""},
		{"recorded by another key", RecordedHead(badFile, e.logKey.Public()), "not signed by the log key"},
		{"recorded missing", RecordedHead(filepath.Join(dir, "none"), e.logKey.Public()), "no such file"},
		{"published file", PublishedHead(ctx, goodFile, e.logKey.Public()), ""},
		{"published by another key", PublishedHead(ctx, badFile, e.logKey.Public()), "not signed by the log key"},
		{"old primary down", OldPrimaryHead(ctx, "http://127.0.0.1:1", e.logKey.Public()), "connect"},
	} {
		switch {
		case c.wantErr == "" && (c.ev.Err != nil || c.ev.Head != th || !c.ev.Published):
			t.Errorf("%s: %+v", c.name, c.ev)
		case c.wantErr != "" && (c.ev.Err == nil || !strings.Contains(c.ev.Err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want %q", c.name, c.ev.Err, c.wantErr)
		}
	}
	if err := Answers(ctx, "http://127.0.0.1:1"); err != nil {
		t.Errorf("nothing listens on port 1, yet Answers says %v", err)
	}

	// A witness's latest cosigned checkpoint of the log (C2SP tlog-witness monitor retrieval) is a published head.
	w, err := witnesstest.New(witnesstest.Config{Name: "w.example/1", Signer: signer(t, 30), Logs: []sigsum.PublicKey{e.logKey.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	if ev := WitnessCheckpoint(ctx, srv.URL, e.logKey.Public()); ev.Err == nil || !strings.Contains(ev.Err.Error(), "404") {
		t.Errorf("a witness that cosigned nothing: %+v", ev)
	}
	c, err := witness.New(witness.Config{Witnesses: []policy.Witness{{Name: "w", Key: w.Public(), URL: srv.URL}},
		LogKey: e.logKey.Public(), MinInterval: -1, Logger: slog.New(slog.DiscardHandler),
		Proofs: func(context.Context, uint64, uint64) (sigsum.ConsistencyProof, error) {
			return sigsum.ConsistencyProof{}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if cs := c.Cosign(ctx, good.SignedTreeHead); len(cs) != 1 {
		t.Fatalf("the witness did not cosign: %+v", cs)
	}
	if ev := WitnessCheckpoint(ctx, srv.URL+"/", e.logKey.Public()); ev.Err != nil || ev.Head != th || !ev.Published {
		t.Errorf("the witness's checkpoint: %+v", ev)
	}
	if ev := WitnessCheckpoint(ctx, srv.URL, signer(t, 9).Public()); ev.Err == nil {
		t.Errorf("the witness's checkpoint of another log: %+v", ev)
	}
}

func TestInterruptedAfterEachStep(t *testing.T) {
	t.Parallel()
	crash := errors.New("simulated crash")
	for _, step := range []Step{StepIntegrate, StepCheck, StepBegin, StepFreeze, StepType, StepUnfreeze, StepStartup} {
		t.Run(string(step), func(t *testing.T) {
			t.Parallel()
			e := newSecondaryEnv(t, 4, 2)
			e.reopen()
			cfg := e.config(e.published(3))
			cfg.AfterStep = func(s Step) error {
				if s == step {
					return crash
				}
				return nil
			}
			if err := Run(context.Background(), cfg); !errors.Is(err, crash) {
				t.Fatalf("first run: %v", err)
			}
			e.reopen() // the process restarts: a new engine on the same store
			cfg = e.config(e.published(3))
			var out bytes.Buffer
			cfg.Out = &out
			if err := Run(context.Background(), cfg); err != nil {
				t.Fatalf("re-run after a crash after %s: %v\n%s", step, err, out.String())
			}
			e.checkPromoted()
		})
	}
}

// Package promote turns a stopped secondary's PREORDERED_LOG tree into a LOG tree a primary can start from.
//
// The order is what keeps the tree usable: every stored leaf is integrated first (a LOG sequencer would collide
// with preordered leaves left unintegrated, on every pass, for good); the tree is checked against the last head
// the old primary published; then Trillian's three separate updates (freeze; type PREORDERED_LOG → LOG; unfreeze);
// then the startup file that makes the new primary sign its local tree. Each step looks at the current state
// first, and a journal file marks a promotion in progress, so a re-run after a crash finishes the job.
package promote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	tpb "github.com/google/trillian"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/trillian"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Step names one step of a promotion.
type Step string

// The steps, in order.
const (
	StepBegin     Step = "begin"     // write the journal
	StepIntegrate Step = "integrate" // integrate every stored leaf, check none is left
	StepCheck     Step = "check"     // the local tree extends the last published head
	StepFreeze    Step = "freeze"    // tree state ACTIVE → FROZEN
	StepType      Step = "type"      // tree type PREORDERED_LOG → LOG
	StepUnfreeze  Step = "unfreeze"  // tree state FROZEN → ACTIVE
	StepStartup   Step = "startup"   // write <sth-file>.startup = startup=local-tree
	StepDone      Step = "done"      // remove the journal
)

// DefaultIntegrateTimeout bounds the wait for the sequencer to integrate stored leaves.
const DefaultIntegrateTimeout = 2 * time.Minute

// Config describes one promotion.
type Config struct {
	// Engine reaches the node's Trillian. The node must be stopped (the caller holds its lock).
	Engine *trillian.Engine
	// TreeIDFile names the node's tree.
	TreeIDFile string
	// STHFile is the sth file the new primary will use; it must not exist.
	STHFile string
	// JournalFile marks a promotion in progress.
	JournalFile string
	// LogKey is the log's public key: the key the new primary will sign with.
	LogKey sigsum.PublicKey
	// Published, if set, is the last tree head the old primary published; the local tree must extend it.
	Published *sigsum.SignedTreeHead
	// IntegrateTimeout bounds the wait for integration (default DefaultIntegrateTimeout).
	IntegrateTimeout time.Duration
	// DryRun prints the plan and changes nothing.
	DryRun bool
	// Out receives one line per step.
	Out io.Writer
	// AfterStep, if set, runs after each completed step; an error stops the promotion there (tests use it to
	// simulate a crash).
	AfterStep func(Step) error
}

// Run promotes the tree, or finishes a promotion a crash interrupted.
func Run(ctx context.Context, cfg Config) error {
	if cfg.IntegrateTimeout <= 0 {
		cfg.IntegrateTimeout = DefaultIntegrateTimeout
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	id, err := trillian.ReadTreeIDFile(cfg.TreeIDFile)
	if err != nil {
		return err
	}
	tree, err := cfg.Engine.Tree(ctx, id)
	if err != nil {
		return err
	}
	_, jerr := os.Stat(cfg.JournalFile)
	resuming := jerr == nil
	if err := refusals(cfg, tree, resuming); err != nil {
		return err
	}
	if cfg.Published != nil && !cfg.Published.Verify(cfg.LogKey) {
		return errors.New("the published tree head is not signed by the key file's key: wrong key file, or not this log's head")
	}
	p := &promotion{cfg: cfg, id: id, tree: tree}
	if cfg.DryRun {
		return p.plan(ctx)
	}
	if resuming {
		fmt.Fprintf(cfg.Out, "resuming an interrupted promotion of tree %d (%s, %s)\n", id, tree.TreeType, tree.TreeState)
	}
	steps := []struct {
		step Step
		run  func(context.Context) error
	}{
		{StepBegin, p.begin},
		{StepIntegrate, p.integrate},
		{StepCheck, p.check},
		{StepFreeze, p.freeze},
		{StepType, p.changeType},
		{StepUnfreeze, p.unfreeze},
		{StepStartup, p.startup},
		{StepDone, p.done},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.step, err)
		}
		if cfg.AfterStep != nil {
			if err := cfg.AfterStep(s.step); err != nil {
				return fmt.Errorf("after %s: %w", s.step, err)
			}
		}
	}
	return nil
}

// refusals are the states in which promoting would make things worse or means a mistake.
func refusals(cfg Config, tree *tpb.Tree, resuming bool) error {
	if _, err := os.Stat(cfg.STHFile); err == nil {
		return fmt.Errorf("sth file %s exists: this node has run as a primary; refusing to promote", cfg.STHFile)
	}
	switch {
	case tree.TreeType == tpb.TreeType_LOG && tree.TreeState == tpb.TreeState_ACTIVE && !resuming:
		return fmt.Errorf("tree %d is already LOG and ACTIVE: nothing to promote", tree.TreeId)
	case tree.TreeType != tpb.TreeType_LOG && tree.TreeType != tpb.TreeType_PREORDERED_LOG:
		return fmt.Errorf("tree %d is %s, not a secondary's PREORDERED_LOG tree", tree.TreeId, tree.TreeType)
	case tree.TreeState != tpb.TreeState_ACTIVE && tree.TreeState != tpb.TreeState_FROZEN:
		return fmt.Errorf("tree %d is %s", tree.TreeId, tree.TreeState)
	case tree.TreeType == tpb.TreeType_PREORDERED_LOG && tree.TreeState == tpb.TreeState_FROZEN && !resuming:
		return fmt.Errorf("tree %d is FROZEN but no promotion is in progress (%s missing): unfreeze it or find out who froze it",
			tree.TreeId, cfg.JournalFile)
	}
	return nil
}

type promotion struct {
	cfg  Config
	id   int64
	tree *tpb.Tree
}

func (p *promotion) say(format string, args ...any) {
	if p.cfg.Out != nil {
		fmt.Fprintf(p.cfg.Out, format+"\n", args...)
	}
}

func (p *promotion) plan(ctx context.Context) error {
	p.say("dry run: tree %d is %s and %s", p.id, p.tree.TreeType, p.tree.TreeState)
	if n, err := p.cfg.Engine.PendingSequencedLeaves(ctx, p.id); err == nil {
		p.say("1. integrate stored leaves (%d not integrated yet) and check none is left", n)
	} else {
		p.say("1. integrate stored leaves and check none is left (%v)", err)
	}
	if p.cfg.Published != nil {
		p.say("2. check the local tree extends the published head of size %d", p.cfg.Published.Size)
	} else {
		p.say("2. no published head given: the local tree is not checked against one")
	}
	p.say("3. freeze tree %d; 4. change its type to LOG; 5. unfreeze it", p.id)
	p.say("6. write %s with startup=local-tree", primary.StartupFile(p.cfg.STHFile))
	return nil
}

func (p *promotion) begin(context.Context) error {
	err := atomicfile.WriteNew(p.cfg.JournalFile, []byte(fmt.Sprintf("promoting tree-id=%d\n", p.id)), 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// refresh re-reads the tree after an update.
func (p *promotion) refresh(ctx context.Context) error {
	t, err := p.cfg.Engine.Tree(ctx, p.id)
	if err != nil {
		return err
	}
	p.tree = t
	return nil
}

func (p *promotion) integrate(ctx context.Context) error {
	if p.tree.TreeType == tpb.TreeType_LOG {
		return nil // changed already: integration was checked before
	}
	n, err := p.cfg.Engine.PendingSequencedLeaves(ctx, p.id)
	if errors.Is(err, trillian.ErrUnsupported) {
		return errors.New("this Trillian cannot report stored but unintegrated leaves: promote needs the node's embedded store, or -storage naming an external Trillian's database")
	}
	if err != nil {
		return err
	}
	if n > 0 && p.tree.TreeState == tpb.TreeState_FROZEN {
		return fmt.Errorf("%d stored leaves are not integrated and the tree is FROZEN: unfreeze it so the sequencer can integrate them", n)
	}
	deadline := time.Now().Add(p.cfg.IntegrateTimeout)
	for n > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d stored leaves are still not integrated after %v (a gap in the stored indices?)", n, p.cfg.IntegrateTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if n, err = p.cfg.Engine.PendingSequencedLeaves(ctx, p.id); err != nil {
			return err
		}
	}
	th, err := p.localHead(ctx)
	if err != nil {
		return err
	}
	p.say("integrated: tree size %d, no stored leaf left out", th.Size)
	return nil
}

func (p *promotion) localHead(ctx context.Context) (sigsum.TreeHead, error) {
	return p.cfg.Engine.OpenTreeByID(p.id).TreeHead(ctx)
}

func (p *promotion) check(ctx context.Context) error {
	pub := p.cfg.Published
	if pub == nil {
		p.say("no published head given: skipping the check against it")
		return nil
	}
	th, err := p.localHead(ctx)
	if err != nil {
		return err
	}
	switch {
	case th.Size < pub.Size:
		return fmt.Errorf("local tree has %d leaves, the published head %d: promoting would lose published leaves; promote the most advanced secondary", th.Size, pub.Size)
	case th.Size == pub.Size:
		if th.RootHash != pub.RootHash {
			return fmt.Errorf("local root at size %d differs from the published head's", th.Size)
		}
	case pub.Size > 0:
		proof, err := p.cfg.Engine.OpenTreeByID(p.id).ConsistencyProof(ctx, pub.Size, th.Size)
		if err != nil {
			return err
		}
		if err := proof.Verify(&pub.TreeHead, &th); err != nil {
			return fmt.Errorf("local tree is not consistent with the published head: %w", err)
		}
	}
	p.say("checked: local tree (size %d) extends the published head (size %d)", th.Size, pub.Size)
	return nil
}

func (p *promotion) update(ctx context.Context, what string, tree *tpb.Tree, path string) error {
	tree.TreeId = p.id
	if _, err := p.cfg.Engine.Admin.UpdateTree(ctx, &tpb.UpdateTreeRequest{Tree: tree,
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{path}}}); err != nil {
		return fmt.Errorf("%s tree %d: %w", what, p.id, err)
	}
	if err := p.refresh(ctx); err != nil {
		return err
	}
	p.say("%s: tree %d is %s and %s", what, p.id, p.tree.TreeType, p.tree.TreeState)
	return nil
}

func (p *promotion) freeze(ctx context.Context) error {
	if p.tree.TreeType != tpb.TreeType_PREORDERED_LOG || p.tree.TreeState == tpb.TreeState_FROZEN {
		return nil
	}
	return p.update(ctx, "froze", &tpb.Tree{TreeState: tpb.TreeState_FROZEN}, "tree_state")
}

func (p *promotion) changeType(ctx context.Context) error {
	if p.tree.TreeType == tpb.TreeType_LOG {
		return nil
	}
	return p.update(ctx, "changed type", &tpb.Tree{TreeType: tpb.TreeType_LOG}, "tree_type")
}

func (p *promotion) unfreeze(ctx context.Context) error {
	if p.tree.TreeState == tpb.TreeState_ACTIVE {
		return nil
	}
	return p.update(ctx, "unfroze", &tpb.Tree{TreeState: tpb.TreeState_ACTIVE}, "tree_state")
}

func (p *promotion) startup(context.Context) error {
	mode, err := primary.ReadStartupFile(p.cfg.STHFile)
	switch {
	case err == nil && mode == primary.StartupLocalTree:
		return nil
	case err == nil:
		return fmt.Errorf("%s says startup=%s, want local-tree", primary.StartupFile(p.cfg.STHFile), mode)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := primary.WriteStartupFile(p.cfg.STHFile, primary.StartupLocalTree); err != nil {
		return err
	}
	p.say("wrote %s: the new primary signs its local tree first", primary.StartupFile(p.cfg.STHFile))
	return nil
}

func (p *promotion) done(context.Context) error {
	if err := atomicfile.Remove(p.cfg.JournalFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	p.say("promoted tree %d", p.id)
	return nil
}

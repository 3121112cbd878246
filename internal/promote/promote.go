// Package promote turns a stopped secondary's PREORDERED_LOG tree into a LOG tree a primary can start from.
//
// The order is what keeps the log from forking and the tree usable: every stored leaf is integrated first (a LOG
// sequencer would collide with preordered leaves left unintegrated, on every pass, for good); the local tree is
// proven to extend every head the sources showed (Evidence: the head the secondary recorded while following the
// log, saved or fetched published heads, the old primary, other secondaries), and a promotion that cannot prove it
// is refused before anything changes, unless the operator accepts the fork risk in words; only then does the
// journal mark a promotion in progress, and Trillian's three separate updates follow (freeze; type PREORDERED_LOG
// → LOG; unfreeze), then the startup file that makes the new primary sign its local tree. Each step looks at the
// current state first, so a re-run after a crash finishes the job.
package promote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/google/trillian"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Step names one step of a promotion.
type Step string

// The steps, in order.
const (
	StepIntegrate Step = "integrate" // integrate every stored leaf, check none is left
	StepCheck     Step = "check"     // the local tree extends every head the sources showed
	StepBegin     Step = "begin"     // write the journal
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
	Engine *engine.Engine
	// TreeIDFile names the node's tree.
	TreeIDFile string
	// STHFile is the sth file the new primary will use; it must not exist.
	STHFile string
	// JournalFile marks a promotion in progress.
	JournalFile string
	// LogKey is the log's public key: the key the new primary will sign with.
	LogKey sigsum.PublicKey
	// Evidence is what each source showed of how far the log has gone; the local tree must extend every head in
	// it, and at least one source must have answered.
	Evidence []Evidence
	// AcceptForkRisk promotes even when the evidence does not prove the promotion safe (the local tree is behind a
	// source, disagrees with one, or no source answered): the new primary may then sign a tree that forks the log.
	AcceptForkRisk bool
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
	id, err := engine.ReadTreeIDFile(cfg.TreeIDFile)
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
	p := &promotion{cfg: cfg, id: id, tree: tree, resuming: resuming}
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
		{StepIntegrate, p.integrate},
		{StepCheck, p.check},
		{StepBegin, p.begin},
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
func refusals(cfg Config, tree *trillian.Tree, resuming bool) error {
	if _, err := os.Stat(cfg.STHFile); err == nil {
		return fmt.Errorf("sth file %s exists: this node has run as a primary; refusing to promote", cfg.STHFile)
	}
	switch {
	case tree.TreeType == trillian.TreeType_LOG && tree.TreeState == trillian.TreeState_ACTIVE && !resuming:
		return fmt.Errorf("tree %d is already LOG and ACTIVE: nothing to promote", tree.TreeId)
	case tree.TreeType != trillian.TreeType_LOG && tree.TreeType != trillian.TreeType_PREORDERED_LOG:
		return fmt.Errorf("tree %d is %s, not a secondary's PREORDERED_LOG tree", tree.TreeId, tree.TreeType)
	case tree.TreeState != trillian.TreeState_ACTIVE && tree.TreeState != trillian.TreeState_FROZEN:
		return fmt.Errorf("tree %d is %s", tree.TreeId, tree.TreeState)
	case tree.TreeType == trillian.TreeType_PREORDERED_LOG && tree.TreeState == trillian.TreeState_FROZEN && !resuming:
		return fmt.Errorf("tree %d is FROZEN but no promotion is in progress (%s missing): unfreeze it or find out who froze it",
			tree.TreeId, cfg.JournalFile)
	}
	return nil
}

type promotion struct {
	cfg      Config
	id       int64
	tree     *trillian.Tree
	resuming bool // a journal exists: an earlier run passed the check and began changing the tree
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
	p.say("2. check that the local tree extends every head the sources show:")
	if err := p.prove(ctx); err != nil {
		p.say("   %v", err)
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
	if p.tree.TreeType == trillian.TreeType_LOG {
		return nil // changed already: integration was checked before
	}
	n, err := p.cfg.Engine.PendingSequencedLeaves(ctx, p.id)
	if errors.Is(err, engine.ErrUnsupported) {
		return errors.New("this Trillian cannot report stored but unintegrated leaves: promote needs the node's embedded store, or -storage naming an external Trillian's database")
	}
	if err != nil {
		return err
	}
	if n > 0 && p.tree.TreeState == trillian.TreeState_FROZEN {
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
	if p.resuming {
		p.say("resuming: the sources were checked when this promotion began")
		return nil
	}
	return p.prove(ctx)
}

// RefusedError is a promotion refused because the evidence does not prove it safe. Its message is one line naming
// each source that showed a problem and what it showed.
type RefusedError struct {
	Problems []string
}

func (e *RefusedError) Error() string {
	return "refusing to promote: " + strings.Join(e.Problems, "; ") +
		" (-accept-fork-risk promotes anyway, at the risk of forking the log)"
}

// prove checks the local tree against every source's head, saying what each showed. It refuses, with a
// *RefusedError, when a head is ahead of the local tree or disagrees with it, or when no source answered, unless
// AcceptForkRisk is set.
func (p *promotion) prove(ctx context.Context) error {
	th, err := p.localHead(ctx)
	if err != nil {
		return err
	}
	var problems []string
	answered := 0
	for i := range p.cfg.Evidence {
		e := &p.cfg.Evidence[i]
		if e.Err != nil {
			p.say("source %s: unavailable: %s", e.Source, oneLine(e.Err))
			continue
		}
		answered++
		if err := p.extends(ctx, th, e.Head); err != nil {
			problems = append(problems, fmt.Sprintf("%s shows a %s of size %d: %s", e.Source, e.what(), e.Head.Size, oneLine(err)))
			continue
		}
		p.say("source %s: %s of size %d; the local tree (size %d) extends it", e.Source, e.what(), e.Head.Size, th.Size)
	}
	if answered == 0 {
		problems = append(problems, "no source showed how far the log has gone (no recorded head, no -published, "+
			"no old primary, no -secondary, no witness answered), so the local tree cannot be proven to hold every published leaf")
	}
	if len(problems) == 0 {
		p.say("checked: the local tree (size %d) extends every head the %d answering sources showed", th.Size, answered)
		return nil
	}
	refused := &RefusedError{Problems: problems}
	if !p.cfg.AcceptForkRisk {
		return refused
	}
	p.say("WARNING: -accept-fork-risk: promoting although %s. If the log published a tree this node does not extend, "+
		"the new primary will sign a fork: witnesses will refuse its heads and monitors will report the log as forked.",
		strings.Join(problems, "; "))
	return nil
}

// extends checks that the local tree th extends head: the same root at the same size, or a consistency proof.
func (p *promotion) extends(ctx context.Context, th, head sigsum.TreeHead) error {
	if head.Size > th.Size {
		return fmt.Errorf("the local tree has only %d leaves: promoting would drop leaves the log may have published; promote the most advanced secondary", th.Size)
	}
	err := sigsum.Extends(head, th, func() (sigsum.ConsistencyProof, error) {
		proof, err := p.cfg.Engine.OpenTreeByID(p.id).ConsistencyProof(ctx, head.Size, th.Size)
		if err != nil {
			return proof, fmt.Errorf("local consistency proof %d→%d: %w", head.Size, th.Size, err)
		}
		return proof, nil
	})
	if errors.Is(err, sigsum.ErrNotExtends) {
		return fmt.Errorf("the local tree does not extend it: %w", err)
	}
	return err
}

// oneLine flattens an error message to one bounded line.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func (p *promotion) update(ctx context.Context, what string, tree *trillian.Tree, path string) error {
	tree.TreeId = p.id
	if _, err := p.cfg.Engine.Admin.UpdateTree(ctx, &trillian.UpdateTreeRequest{Tree: tree,
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
	if p.tree.TreeType != trillian.TreeType_PREORDERED_LOG || p.tree.TreeState == trillian.TreeState_FROZEN {
		return nil
	}
	return p.update(ctx, "froze", &trillian.Tree{TreeState: trillian.TreeState_FROZEN}, "tree_state")
}

func (p *promotion) changeType(ctx context.Context) error {
	if p.tree.TreeType == trillian.TreeType_LOG {
		return nil
	}
	return p.update(ctx, "changed type", &trillian.Tree{TreeType: trillian.TreeType_LOG}, "tree_type")
}

func (p *promotion) unfreeze(ctx context.Context) error {
	if p.tree.TreeState == trillian.TreeState_ACTIVE {
		return nil
	}
	return p.update(ctx, "unfroze", &trillian.Tree{TreeState: trillian.TreeState_ACTIVE}, "tree_state")
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

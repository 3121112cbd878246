package secondary

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/repeatlog"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// minFollowInterval bounds how often the log's published head is fetched: it changes once per rotation at most.
const minFollowInterval = time.Second

// ErrLogForked is wrapped by the error the follower reports when the log itself published two heads that are not
// consistent (two roots for one size, or a later head that does not extend an earlier one). It is evidence against
// the log, kept until the process restarts, and makes the node unready: an operator must look.
var ErrLogForked = errors.New("the log published inconsistent tree heads")

// Published returns the newest published head of the log this secondary has verified (signed with the log key,
// cosignatures checked against the trust policy when one is configured, consistent with every earlier one it
// recorded), and when it last confirmed from the primary that it is still the newest (zero: never in this
// process). ok is false when it knows none.
func (s *Secondary) Published() (cth sigsum.CosignedTreeHead, checked time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.published == nil {
		return cth, s.publishedChecked, false
	}
	return *s.published, s.publishedChecked, true
}

// loadPublished reads the head recorded by an earlier run, if any.
func (s *Secondary) loadPublished() error {
	if s.cfg.PublishedFile == "" {
		return nil
	}
	cth, err := witness.LoadPublished(s.cfg.PublishedFile, *s.cfg.LogKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secondary: %w", err)
	}
	cth.Cosignatures = s.verifiedCosignatures(&cth)
	s.published = &cth
	s.cfg.Metrics.Published(cth.Size)
	return nil
}

// verifiedCosignatures keeps the cosignatures that verify with the trust policy's witnesses. A secondary without a
// policy has nothing to check them with and keeps them as the log served them (the log's signature is checked).
func (s *Secondary) verifiedCosignatures(cth *sigsum.CosignedTreeHead) []sigsum.Cosignature {
	if s.cfg.Witnesses == nil {
		return cth.Cosignatures
	}
	return witness.VerifyCosignatures(*s.cfg.LogKey, &cth.TreeHead, s.cfg.Witnesses, cth.Cosignatures)
}

// follow fetches the log's published head every interval until ctx is done, and records each newer one that
// verifies (followOnce). A failure is logged when it starts or changes, every ten minutes with a count, and when
// it ends.
func (s *Secondary) follow(ctx context.Context) {
	every := max(s.cfg.Interval, minFollowInterval)
	var fails repeatlog.Failures
	reached := false // until the log first answers, it is most often still starting: told at info level
	for {
		err := s.followOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && errors.Is(err, ErrLogForked):
			if log, _ := fails.Fail(time.Now(), err); log {
				s.logger.Error("LOG FORK: the log's published tree heads disagree; the evidence is kept, operator action needed", "err", err)
			}
		case err != nil:
			if log, n := fails.Fail(time.Now(), err); log && reached {
				s.logger.Warn("cannot follow the log's published tree head", "err", err, "failures", n)
			} else if log {
				s.logger.Info("waiting for the log's published tree head", "err", err, "failures", n)
			}
		default:
			select { // the read API moves to the head in its own goroutine: reading a large tree takes a while
			case s.readsWake <- struct{}{}:
			default:
			}
			if log, n := fails.OK(); log && reached {
				s.logger.Info("following the log's published tree head again", "failures", n)
			} else if log {
				s.logger.Info("following the log's published tree head", "failures", n)
			}
			reached = true
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

// followOnce fetches the log's published head and records it if it is newer than the recorded one and verifies:
// the log's signature, the policy's cosignatures, and consistency with the recorded head (through the log's public
// get-consistency-proof when this replica does not hold the new size yet). The newest head is written to
// PublishedFile before it is recorded in memory, so promote can rely on the file.
func (s *Secondary) followOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cth, err := s.cfg.PrimaryPublic.GetTreeHead(ctx)
	if err != nil {
		return fmt.Errorf("fetching the published tree head: %w", err)
	}
	if !cth.Verify(*s.cfg.LogKey) {
		return fmt.Errorf("the published tree head (size %d) is not signed by the log key", cth.Size)
	}
	cth.Cosignatures = s.verifiedCosignatures(&cth)
	if cth.Size == 0 && cth.RootHash != sigsum.RootHash(nil) {
		return fmt.Errorf("%w: the published empty tree head has root %s", ErrLogForked, cth.RootHash)
	}
	rec, _, known := s.Published()
	switch {
	case !known:
	case cth.Size < rec.Size:
		// An older head than one the log published before: a primary restored from an old state, or a stale cache.
		// It is only a fork if it disagrees with the recorded one; either way it is not news.
		if err := s.checkConsistent(ctx, &cth.TreeHead, &rec.TreeHead); err != nil {
			return s.forked(err)
		}
		s.confirmed()
		return fmt.Errorf("the log serves tree head size %d, older than size %d recorded before", cth.Size, rec.Size)
	case cth.Size == rec.Size && cth.RootHash != rec.RootHash:
		return s.forked(fmt.Errorf("%w: two tree heads of size %d, roots %s (recorded) and %s (now)",
			ErrLogForked, cth.Size, rec.RootHash, cth.RootHash))
	case cth.Size == rec.Size && len(cth.Cosignatures) <= len(rec.Cosignatures):
		s.confirmed()
		return nil
	case cth.Size > rec.Size:
		if err := s.checkConsistent(ctx, &rec.TreeHead, &cth.TreeHead); err != nil {
			return s.forked(err)
		}
	}
	if s.cfg.PublishedFile != "" {
		if err := witness.SavePublished(s.cfg.PublishedFile, cth); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.published = &cth
	s.mu.Unlock()
	s.cfg.Metrics.Published(cth.Size)
	s.confirmed()
	return nil
}

// confirmed notes that the recorded head was just confirmed as the log's newest.
func (s *Secondary) confirmed() {
	s.mu.Lock()
	s.publishedChecked = time.Now()
	s.mu.Unlock()
	s.cfg.Metrics.PublishedChecked()
}

// forked keeps err (wrapping ErrLogForked) as evidence against the log and returns it; other errors (a proof that
// could not be fetched) are returned as they are.
func (s *Secondary) forked(err error) error {
	if errors.Is(err, ErrLogForked) {
		s.mu.Lock()
		if s.logForked == nil {
			s.logForked = err
		}
		s.mu.Unlock()
	}
	return err
}

// checkConsistent checks that newer extends older (older.Size < newer.Size), both published by the log: with this
// replica's own proof when it holds newer's size and agrees with it, else with the log's public consistency proof.
func (s *Secondary) checkConsistent(ctx context.Context, older, newer *sigsum.TreeHead) error {
	err := sigsum.Extends(*older, *newer, func() (sigsum.ConsistencyProof, error) {
		proof, err := s.cfg.PrimaryPublic.GetConsistencyProof(ctx, older.Size, newer.Size)
		if err != nil {
			return proof, fmt.Errorf("fetching the log's consistency proof %d→%d: %w", older.Size, newer.Size, err)
		}
		return proof, nil
	})
	if errors.Is(err, sigsum.ErrNotExtends) {
		return fmt.Errorf("%w: %w", ErrLogForked, err)
	}
	return err
}

// staleAfter is how long the recorded head may go unconfirmed before the secondary reports itself degraded.
func (s *Secondary) staleAfter() time.Duration {
	return 10*max(s.cfg.Interval, minFollowInterval) + s.cfg.Timeout
}

// Degraded says why a ready secondary knows less than it should, or "": it does not follow the log's published
// head (promote then cannot prove it safe), has not confirmed it lately, or cannot replicate now.
func (s *Secondary) Degraded() string {
	var reasons []string
	if s.cfg.PrimaryPublic == nil {
		reasons = append(reasons, "does not follow the log's published head (set primary-public-url and log-public-key-file): promote cannot prove this node safe")
	} else if _, checked, _ := s.Published(); checked.IsZero() || time.Since(checked) > s.staleAfter() {
		when := "not yet"
		if !checked.IsZero() {
			when = time.Since(checked).Round(time.Second).String() + " ago"
		}
		reasons = append(reasons, "the log's published head was last confirmed "+when)
	}
	if err := s.Healthy(); err != nil {
		reasons = append(reasons, "replication: "+oneLine(err.Error()))
	}
	return strings.Join(reasons, "; ")
}

// Detail is one line for /readyz: the log's published head this node knows, when it last confirmed it, and the
// replica's size.
func (s *Secondary) Detail() string {
	own := s.TreeHead().Size
	cth, checked, ok := s.Published()
	if !ok {
		return fmt.Sprintf("published head: none known; replica size %d", own)
	}
	when := "not yet confirmed in this run"
	if !checked.IsZero() {
		when = "confirmed " + time.Since(checked).Round(time.Second).String() + " ago"
	}
	return fmt.Sprintf("published head: size %d with %d cosignatures, %s; replica size %d", cth.Size, len(cth.Cosignatures), when, own)
}

// oneLine flattens a message to one bounded line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

package ratelimit

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
)

// stateVersion identifies the state file format.
const stateVersion = 1

// stateFile is the JSON state file: the non-empty buckets of every counter still inside the window, and the
// journal generation that continues it (journal.go). Reservations are not saved: after a restart their handlers
// are gone.
type stateFile struct {
	Version       int                 `json:"version"`
	BucketSeconds int                 `json:"bucket_seconds"`
	Counters      map[string][]bucket `json:"counters"`
	// Journal is the first journal generation to replay over the counters; 0 in files from before the journal
	// (a binary from then ignores the field, and only loses the charges in the journal).
	Journal uint64 `json:"journal,omitempty"`
}

// load reads the state file and replays the journals that continue it, returning the last journal generation
// seen. A missing file is an empty state; an unreadable or corrupt one is an error, since starting empty would
// silently reset every quota (atomicfile writes never leave a torn file, and a journal's torn tail is ignored).
func (l *Limiter) load() (uint64, error) {
	var st stateFile
	b, err := os.ReadFile(l.cfg.StateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st = stateFile{Version: stateVersion, BucketSeconds: int(bucketWidth.Seconds())}
	case err != nil:
		return 0, fmt.Errorf("rate limit state: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, fmt.Errorf("rate limit state %s: %w", l.cfg.StateFile, err)
		}
	}
	if st.Version != stateVersion || st.BucketSeconds != int(bucketWidth.Seconds()) {
		return 0, fmt.Errorf("rate limit state %s: version %d with %d s buckets, want version %d with %d s buckets",
			l.cfg.StateFile, st.Version, st.BucketSeconds, stateVersion, int(bucketWidth.Seconds()))
	}
	counters := map[string]*window{}
	for name, bs := range st.Counters {
		w := &window{}
		slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.Minute, b.Minute) })
		for _, bk := range bs {
			if bk.Count < 0 {
				return 0, fmt.Errorf("rate limit state %s: counter %q has a negative count", l.cfg.StateFile, name)
			}
			if bk.Count > 0 {
				w.add(bk.Minute, bk.Count)
			}
		}
		counters[name] = w
	}
	gens, err := journalFiles(l.cfg.StateFile)
	if err != nil {
		return 0, fmt.Errorf("rate limit journal: %w", err)
	}
	last := st.Journal
	for _, g := range gens {
		if g < st.Journal {
			continue // in the snapshot already; removed by the next save
		}
		if err := replayJournal(journalName(l.cfg.StateFile, g), counters); err != nil {
			return 0, err
		}
		last = g
	}
	minute := minuteOf(l.now())
	for name, w := range counters {
		if w.count(minute) > 0 {
			l.counters[name] = w
		}
	}
	return last, nil
}

// save writes the counters to the state file, dropping the expired ones from memory on the way, and starts a
// new journal generation, removing the journals the state file now holds.
func (l *Limiter) save() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	st := stateFile{Version: stateVersion, BucketSeconds: int(bucketWidth.Seconds()), Counters: map[string][]bucket{}}
	l.pruneLocked()
	for name, w := range l.counters {
		st.Counters[name] = slices.Clone(w.buckets)
	}
	var rot rotation
	if l.journal != nil {
		// Under l.mu, with the copy: every charge is in the copy or in the new journal.
		var err error
		if rot, err = l.journal.rotate(); err != nil {
			l.mu.Unlock()
			return fmt.Errorf("rate limit state: %w", err)
		}
		st.Journal = rot.gen
	}
	l.dirty = false
	l.mu.Unlock()
	defer func() { rot.finish() }() // on the error paths; a finished rotation is reset to none
	b, err := json.Marshal(&st)
	if err == nil {
		err = atomicfile.Write(l.cfg.StateFile, append(b, '\n'), 0o600)
	}
	if err != nil {
		// The old journals stay: a restart replays them with the new one over the old state file.
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		return fmt.Errorf("rate limit state: %w", err)
	}
	if l.journal != nil {
		rot.finish()
		rot = rotation{}
		if err := removeJournalsBefore(l.cfg.StateFile, st.Journal); err != nil {
			l.logger.Warn("removing old rate limit journals", "err", err)
		}
	}
	return nil
}

// removeJournalsBefore removes the journals older than generation gen, which a state file holds.
func removeJournalsBefore(state string, gen uint64) error {
	gens, err := journalFiles(state)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if g < gen {
			if err := os.Remove(journalName(state, g)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// pruneLocked drops counters with nothing left in the window, so memory follows recent submitters only.
func (l *Limiter) pruneLocked() {
	minute := minuteOf(l.now())
	for name, w := range l.counters {
		if w.count(minute) == 0 {
			delete(l.counters, name)
		}
	}
}

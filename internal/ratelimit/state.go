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

// stateFile is the JSON state file: the non-empty buckets of every counter still inside the window.
// Reservations are not saved: after a restart their handlers are gone.
type stateFile struct {
	Version       int                 `json:"version"`
	BucketSeconds int                 `json:"bucket_seconds"`
	Counters      map[string][]bucket `json:"counters"`
}

// load reads the state file. A missing file is an empty state; an unreadable or corrupt one is an error, since
// starting empty would silently reset every quota (atomicfile writes never leave a torn file).
func (l *Limiter) load() error {
	b, err := os.ReadFile(l.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rate limit state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("rate limit state %s: %w", l.cfg.StateFile, err)
	}
	if st.Version != stateVersion || st.BucketSeconds != int(bucketWidth.Seconds()) {
		return fmt.Errorf("rate limit state %s: version %d with %d s buckets, want version %d with %d s buckets",
			l.cfg.StateFile, st.Version, st.BucketSeconds, stateVersion, int(bucketWidth.Seconds()))
	}
	minute := minuteOf(l.now())
	for name, bs := range st.Counters {
		w := &window{}
		slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.Minute, b.Minute) })
		for _, bk := range bs {
			if bk.Count < 0 {
				return fmt.Errorf("rate limit state %s: counter %q has a negative count", l.cfg.StateFile, name)
			}
			if bk.Count > 0 {
				w.add(bk.Minute, bk.Count)
			}
		}
		if w.count(minute) > 0 {
			l.counters[name] = w
		}
	}
	return nil
}

// save writes the counters to the state file, dropping the expired ones from memory on the way.
func (l *Limiter) save() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	st := stateFile{Version: stateVersion, BucketSeconds: int(bucketWidth.Seconds()), Counters: map[string][]bucket{}}
	l.pruneLocked()
	for name, w := range l.counters {
		st.Counters[name] = slices.Clone(w.buckets)
	}
	l.dirty = false
	l.mu.Unlock()
	b, err := json.Marshal(&st)
	if err == nil {
		err = atomicfile.Write(l.cfg.StateFile, append(b, '\n'), 0o600)
	}
	if err != nil {
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		return fmt.Errorf("rate limit state: %w", err)
	}
	return nil
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

package ratelimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
)

// The journal makes every charge durable before Charge returns, so that a crash (SIGKILL, power loss) loses no
// charge that add-leaf answered for. The state file is a snapshot written now and then; the journal holds the
// charges made since, one line each, appended to <state file>.journal.<generation>. A snapshot names the
// generation it continues with: loading replays that journal and any later one over it. Charges made at the same
// time share one write and one fsync (group commit), so the journal costs no fsync per leaf.

// journalSuffix separates the state file's name from a journal's generation.
const journalSuffix = ".journal."

// errJournalClosed is the error of a charge made after Close.
var errJournalClosed = errors.New("rate limit journal closed")

// journal appends charge records to the current journal file, batching concurrent ones.
type journal struct {
	state string // the state file's path
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	f        *os.File // current journal file; nil before the first rotate
	gen      uint64   // its generation
	queue    []*jbatch
	inflight *jbatch // being written by the flusher
	closed   bool
}

// jbatch is records bound for one journal file, written and synced together.
type jbatch struct {
	f    *os.File
	dir  bool // the first batch of a new file: sync the directory too, so the file's name is durable
	recs []byte
	done chan struct{}
	err  error
}

func journalName(state string, gen uint64) string {
	return state + journalSuffix + strconv.FormatUint(gen, 10)
}

func newJournal(state string, gen uint64) *journal {
	j := &journal{state: state, gen: gen, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go j.flusher()
	return j
}

// enqueue adds rec to the batch for the current file and returns that batch; wait on it for durability.
func (j *journal) enqueue(rec []byte) *jbatch {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || j.f == nil {
		b := &jbatch{done: make(chan struct{}), err: errJournalClosed}
		close(b.done)
		return b
	}
	var b *jbatch
	if k := len(j.queue); k > 0 && j.queue[k-1].f == j.f {
		b = j.queue[k-1]
	} else {
		b = &jbatch{f: j.f, done: make(chan struct{})}
		j.queue = append(j.queue, b)
	}
	b.recs = append(b.recs, rec...)
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return b
}

// wait returns once the batch is written and synced, with the error doing so.
func (b *jbatch) wait() error {
	<-b.done
	return b.err
}

// flusher writes queued batches, oldest first, until stopped; then it writes what is left.
func (j *journal) flusher() {
	defer close(j.done)
	for {
		select {
		case <-j.kick:
			j.flush()
		case <-j.stop:
			j.flush()
			return
		}
	}
}

func (j *journal) flush() {
	for {
		j.mu.Lock()
		if len(j.queue) == 0 {
			j.mu.Unlock()
			return
		}
		b := j.queue[0]
		j.queue = j.queue[1:]
		j.inflight = b
		j.mu.Unlock()

		_, err := b.f.Write(b.recs)
		if err == nil {
			err = b.f.Sync()
		}
		if err == nil && b.dir {
			err = atomicfile.SyncDir(filepath.Dir(b.f.Name()))
		}
		if err != nil {
			err = fmt.Errorf("rate limit journal %s: %w", b.f.Name(), err)
		}
		b.err = err

		j.mu.Lock()
		j.inflight = nil
		j.mu.Unlock()
		close(b.done)
	}
}

// rotation is a switch to a new journal file: the old file is closed once its last batch is written.
type rotation struct {
	gen  uint64
	old  *os.File
	last *jbatch // the old file's last batch, nil if none is pending
}

// rotate starts journal generation gen+1: later records go to a new file. Call it with the counters it
// snapshot, so that every record in the old files is in the snapshot and every later one in the new file; then
// finish the rotation.
func (j *journal) rotate() (rotation, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	gen := j.gen + 1
	f, err := os.OpenFile(journalName(j.state, gen), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return rotation{}, fmt.Errorf("rate limit journal: %w", err)
	}
	r := rotation{gen: gen, old: j.f, last: j.inflight}
	if k := len(j.queue); k > 0 {
		r.last = j.queue[k-1]
	}
	j.f, j.gen = f, gen
	// The new file's first batch makes its name durable; an empty file needs no such care.
	j.queue = append(j.queue, &jbatch{f: f, dir: true, done: make(chan struct{})})
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return r, nil
}

// finish waits for the old file's last batch and closes the old file.
func (r rotation) finish() {
	if r.last != nil {
		<-r.last.done
	}
	if r.old != nil {
		r.old.Close()
	}
}

// close writes what is queued and closes the current file.
func (j *journal) close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	if j.f != nil {
		return j.f.Close()
	}
	return nil
}

// chargeRecord is the journal line of a charge at minute to counters: "<minute> <counter>...\n". Counter names
// hold no spaces (key hashes in hex, normalised domains).
func chargeRecord(minute int64, counters []string) []byte {
	b := strconv.AppendInt(nil, minute, 10)
	for _, c := range counters {
		b = append(b, ' ')
		b = append(b, c...)
	}
	return append(b, '\n')
}

// journalFiles lists the journal generations present beside the state file, in order.
func journalFiles(state string) ([]uint64, error) {
	names, err := filepath.Glob(globEscape(state) + journalSuffix + "*")
	if err != nil {
		return nil, err
	}
	var gens []uint64
	for _, n := range names {
		g, err := strconv.ParseUint(strings.TrimPrefix(n, state+journalSuffix), 10, 64)
		if err == nil {
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

// globEscape quotes the glob metacharacters of a literal path.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// replayJournal applies the complete records of the journal file at path to counters. A last line without its
// newline is a write the crash cut short, whose charges were never answered for: it is ignored. Any other line
// that does not parse is corruption, an error, as for the state file.
func replayJournal(path string, counters map[string]*window) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("rate limit journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // a torn tail, or nothing
		}
		if err != nil {
			return fmt.Errorf("rate limit journal %s: %w", path, err)
		}
		fields := bytes.Fields(line)
		if len(fields) < 2 {
			return fmt.Errorf("rate limit journal %s: line %d: want a minute and counters", path, n)
		}
		minute, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil || minute < 0 {
			return fmt.Errorf("rate limit journal %s: line %d: bad minute", path, n)
		}
		for _, c := range fields[1:] {
			w := counters[string(c)]
			if w == nil {
				w = &window{}
				counters[string(c)] = w
			}
			w.add(minute, 1)
		}
	}
}

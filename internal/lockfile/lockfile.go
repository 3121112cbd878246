//go:build unix

// Package lockfile gives one process at a time exclusive use of a resource (a node's data directory, a store)
// through an flock on a lock file that records the holder's PID.
//
// flock belongs to the open file description, so a second open in the same process conflicts too, and the kernel
// drops the lock when its holder dies: a crashed node never leaves a stale lock behind.
package lockfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped when another process (or another open in this one) holds the lock.
var ErrLocked = errors.New("locked")

// Lock is a held lock.
type Lock struct {
	path string
	f    *os.File
}

// Acquire takes the lock at path without waiting; if it is held, the error wraps ErrLocked and names the holder.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "unknown"
			if b, rerr := io.ReadAll(io.LimitReader(f, 64)); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is held by process %s", ErrLocked, path, holder)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Record who holds the lock, for the error message of the next contender.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing lock file: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing lock file: %w", err)
	}
	return &Lock{path: path, f: f}, nil
}

// Release empties the PID record and drops the lock. The file stays: removing it would let two processes lock two
// different inodes of one path.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	terr := f.Truncate(0)
	uerr := unix.Flock(int(f.Fd()), unix.LOCK_UN)
	cerr := f.Close()
	if err := errors.Join(terr, uerr, cerr); err != nil {
		return fmt.Errorf("releasing lock %s: %w", l.path, err)
	}
	return nil
}

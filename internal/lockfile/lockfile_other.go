//go:build !unix

package lockfile

import "errors"

// ErrLocked is wrapped when another process holds the lock.
var ErrLocked = errors.New("locked")

// Lock is a held lock.
type Lock struct{}

// Acquire refuses: without flock there is no way to keep two processes off one resource.
func Acquire(path string) (*Lock, error) {
	return nil, errors.New("locking is only implemented on unix systems")
}

// Release does nothing.
func (l *Lock) Release() error { return nil }

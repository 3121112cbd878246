package engine

import (
	"context"
	"sync"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
)

// changes tells waiters that the embedded engine committed a read-write transaction: the sequencer integrated
// leaves (or looked and found none). A waiter takes the channel before reading the tree head and waits on it when
// the head is not yet what it wants, so no commit can slip between the read and the wait.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func newChanges() *changes { return &changes{ch: make(chan struct{})} }

// next returns a channel closed by the next commit.
func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// notifyingStorage is the embedded engine's log storage, reporting every successful read-write transaction. The
// sequencer integrates leaves in one, so this is the moment a tree can grow.
type notifyingStorage struct {
	storage.LogStorage
	changes *changes
}

func (s notifyingStorage) ReadWriteTransaction(ctx context.Context, tree *trillian.Tree, f storage.LogTXFunc) error {
	err := s.LogStorage.ReadWriteTransaction(ctx, tree, f)
	if err == nil {
		s.changes.notify()
	}
	return err
}

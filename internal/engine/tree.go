package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/google/trillian"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
)

// TreeIDFile holds a node's tree id: first line `tree-id=<decimal>`, as the reference server writes it.

// ReadTreeIDFile reads a tree id file.
func ReadTreeIDFile(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading tree id file: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	v, ok := strings.CutPrefix(first, "tree-id=")
	if !ok {
		return 0, fmt.Errorf("tree id file %s: first line is not tree-id=<decimal>", path)
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("tree id file %s: bad tree id %q", path, v)
	}
	return id, nil
}

// WriteTreeIDFile writes a tree id file atomically, refusing to replace an existing one.
func WriteTreeIDFile(path string, id int64) error {
	return atomicfile.WriteNew(path, []byte("tree-id="+strconv.FormatInt(id, 10)+"\n"), 0o644)
}

// TreeConfig says which tree a node uses.
type TreeConfig struct {
	// IDFile is the tree id file. If it does not exist and Create is set, a new tree is made and its id written.
	IDFile string
	// Type is the tree type the node's role needs: LOG (primary) or PREORDERED_LOG (secondary).
	Type trillian.TreeType
	// Create allows making a new tree when IDFile does not exist.
	Create bool
	// DisplayName names a created tree.
	DisplayName string
}

// OpenTree returns the node's tree: the one named in cfg.IDFile, which must have cfg.Type and be ACTIVE, or a
// new one when the file does not exist and cfg.Create is set.
func (e *Engine) OpenTree(ctx context.Context, cfg TreeConfig) (Log, error) {
	id, err := ReadTreeIDFile(cfg.IDFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.Create:
		return e.createTree(ctx, cfg)
	case err != nil:
		return nil, err
	}
	tree, err := e.Admin.GetTree(ctx, &trillian.GetTreeRequest{TreeId: id})
	if err != nil {
		return nil, fmt.Errorf("tree %d (from %s): %w", id, cfg.IDFile, err)
	}
	if tree.TreeType != cfg.Type {
		return nil, fmt.Errorf("tree %d is %s, this role needs %s (promote a secondary's tree with sigsumctl promote)",
			id, tree.TreeType, cfg.Type)
	}
	if tree.TreeState != trillian.TreeState_ACTIVE {
		return nil, fmt.Errorf("tree %d is %s, want ACTIVE", id, tree.TreeState)
	}
	return e.logFor(tree), nil
}

func (e *Engine) createTree(ctx context.Context, cfg TreeConfig) (Log, error) {
	tree, err := e.Admin.CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
		TreeType:        cfg.Type,
		TreeState:       trillian.TreeState_ACTIVE,
		DisplayName:     cfg.DisplayName,
		MaxRootDuration: durationpb.New(0),
	}})
	if err != nil {
		return nil, fmt.Errorf("creating %s tree: %w", cfg.Type, err)
	}
	if _, err := e.Log.InitLog(ctx, &trillian.InitLogRequest{LogId: tree.TreeId}); err != nil {
		return nil, fmt.Errorf("initialising tree %d: %w", tree.TreeId, err)
	}
	// Written last: a crash before this leaves an unused tree, never a file naming a tree that is not ready.
	if err := WriteTreeIDFile(cfg.IDFile, tree.TreeId); err != nil {
		return nil, err
	}
	return e.logFor(tree), nil
}

// OpenTreeByID returns a view of tree id without checking its type or state (operator tools inspect trees in any
// state; roles use OpenTree). It goes through Trillian's gRPC API, even for an embedded engine.
func (e *Engine) OpenTreeByID(id int64) Log { return e.remote(id) }

func (e *Engine) remote(id int64) *remoteLog {
	return &remoteLog{client: e.Log, id: id, growth: e.growth, maxStore: cmp.Or(e.storeBatch, maxStoreDefault),
		settleWait: defaultSettleWait}
}

// logFor is the Log of a tree OpenTree checked: straight into the storage when the engine is embedded.
func (e *Engine) logFor(tree *trillian.Tree) Log {
	if e.embedded == nil {
		return e.remote(tree.TreeId)
	}
	l := &embeddedLog{rpc: e.remote(tree.TreeId), storage: e.embedded.storage, tree: tree, changes: e.embedded.changes,
		leafHashes: e.embedded.leafHashes, leafIndex: e.embedded.leafIndex, leafValues: e.embedded.leafValues}
	if l.leafHashes == nil {
		l.leafHashes = nodeHashes{l}
	}
	return l
}

// Tree returns the stored description of a tree.
func (e *Engine) Tree(ctx context.Context, id int64) (*trillian.Tree, error) {
	t, err := e.Admin.GetTree(ctx, &trillian.GetTreeRequest{TreeId: id})
	if err != nil {
		return nil, fmt.Errorf("tree %d: %w", id, err)
	}
	return t, nil
}

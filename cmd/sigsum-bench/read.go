package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"filippo.io/torchwood"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

const (
	// maxOldSizes is how many old sizes the consistency mode picks from (their roots are computed in setup).
	maxOldSizes = 1024
	// maxSetupSignatures bounds the leaf signatures setup checks (a second of CPU): past it, an even spread of the
	// fetched leaves is checked. The root the leaves hash to binds every one of them to the signed head anyway;
	// checking a million signatures would take the machine half a minute before each read mode.
	maxSetupSignatures = 1 << 15
	// maxBenchTiles bounds the tiles the tile modes ask for (their expected contents are held: 33 MiB of entry
	// bundles at most).
	maxBenchTiles = 1024
)

// verifiedTree is what the read modes check answers against: a tree head whose signature verified, and its first
// leaves, fetched once, whose hashes reproduce that head (directly, or through a verified consistency proof when
// only a prefix was fetched) and whose signatures verified where the submitter key is one of ours.
type verifiedTree struct {
	head     sigsum.CosignedTreeHead
	leaves   []sigsum.Leaf // leaves[0:n], n ≤ head.Size
	hashes   []sigsum.Hash
	oldSizes []uint64
	oldRoots []sigsum.Hash
}

// setupTree fetches and verifies the tree for the read modes. The work is bounded by MaxSetupLeaves.
func (b *Bench) setupTree(ctx context.Context, ec *errorCounter) (*verifiedTree, error) {
	head, err := b.treeHead(ctx)
	if err != nil {
		return nil, err
	}
	if head.Size < 2 {
		return nil, fmt.Errorf("the log has %d leaves: read modes need at least 2 (run add-leaf first)", head.Size)
	}
	n := min(head.Size, uint64(b.cfg.MaxSetupLeaves))
	vt := &verifiedTree{head: head, leaves: make([]sigsum.Leaf, 0, n)}
	for uint64(len(vt.leaves)) < n {
		start := uint64(len(vt.leaves))
		got, err := b.cfg.Client.GetLeaves(ctx, start, min(start+b.cfg.Range, n))
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		vt.leaves = append(vt.leaves, got...)
	}
	vt.hashes = make([]sigsum.Hash, n)
	for i := range vt.leaves {
		vt.hashes[i] = vt.leaves[i].Hash()
	}

	// Old sizes for consistency proofs, and the root over all fetched leaves, in one pass.
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 2))
	maxOld := min(n, head.Size-1)
	for range min(maxOld, maxOldSizes) {
		vt.oldSizes = append(vt.oldSizes, 1+rng.Uint64N(maxOld))
	}
	slices.Sort(vt.oldSizes)
	vt.oldSizes = slices.Compact(vt.oldSizes)
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	cr := rf.NewEmptyRange(0)
	next := 0
	for i := range vt.hashes {
		if err := cr.Append(vt.hashes[i][:], nil); err != nil {
			return nil, err
		}
		for ; next < len(vt.oldSizes) && vt.oldSizes[next] == uint64(i+1); next++ {
			root, err := cr.GetRootHash(nil)
			if err != nil {
				return nil, err
			}
			vt.oldRoots = append(vt.oldRoots, sigsum.Hash(root))
		}
	}
	root, err := cr.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	prefix := sigsum.TreeHead{Size: n, RootHash: sigsum.Hash(root)}
	if n == head.Size {
		if prefix.RootHash != head.RootHash {
			return nil, fmt.Errorf("setup: the leaves of get-leaves do not hash to the signed root of size %d", n)
		}
	} else {
		p, err := b.cfg.Client.GetConsistencyProof(ctx, n, head.Size)
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		if err := p.Verify(&prefix, &head.TreeHead); err != nil {
			return nil, fmt.Errorf("setup: the first %d leaves: %w", n, err)
		}
	}
	b.verifyLeafSignatures(vt.leaves, max(1, len(vt.leaves)/maxSetupSignatures), ec)
	return vt, nil
}

// verifyLeafSignatures checks the signature of every stride-th leaf whose key is one of the submitter keys, in
// parallel. A bad signature counts as an error; leaves of other keys are left unchecked.
func (b *Bench) verifyLeafSignatures(leaves []sigsum.Leaf, stride int, ec *errorCounter) {
	onEveryCPU(len(leaves), stride, func(i int) {
		pub, ok := b.keys[leaves[i].KeyHash]
		if ok && !leaves[i].Verify(pub) {
			ec.add("leaf %d: signature does not verify", i)
		}
	})
}

// read runs one read mode against a verified tree.
func (b *Bench) read(ctx context.Context, mode string, r *Result, ec *errorCounter) {
	vt, err := b.setupTree(ctx, ec)
	if err != nil {
		ec.add("%v", err)
		return
	}
	r.TreeSize = vt.head.Size
	n := uint64(len(vt.leaves))
	th := &vt.head.TreeHead
	var op func(context.Context, *mrand.Rand) error
	switch mode {
	case ModeTreeHead:
		// A head equal to one already verified (the head changes once per interval) needs no second check.
		var mu sync.Mutex
		verified := map[sigsum.SignedTreeHead]bool{vt.head.SignedTreeHead: true}
		op = func(ctx context.Context, _ *mrand.Rand) error {
			got, err := b.cfg.Client.GetTreeHead(ctx)
			if err != nil {
				return err
			}
			mu.Lock()
			ok := verified[got.SignedTreeHead]
			mu.Unlock()
			if ok {
				return nil
			}
			if !got.Verify(b.cfg.LogKey) {
				return fmt.Errorf("get-tree-head: size %d: log signature does not verify", got.Size)
			}
			mu.Lock()
			if len(verified) >= maxOldSizes {
				clear(verified)
			}
			verified[got.SignedTreeHead] = true
			mu.Unlock()
			return nil
		}
	case ModeLeaves:
		op = func(ctx context.Context, rng *mrand.Rand) error {
			var start uint64
			if n > b.cfg.Range {
				start = rng.Uint64N(n - b.cfg.Range + 1)
			}
			end := min(start+b.cfg.Range, n)
			got, err := b.cfg.Client.GetLeaves(ctx, start, end)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				return fmt.Errorf("get-leaves/%d/%d: no leaves", start, end)
			}
			for i := range got {
				if got[i] != vt.leaves[start+uint64(i)] {
					return fmt.Errorf("get-leaves/%d/%d: leaf %d differs from the verified one", start, end, start+uint64(i))
				}
			}
			return nil
		}
	case ModeInclusion:
		op = func(ctx context.Context, rng *mrand.Rand) error {
			i := rng.Uint64N(n)
			return b.checkInclusion(ctx, th, vt.hashes[i], int64(i))
		}
	case ModeConsistency:
		op = func(ctx context.Context, rng *mrand.Rand) error {
			j := rng.IntN(len(vt.oldSizes))
			old := sigsum.TreeHead{Size: vt.oldSizes[j], RootHash: vt.oldRoots[j]}
			if old.Size == th.Size {
				return nil // not reached: old sizes are below the head's size
			}
			p, err := b.cfg.Client.GetConsistencyProof(ctx, old.Size, th.Size)
			if err != nil {
				return err
			}
			return p.Verify(&old, th)
		}
	case ModeTile, ModeEntries:
		// Full tiles within the verified leaves, or the one partial tile of a tree shorter than a tile.
		tiles, width := min(n/torchwood.TileWidth, maxBenchTiles), torchwood.TileWidth
		if tiles == 0 {
			tiles, width = 1, int(n)
		}
		level := 0
		if mode == ModeEntries {
			level = -1
		}
		// What each tile must be, from the verified tree, made once: the load tool shares the CPUs with the log.
		wants := make([][]byte, tiles)
		for tn := range wants {
			for i := uint64(tn) * torchwood.TileWidth; i < uint64(tn)*torchwood.TileWidth+uint64(width); i++ {
				if mode == ModeTile {
					wants[tn] = append(wants[tn], vt.hashes[i][:]...)
				} else {
					wants[tn], _ = torchwood.AppendTileEntry(wants[tn], vt.leaves[i].MarshalBinary())
				}
			}
		}
		op = func(ctx context.Context, rng *mrand.Rand) error {
			tn := rng.Uint64N(tiles)
			path := torchwood.TilePath(tlog.Tile{H: torchwood.TileHeight, L: level, N: int64(tn), W: width})
			got, err := b.cfg.Client.GetTile(ctx, path)
			if err != nil {
				return err
			}
			if want := wants[tn]; string(got) != string(want) {
				return fmt.Errorf("%s: %d bytes differ from the verified tree's", path, len(got))
			}
			return nil
		}
	default:
		ec.add("unknown mode %q", mode)
		return
	}
	r.Latencies, r.Elapsed = b.loop(ctx, op, ec)
}

package witnesstest

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Log is an in-memory Merkle tree with a signing key, for tests that need signed heads and consistency proofs. It
// is safe for concurrent use.
type Log struct {
	signer *sigsum.Ed25519Signer
	mu     sync.Mutex
	tree   *testonly.Tree
}

// NewLog returns an empty log whose key is derived from seed, so tests get distinct, reproducible keys.
func NewLog(seed byte) *Log {
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(Seed(seed)))
	if err != nil {
		panic(err) // a 64-byte key from NewKeyFromSeed cannot be refused
	}
	return &Log{signer: s, tree: testonly.New(rfc6962.DefaultHasher)}
}

// Seed returns a 32-byte Ed25519 seed filled with b.
func Seed(b byte) []byte {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = b
	}
	return s
}

// Signer returns the log's signing key.
func (l *Log) Signer() *sigsum.Ed25519Signer { return l.signer }

// Public returns the log's public key.
func (l *Log) Public() sigsum.PublicKey { return l.signer.Public() }

// Append adds n leaves.
func (l *Log) Append(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], l.tree.Size())
		l.tree.AppendData(b[:])
	}
}

// Size returns the number of leaves.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.Size()
}

// Head returns the signed head of the whole tree.
func (l *Log) Head() sigsum.SignedTreeHead { return l.HeadAt(l.Size()) }

// HeadAt returns the signed head of the tree's first size leaves.
func (l *Log) HeadAt(size uint64) sigsum.SignedTreeHead {
	l.mu.Lock()
	th := sigsum.TreeHead{Size: size, RootHash: sigsum.Hash(l.tree.HashAt(size))}
	l.mu.Unlock()
	sth, err := th.Sign(l.signer)
	if err != nil {
		panic(err) // an in-memory signer does not fail
	}
	return sth
}

// Proof returns the consistency proof from oldSize to newSize; its signature fits witness.Config.Proofs.
func (l *Log) Proof(_ context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if oldSize > newSize || newSize > l.tree.Size() {
		return sigsum.ConsistencyProof{}, fmt.Errorf("no proof from %d to %d in a tree of %d", oldSize, newSize, l.tree.Size())
	}
	var p sigsum.ConsistencyProof
	if oldSize == 0 || oldSize == newSize {
		return p, nil
	}
	hs, err := l.tree.ConsistencyProof(oldSize, newSize)
	if err != nil {
		return p, fmt.Errorf("consistency proof %d→%d: %w", oldSize, newSize, err)
	}
	for _, h := range hs {
		p.Path = append(p.Path, sigsum.Hash(h))
	}
	return p, nil
}

// Request returns an add-checkpoint body for the head of the first size leaves, with old size oldSize and its
// proof.
func (l *Log) Request(oldSize, size uint64) []byte {
	p, err := l.Proof(context.Background(), oldSize, size)
	if err != nil {
		panic(err)
	}
	sth := l.HeadAt(size)
	r := sigsum.AddCheckpointRequest{OldSize: oldSize, Proof: p.Path, Note: sth.SignedNote(l.Public())}
	return r.MarshalBinary()
}

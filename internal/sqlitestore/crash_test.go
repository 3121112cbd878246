package sqlitestore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/log"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	"github.com/google/trillian/types"
	"github.com/google/trillian/util/clock"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Environment of the crash child (see TestMain): the store path and the round.
const (
	crashChildEnv = "SIGSUMD_SQLITESTORE_CRASH_CHILD"
	crashRoundEnv = "SIGSUMD_SQLITESTORE_CRASH_ROUND"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		// Runs until the parent test kills it.
		if err := crashChild(path, os.Getenv(crashRoundEnv)); err != nil {
			fmt.Fprintf(os.Stdout, "ERROR %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild opens the store, then queues leaves from several goroutines and
// integrates them in a loop. Each line it prints describes a transaction that
// has committed:
//
//	READY <treeID>
//	QUEUED <hex identity hash> ...   (a QueueLeaves call returned)
//	ROOT <size> <hex root hash>      (an integration committed this root)
func crashChild(path, round string) error {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path, Logger: quietLogger()})
	if err != nil {
		return err
	}
	trees, err := storage.ListTrees(ctx, s.AdminStorage(), false)
	if err != nil {
		return err
	}
	var tree *trillian.Tree
	if len(trees) > 0 {
		tree = trees[0]
	} else {
		if tree, err = storage.CreateTree(ctx, s.AdminStorage(), proto.Clone(stestonly.LogTree).(*trillian.Tree)); err != nil {
			return err
		}
		b, _ := (&types.LogRootV1{RootHash: rfc6962.DefaultHasher.EmptyRoot(), TimestampNanos: uint64(time.Now().UnixNano())}).MarshalBinary()
		if err := s.LogStorage().ReadWriteTransaction(ctx, tree, func(ctx context.Context, tx storage.LogTreeTX) error {
			return tx.StoreSignedLogRoot(ctx, &trillian.SignedLogRoot{LogRoot: b})
		}); err != nil {
			return err
		}
	}
	var outMu sync.Mutex
	emit := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	emit("READY %d", tree.TreeId)

	errc := make(chan error, 5)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; ; i++ {
				n := 1 + rand.IntN(8)
				leaves := make([]*trillian.LogLeaf, n)
				for j := range leaves {
					v := []byte(fmt.Sprintf("round %s worker %d call %d leaf %d", round, w, i, j))
					h := rfc6962.DefaultHasher.HashLeaf(v)
					leaves[j] = &trillian.LogLeaf{LeafValue: v, MerkleLeafHash: h, LeafIdentityHash: h}
				}
				res, err := s.LogStorage().QueueLeaves(ctx, tree, leaves, time.Now())
				if err != nil {
					errc <- err
					return
				}
				var line strings.Builder
				line.WriteString("QUEUED")
				for _, r := range res {
					if leafCode(r) != codes.OK {
						errc <- fmt.Errorf("unexpected status %v", r.Status)
						return
					}
					line.WriteString(" " + hex.EncodeToString(r.Leaf.LeafIdentityHash))
				}
				emit("%s", line.String())
			}
		}()
	}
	go func() {
		log.InitMetrics(nil)
		for {
			if _, err := log.IntegrateBatch(ctx, tree, 200, 0, 0, clock.System, s.LogStorage(), quota.Noop()); err != nil {
				errc <- err
				return
			}
			tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
			if err != nil {
				errc <- err
				return
			}
			slr, err := tx.LatestSignedLogRoot(ctx)
			_ = tx.Close()
			if err != nil {
				errc <- err
				return
			}
			var r types.LogRootV1
			if err := r.UnmarshalBinary(slr.LogRoot); err != nil {
				errc <- err
				return
			}
			emit("ROOT %d %x", r.TreeSize, r.RootHash)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return <-errc
}

// crashReport is what a killed child printed.
type crashReport struct {
	treeID   int64
	queued   [][]byte
	rootSize int64
	rootHash []byte
	errLine  string
}

func parseCrashOutput(t *testing.T, out []byte) crashReport {
	t.Helper()
	var rep crashReport
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "READY":
			id, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			rep.treeID = id
		case "QUEUED":
			for _, h := range f[1:] {
				b, err := hex.DecodeString(h)
				if err != nil || len(b) != hashSize {
					// The kill can cut only the last, unfinished line.
					continue
				}
				rep.queued = append(rep.queued, b)
			}
		case "ROOT":
			if len(f) != 3 {
				continue
			}
			size, err1 := strconv.ParseInt(f[1], 10, 64)
			hash, err2 := hex.DecodeString(f[2])
			if err1 != nil || err2 != nil || len(hash) != hashSize {
				continue
			}
			rep.rootSize, rep.rootHash = size, hash
		case "ERROR":
			rep.errLine = line
		}
	}
	return rep
}

// TestCrashRecovery kills a child process that is queueing and integrating
// at a random moment (SIGKILL: no deferred code, no Close), several times on
// the same store. After each kill the store must open cleanly (the kernel
// dropped the lock), hold every transaction the child reported as committed,
// and have a root that matches its leaves.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "trillian.db")
	const rounds = 3
	var allQueued [][]byte
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatalf("StdoutPipe: %v", err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting child: %v", err)
		}
		ready := make(chan struct{})
		var out bytes.Buffer
		readDone := make(chan error, 1)
		go func() {
			// Copy line by line, signalling READY as soon as it appears.
			br := bufio.NewReader(stdout)
			signalled := false
			for {
				line, err := br.ReadBytes('\n')
				out.Write(line)
				if !signalled && bytes.HasPrefix(line, []byte("READY ")) {
					close(ready)
					signalled = true
				}
				if err != nil {
					if !signalled {
						close(ready)
					}
					if errors.Is(err, io.EOF) {
						err = nil
					}
					readDone <- err
					return
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("round %d: child not ready; stderr:\n%s", round, stderr.String())
		}

		// While the child runs, the store is locked and the error names it.
		if _, err := Open(ctx, Config{Path: path, Logger: quietLogger()}); !errors.Is(err, ErrLocked) ||
			!strings.Contains(err.Error(), "process "+strconv.Itoa(cmd.Process.Pid)) {
			t.Errorf("round %d: Open while the child holds the store: %v, want ErrLocked naming PID %d", round, err, cmd.Process.Pid)
		}

		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		if err := <-readDone; err != nil {
			t.Fatalf("round %d: reading child output: %v", round, err)
		}
		werr := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die of SIGKILL: %v\nstdout tail: %s\nstderr:\n%s", round, werr, tail(out.Bytes()), stderr.String())
		}
		rep := parseCrashOutput(t, out.Bytes())
		if rep.errLine != "" {
			t.Fatalf("round %d: child failed: %s", round, rep.errLine)
		}
		allQueued = append(allQueued, rep.queued...)
		t.Logf("round %d: child reported %d queued leaves, last root size %d", round, len(rep.queued), rep.rootSize)

		verifyAfterCrash(ctx, t, path, rep, allQueued)
	}
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

func verifyAfterCrash(ctx context.Context, t *testing.T, path string, rep crashReport, allQueued [][]byte) {
	t.Helper()
	s, err := Open(ctx, Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopening after the crash: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	var check string
	if err := s.reader.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	tree, err := storage.GetTree(ctx, s.AdminStorage(), rep.treeID)
	if err != nil {
		t.Fatalf("GetTree: %v", err)
	}

	// Every reported queued leaf is stored: queueing it again is a duplicate.
	for start := 0; start < len(allQueued); start += 500 {
		var leaves []*trillian.LogLeaf
		for _, h := range allQueued[start:min(start+500, len(allQueued))] {
			leaves = append(leaves, &trillian.LogLeaf{LeafIdentityHash: h, MerkleLeafHash: h, LeafValue: []byte("requeued")})
		}
		res, err := s.LogStorage().QueueLeaves(ctx, tree, leaves, time.Now())
		if err != nil {
			t.Fatalf("QueueLeaves: %v", err)
		}
		for i, r := range res {
			if leafCode(r) != codes.AlreadyExists {
				t.Fatalf("leaf %x reported queued before the crash is missing", leaves[i].LeafIdentityHash)
			}
		}
	}

	// The reported root is there (or a later one), and the root matches the
	// stored leaves.
	root := latestRoot(ctx, t, s, tree)
	if int64(root.TreeSize) < rep.rootSize {
		t.Fatalf("tree size %d after the crash, child reported %d committed", root.TreeSize, rep.rootSize)
	}
	if int64(root.TreeSize) == rep.rootSize && rep.rootHash != nil && !bytes.Equal(root.RootHash, rep.rootHash) {
		t.Fatalf("root at size %d is %x, child reported %x", root.TreeSize, root.RootHash, rep.rootHash)
	}
	checkRootMatchesLeaves(ctx, t, s, tree)

	// Integrating what is still queued goes on from the stored tiles; a wrong
	// tile would show as a root that no longer matches the leaves.
	integrateAll(ctx, t, s, tree)
	checkRootMatchesLeaves(ctx, t, s, tree)
}

// checkRootMatchesLeaves recomputes the root from the stored leaves.
func checkRootMatchesLeaves(ctx context.Context, t *testing.T, s *Store, tree *trillian.Tree) {
	t.Helper()
	tx, err := s.LogStorage().SnapshotForTree(ctx, tree)
	if err != nil {
		t.Fatalf("SnapshotForTree: %v", err)
	}
	defer tx.Close()
	slr, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		t.Fatalf("LatestSignedLogRoot: %v", err)
	}
	var root types.LogRootV1
	if err := root.UnmarshalBinary(slr.LogRoot); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	var hashes [][]byte
	for int64(len(hashes)) < int64(root.TreeSize) {
		got, err := tx.GetLeavesByRange(ctx, int64(len(hashes)), int64(root.TreeSize)-int64(len(hashes)))
		if err != nil || len(got) == 0 {
			t.Fatalf("GetLeavesByRange: %d leaves, %v", len(got), err)
		}
		for _, l := range got {
			if !bytes.Equal(l.MerkleLeafHash, rfc6962.DefaultHasher.HashLeaf(l.LeafValue)) {
				t.Fatalf("leaf %d: stored hash does not match its value", l.LeafIndex)
			}
			hashes = append(hashes, l.MerkleLeafHash)
		}
	}
	if want := merkleRoot(t, hashes); !bytes.Equal(root.RootHash, want) {
		t.Fatalf("root %x does not match the %d stored leaves (%x)", root.RootHash, len(hashes), want)
	}
}

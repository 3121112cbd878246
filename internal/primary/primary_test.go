package primary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func seedSigner(t *testing.T, b byte) sigsum.Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a primary's tree on an embedded Trillian over SQLite, with helpers to grow it.
type env struct {
	t      *testing.T
	dir    string
	engine *engine.Engine
	log    engine.Log
	signer sigsum.Signer
	leaves []sigsum.Leaf
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e, err := engine.StartEmbedded(context.Background(), engine.EmbeddedConfig{
		Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, SequencerInterval: 10 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	l, err := e.OpenTree(context.Background(), engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_LOG, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, engine: e, log: l, signer: seedSigner(t, 1)}
}

func (e *env) sthFile() string { return filepath.Join(e.dir, "sth") }

// addLeaves queues n new leaves and waits until they are integrated.
func (e *env) addLeaves(n int) {
	e.t.Helper()
	sub := seedSigner(e.t, 2)
	for i := 0; i < n; i++ {
		l, err := sigsum.SignLeaf(sub, sigsum.HashBytes([]byte(fmt.Sprint("leaf ", len(e.leaves)))))
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.log.QueueLeaf(context.Background(), &l); err != nil {
			e.t.Fatal(err)
		}
		e.leaves = append(e.leaves, l)
	}
	e.waitIntegrated()
}

func (e *env) waitIntegrated() {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		th, err := e.log.TreeHead(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if th.Size == uint64(len(e.leaves)) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("tree stuck at %d, want %d", th.Size, len(e.leaves))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// head returns the tree head over the first n leaves.
func (e *env) head(n int) sigsum.TreeHead {
	hs := make([]sigsum.Hash, n)
	for i := range hs {
		hs[i] = e.leaves[i].Hash()
	}
	return sigsum.TreeHead{Size: uint64(n), RootHash: sigsum.RootHash(hs)}
}

func (e *env) start(secs []Secondary, quorum int) (*Primary, error) {
	return New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Secondaries: secs,
		SecondaryQuorum: quorum, Interval: time.Hour, Timeout: 5 * time.Second, Logger: quietLogger()})
}

func (e *env) mustStart(secs []Secondary, quorum int) *Primary {
	e.t.Helper()
	if _, err := os.Stat(e.sthFile()); os.IsNotExist(err) {
		if _, err := os.Stat(StartupFile(e.sthFile())); os.IsNotExist(err) {
			if err := WriteStartupFile(e.sthFile(), StartupEmpty); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	p, err := e.start(secs, quorum)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// fakeSecondary serves get-secondary-tree-head with whatever head the test sets, signed by its key (or not).
type fakeSecondary struct {
	signer sigsum.Signer
	sth    atomic.Pointer[sigsum.SignedTreeHead]
	srv    *httptest.Server
}

func newFakeSecondary(t *testing.T, seed byte) *fakeSecondary {
	f := &fakeSecondary{signer: seedSigner(t, seed)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sth := f.sth.Load()
		if sth == nil || r.URL.Path != "/get-secondary-tree-head" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write(sth.MarshalASCII())
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSecondary) set(t *testing.T, th sigsum.TreeHead) {
	sth, err := th.Sign(f.signer)
	if err != nil {
		t.Fatal(err)
	}
	f.sth.Store(&sth)
}

func (f *fakeSecondary) secondary(t *testing.T) Secondary {
	c, err := client.New(client.Config{URL: f.srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return Secondary{Name: f.srv.URL, Client: c, Key: f.signer.Public()}
}

func TestStartup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.start(nil, 0); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Fatalf("start without state files: %v", err)
	}
	e.addLeaves(3)
	p := e.mustStart(nil, 0)
	if got := p.Signed(); got.Size != 0 || got.RootHash != sigsum.RootHash(nil) || !got.Verify(e.signer.Public()) {
		t.Fatalf("startup=empty signed %+v", got)
	}
	if _, err := os.Stat(StartupFile(e.sthFile())); !os.IsNotExist(err) {
		t.Error("startup file not removed")
	}
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Signed().TreeHead != e.head(3) {
		t.Fatalf("without secondaries the primary signs its own tree: got %+v", p.Signed())
	}

	// A restart resumes from the sth file.
	again := e.mustStart(nil, 0)
	if again.Signed() != p.Signed() {
		t.Errorf("restart signed %+v, want %+v", again.Signed(), p.Signed())
	}
	// Both files at once is an error; so is an sth file of another key.
	os.WriteFile(StartupFile(e.sthFile()), []byte("startup=empty\n"), 0o644)
	if _, err := e.start(nil, 0); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("start with both files: %v", err)
	}
	os.Remove(StartupFile(e.sthFile()))
	other, _ := (&sigsum.TreeHead{}).Sign(seedSigner(t, 9))
	WriteSTHFile(e.sthFile(), &other)
	if _, err := e.start(nil, 0); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("start with another key's sth file: %v", err)
	}
	// An sth file signing more than the local tree holds (wrong store) is refused.
	big := sigsum.TreeHead{Size: 10, RootHash: sigsum.Hash{1}}
	bigSTH, _ := big.Sign(e.signer)
	WriteSTHFile(e.sthFile(), &bigSTH)
	if _, err := e.start(nil, 0); err == nil || !strings.Contains(err.Error(), "wrong storage") {
		t.Errorf("start with an sth file beyond the local tree: %v", err)
	}
	// So is one whose root at its size differs from the local tree's.
	wrong := sigsum.TreeHead{Size: 2, RootHash: sigsum.Hash{1}}
	wrongSTH, _ := wrong.Sign(e.signer)
	WriteSTHFile(e.sthFile(), &wrongSTH)
	if _, err := e.start(nil, 0); err == nil || !strings.Contains(err.Error(), "not consistent") {
		t.Errorf("start with an inconsistent sth file: %v", err)
	}
	// startup=local-tree signs the local tree (after a promote).
	os.Remove(e.sthFile())
	if err := WriteStartupFile(e.sthFile(), StartupLocalTree); err != nil {
		t.Fatal(err)
	}
	p, err := e.start(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Signed().TreeHead != e.head(3) {
		t.Errorf("startup=local-tree signed %+v, want size 3", p.Signed())
	}
	if err := WriteStartupFile(e.sthFile(), StartupEmpty); err == nil {
		t.Error("WriteStartupFile beside an existing sth file succeeded")
	}
}

func TestStartupFileGrammar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for content, ok := range map[string]bool{
		"startup=empty\n":      true,
		"startup=local-tree\n": true,
		"startup=empty":        true,
		"startup=other\n":      false,
		"empty\n":              false,
		"startup=empty\nx\n":   false,
		"":                     false,
	} {
		sth := filepath.Join(dir, fmt.Sprintf("sth%d", len(content)))
		os.WriteFile(StartupFile(sth), []byte(content), 0o644)
		if _, err := ReadStartupFile(sth); (err == nil) != ok {
			t.Errorf("startup file %q: err %v, want ok=%v", content, err, ok)
		}
		os.Remove(StartupFile(sth))
	}
}

func TestRotationRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s1, s2 := newFakeSecondary(t, 11), newFakeSecondary(t, 12)
	p := e.mustStart([]Secondary{s1.secondary(t), s2.secondary(t)}, 0)
	ctx := context.Background()
	e.addLeaves(10)
	rotate := func(want uint64, why string) {
		t.Helper()
		if err := p.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		got := p.Signed()
		if got.Size != want {
			t.Fatalf("%s: signed size %d, want %d", why, got.Size, want)
		}
		if got.TreeHead != e.head(int(want)) || !got.Verify(e.signer.Public()) {
			t.Fatalf("%s: signed head %+v is not the tree's head at %d", why, got, want)
		}
		onDisk, err := ReadSTHFile(e.sthFile(), e.signer.Public())
		if err != nil || onDisk != got {
			t.Fatalf("%s: sth file %+v, %v", why, onDisk, err)
		}
	}

	rotate(0, "unreachable secondaries count as 0")
	s1.set(t, e.head(4))
	rotate(0, "one secondary still unreachable")
	s2.set(t, e.head(7))
	rotate(4, "minimum over secondaries")
	s1.set(t, e.head(10))
	rotate(7, "minimum moves")

	// Forged or wrong heads never move the signed head.
	bad := e.head(9)
	bad.RootHash[0] ^= 1
	s2.set(t, bad)
	rotate(7, "inconsistent root")
	s2.set(t, sigsum.TreeHead{Size: 11, RootHash: sigsum.Hash{1}})
	rotate(7, "size larger than the primary's")
	s2.set(t, e.head(5))
	rotate(7, "size below the signed size")
	forged := e.head(10)
	forgedSTH, _ := forged.Sign(seedSigner(t, 99))
	s2.sth.Store(&forgedSTH)
	rotate(7, "signature by another key")
	s2.set(t, e.head(10))
	rotate(10, "both hold everything")
}

func TestRotationQuorum(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s1, s2 := newFakeSecondary(t, 11), newFakeSecondary(t, 12)
	p := e.mustStart([]Secondary{s1.secondary(t), s2.secondary(t)}, 1)
	e.addLeaves(5)
	s1.set(t, e.head(3))
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Signed().Size; got != 3 {
		t.Fatalf("1 of 2 with one down: signed %d, want 3", got)
	}
	s2.set(t, e.head(5))
	if err := p.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.Signed(); got.TreeHead != e.head(5) {
		t.Fatalf("1 of 2: signed %d, want 5 (the larger)", got.Size)
	}
}

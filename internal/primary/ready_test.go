package primary

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// breakableSigner is a real key whose signing can be switched off, as when an ssh-agent goes away.
type breakableSigner struct {
	sigsum.Signer
	broken atomic.Bool
}

func (b *breakableSigner) Sign(msg []byte) (sigsum.Signature, error) {
	if b.broken.Load() {
		return sigsum.Signature{}, errors.New("agent refused to sign")
	}
	return b.Signer.Sign(msg)
}

func TestReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	signer := &breakableSigner{Signer: e.signer}
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: signer, STHFile: e.sthFile(),
		Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("fresh primary not ready: %v", err)
	}

	// Rotation stalls when signing fails: new leaves cannot be signed.
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	signer.broken.Store(true)
	e.addLeaves(1)
	if err := p.Rotate(ctx); err == nil {
		t.Fatal("rotation with a broken signer succeeded")
	}
	time.Sleep(3*50*time.Millisecond + 250*time.Millisecond)
	if err := p.Ready(ctx); err == nil || !strings.Contains(err.Error(), "rotation stalled") {
		t.Fatalf("Ready with stalled rotation: %v", err)
	}
	signer.broken.Store(false)
	if err := p.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("Ready after rotations resumed: %v", err)
	}

	// The store becomes unreachable.
	e.engine.Close()
	if err := p.Ready(ctx); err == nil || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("Ready with the store closed: %v", err)
	}
}

func TestReadySignerProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	signer := &breakableSigner{Signer: e.signer}
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: signer, STHFile: e.sthFile(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	signer.broken.Store(true)
	if err := p.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "signer") {
		t.Fatalf("Ready with a broken signer: %v", err)
	}
}

// A primary without secondaries is ready but degraded, and says so at start; one whose secondaries all verified
// the last rotation is not degraded.
func TestDegraded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var logs syncBuffer
	WriteStartupFile(e.sthFile(), StartupEmpty)
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"primary has no secondary") {
		t.Errorf("no warning at start without secondaries:\n%s", logs.String())
	}
	if reason := p.Degraded(); !strings.Contains(reason, "no secondary") {
		t.Errorf("Degraded() = %q without secondaries", reason)
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Errorf("degraded primary not ready: %v", err)
	}

	e2 := newEnv(t)
	s1, s2 := newFakeSecondary(t, 11), newFakeSecondary(t, 12)
	logs = syncBuffer{}
	WriteStartupFile(e2.sthFile(), StartupEmpty)
	p, err = New(context.Background(), Config{Log: e2.log, Signer: e2.signer, STHFile: e2.sthFile(),
		Secondaries: []Secondary{s1.secondary(t), s2.secondary(t)}, SecondaryQuorum: 1, Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "no secondary") {
		t.Errorf("warning with secondaries:\n%s", logs.String())
	}
	if reason := p.Degraded(); reason != "" {
		t.Errorf("Degraded() = %q before the first rotation", reason)
	}
	e2.addLeaves(2)
	for _, tc := range []struct {
		s1, s2 bool // set: verifies
		want   []string
	}{
		{true, true, nil},
		{true, false, []string{"1 of 2 secondaries; not verified in the last rotation: " + s2.srv.URL + " (get-secondary-tree-head: 503"}},
		{false, false, []string{"0 of 2 secondaries, fewer than the 1 required: new leaves are not committed", s1.srv.URL + " (", s2.srv.URL + " ("}},
	} {
		for _, f := range []struct {
			fake *fakeSecondary
			set  bool
		}{{s1, tc.s1}, {s2, tc.s2}} {
			if f.set {
				f.fake.set(t, e2.head(2))
			} else {
				f.fake.sth.Store(nil)
			}
		}
		if err := p.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A request the rotation did not wait for (1 of 2 settled it) counts when it ends.
		matches := func(reason string) bool {
			if tc.want == nil {
				return reason == ""
			}
			for _, w := range tc.want {
				if !strings.Contains(reason, w) {
					return false
				}
			}
			return true
		}
		for start := time.Now(); !matches(p.Degraded()); time.Sleep(5 * time.Millisecond) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%v %v: Degraded() = %q, want %q", tc.s1, tc.s2, p.Degraded(), tc.want)
			}
		}
	}
}

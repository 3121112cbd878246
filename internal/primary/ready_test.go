package primary

import (
	"context"
	"errors"
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

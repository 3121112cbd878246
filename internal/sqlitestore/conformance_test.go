package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/client"
	"github.com/google/trillian/extension"
	"github.com/google/trillian/integration"
	"github.com/google/trillian/integration/storagetest"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage"
	stestonly "github.com/google/trillian/storage/testonly"
	tintegration "github.com/google/trillian/testonly/integration"
)

// TestAdminStorageConformance runs Trillian's own admin storage suite. Each
// NewAdminStorage call gets a fresh store, as the suite expects.
func TestAdminStorageConformance(t *testing.T) {
	t.Parallel()
	tester := stestonly.AdminStorageTester{NewAdminStorage: func() storage.AdminStorage {
		return openTestStore(t).AdminStorage()
	}}
	tester.RunAllTests(t)
}

// TestLogStorageConformance runs Trillian's log storage suite
// (integration/storagetest), which the MySQL provider also runs.
func TestLogStorageConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunLogStorageTests(t, func(_ context.Context, t *testing.T) (storage.LogStorage, storage.AdminStorage) {
		s := openTestStore(t)
		return s.LogStorage(), s.AdminStorage()
	})
}

// TestLogIntegration runs Trillian's end-to-end log test (1,000 leaves queued
// through the gRPC API, sequenced, read back, inclusion and consistency
// proofs, bad ranges) on an in-process Trillian whose only storage is a Store.
func TestLogIntegration(t *testing.T) {
	// Not parallel: it changes the sequencing interval of Trillian's test
	// environment (a package variable) before starting it. The default 500 ms
	// with 50-leaf batches would spend 10 s just waiting.
	tintegration.SequencerInterval = 20 * time.Millisecond

	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "trillian.db"), Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	reg := extension.Registry{
		AdminStorage: s.AdminStorage(),
		LogStorage:   s.LogStorage(),
		QuotaManager: quota.Noop(),
	}
	const numSequencers = 2
	env, err := tintegration.NewLogEnvWithRegistry(ctx, numSequencers, reg)
	if err != nil {
		t.Fatalf("NewLogEnvWithRegistry: %v", err)
	}
	t.Cleanup(func() {
		env.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	tree, err := client.CreateAndInitTree(ctx, &trillian.CreateTreeRequest{Tree: stestonly.LogTree}, env.Admin, env.Log)
	if err != nil {
		t.Fatalf("CreateAndInitTree: %v", err)
	}
	params := integration.DefaultTestParameters(tree.TreeId)
	// Poll often instead of every 5 s; the volume of the test is unchanged.
	params.SequencingPollWait = 100 * time.Millisecond
	start := time.Now()
	if err := integration.RunLogIntegration(env.Log, params); err != nil {
		t.Fatalf("RunLogIntegration: %v", err)
	}
	t.Logf("RunLogIntegration with %d leaves took %v", params.LeafCount, time.Since(start))
}

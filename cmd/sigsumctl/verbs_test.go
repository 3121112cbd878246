package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/trillian"

	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/status"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// status is read-only: on a stopped secondary with stored but unintegrated leaves it reports them, and integrates
// none (it runs no sequencer), however often it runs.
func TestStatusIntegratesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "secondary")
	e.ok("init", "-role", "secondary", "-data-dir", dir, "-primary-url", "https://127.0.0.1:6967")
	ctx := context.Background()
	eng, err := engine.StartEmbedded(ctx, engine.EmbeddedConfig{Storage: engine.Storage{Scheme: engine.StorageSQLite, Target: filepath.Join(dir, "trillian.db")}, NoSequencer: true})
	if err != nil {
		t.Fatal(err)
	}
	log, err := eng.OpenTree(ctx, engine.TreeConfig{IDFile: filepath.Join(dir, "tree-id"), Type: trillian.TreeType_PREORDERED_LOG})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	var leaves []sigsum.Leaf
	for i := range 3 {
		l, err := sigsum.SignLeaf(s, sigsum.Hash{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, l)
	}
	if err := log.AddSequencedLeaves(ctx, 0, leaves); err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		out := e.ok("status", "-role", "secondary", "-config", filepath.Join(dir, "sigsumd.toml"))
		if !strings.Contains(out, "size=0\n") || !strings.Contains(out, "pending_leaves=3\n") {
			t.Fatalf("status:\n%s\nwant size=0 and pending_leaves=3", out)
		}
	}
}

// Help goes to stdout and shows the command's own flags; the version comes from the build.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		args       []string
		want, dont string
	}{
		{[]string{"-h"}, "usage: sigsumctl <command>", ""},
		{[]string{"--help"}, "usage: sigsumctl <command>", ""},
		{[]string{"help"}, "usage: sigsumctl <command>", ""},
		{[]string{"help", "status"}, "-config", "-sequencer-interval"},
		{[]string{"status", "-h"}, "the stopped node's role", "-sequencer-interval"},
		{[]string{"promote", "--help"}, "-accept-fork-risk", ""},
		{[]string{"version"}, "sigsumctl ", ""},
		{[]string{"--version"}, "sigsumctl ", ""},
	} {
		stdout, stderr, code := e.run(tc.args...)
		if code != 0 || !strings.Contains(stdout, tc.want) || stderr != "" || tc.dont != "" && strings.Contains(stdout, tc.dont) {
			t.Errorf("sigsumctl %s: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", strings.Join(tc.args, " "),
				code, stdout, stderr, tc.want)
		}
	}
	if _, stderr, code := e.run(); code != 2 || !strings.Contains(stderr, "usage") {
		t.Errorf("sigsumctl without a command: exit %d, stderr %q", code, stderr)
	}
}

// status -url reads a running node's report and fails, with the facts printed, when the node is not ready; its
// argument errors say what to give.
func TestRemoteStatus(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/log/status.json":
			json.NewEncoder(w).Encode(status.Report{Role: "secondary", Ready: ready.Load(), LocalSize: 9,
				Reasons: []string{"storage: down"}, Primary: &status.Primary{InternalURL: "https://p", Lag: 2,
					PublishedCheckedAgeSeconds: -1}})
		case "/junk/status.json":
			w.Write([]byte("<html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name  string
		args  []string
		ready bool
		code  int
		want  []string
	}{
		{"ready", []string{"status", "-url", srv.URL + "/log/"}, true, 0,
			[]string{"role=secondary\n", "ready=true\n", "local_size=9\n", "replication_lag=2\n", "published_checked_age=never\n", "published_size=unknown\n"}},
		{"not ready", []string{"status", "-url", srv.URL + "/log"}, false, 1,
			[]string{"ready=false\n", "reason=storage: down\n", "the node is not ready"}},
		{"not a node", []string{"status", "-url", srv.URL}, true, 1, []string{"404", "public URL, with its prefix"}},
		{"not a report", []string{"status", "-url", srv.URL + "/junk"}, true, 1, []string{"not a status report"}},
		{"both", []string{"status", "-url", srv.URL, "-role", "primary"}, true, 1, []string{"not both"}},
		{"neither", []string{"status"}, true, 1, []string{"or -url (a running node)"}},
	} {
		ready.Store(tc.ready)
		var out strings.Builder
		if code := run(t.Context(), tc.args, &out, &out); code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, out.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, out.String())
			}
		}
	}
}

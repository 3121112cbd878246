package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Third-party Sigsum software the interop test (interop_witness_test.go) runs against sigsumd: witnesses, a bastion
// and the reference verifier, each built from its published module version through the Go module proxy.
const (
	torchwoodModule = "filippo.io/torchwood@v0.6.1"  // litewitness, witnessctl, litebastion
	sigsumGoModule  = "sigsum.org/sigsum-go@v0.14.1" // sigsum-witness, sigsum-verify
)

// goTool is the go command that builds the third-party binaries: the one on PATH, else this toolchain's.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command on PATH nor in %s", filepath.Dir(p))
	}
	return p
}

// buildThirdParty builds the commands (package paths inside module, given as path@version) in a scratch module of
// their own under the user's cache directory, never in this project's module (whose go.mod stays as it is), and
// returns the directory holding the binaries. Binaries built by an earlier run are reused.
func buildThirdParty(t *testing.T, module string, cmds ...string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	modPath, _, ok := strings.Cut(module, "@")
	if !ok {
		t.Fatalf("module %q has no version", module)
	}
	dir := filepath.Join(cache, "sigsumd-interop", strings.ReplaceAll(module, "/", "_"))
	bin := filepath.Join(dir, "bin")
	missing := false
	for _, c := range cmds {
		if _, err := os.Stat(filepath.Join(bin, filepath.Base(c))); err != nil {
			missing = true
		}
	}
	if !missing {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module interop\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "go.sum"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	gocmd := goTool(t)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, gocmd, args...)
		cmd.Dir = dir
		// The environment's GOPROXY (and GOFLAGS' other settings) apply; -mod=mod lets get and build record what
		// they resolve in the scratch go.mod/go.sum. GOWORK=off: no workspace file around may pull this module in.
		cmd.Env = append(os.Environ(), "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
		}
	}
	start := time.Now()
	run("get", module)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		// Built under a temporary name and renamed into place: a concurrent run never runs half a binary.
		final := filepath.Join(bin, filepath.Base(c))
		tmp := fmt.Sprintf("%s.tmp%d", final, os.Getpid())
		run("build", "-o", tmp, modPath+"/"+c)
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			t.Fatal(err)
		}
	}
	t.Logf("interop: built %s (%s) in %v", module, strings.Join(cmds, ", "), time.Since(start).Round(time.Second))
	return bin
}

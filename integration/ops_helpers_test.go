package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
)

// runToExit runs the node with env added to its environment, expecting it to exit by itself within timeout (a
// start that must fail), and returns its exit code and output.
func (n *node) runToExit(timeout time.Duration, env ...string) (int, string) {
	n.t.Helper()
	args := n.args()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "sigsumd"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		n.t.Fatalf("%s did not exit within %v:\n%s", n.role, timeout, out)
	}
	if err != nil && cmd.ProcessState == nil {
		n.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// stopAndExitCode sends SIGTERM like node.stop and returns the process's exit code.
func (n *node) stopAndExitCode() int {
	n.t.Helper()
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		n.t.Fatalf("%s is not running", n.dir)
	}
	n.stop()
	<-done // Wait has returned: ProcessState is set
	return cmd.ProcessState.ExitCode()
}

// opsClient is a client of the node's public API with a short timeout, for load that must not stall.
func opsClient(t *testing.T, n *node, timeout time.Duration) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{URL: n.publicURL(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoPorts finds a base port with the 20 above it free, outside the ports handed to other tests.
func demoPorts(t *testing.T) int {
	t.Helper()
	for base := 20000; base < 21000; base += 100 { // below the ports the harness hands out
		free := true
		for p := base; p <= base+20 && free; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports for the demo")
	return 0
}

func demoCmd(t *testing.T, dir string, port int) *exec.Cmd {
	cmd := exec.Command("bash", "../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "BIN="+binDir, "DEMO_DIR="+dir, fmt.Sprintf("DEMO_PORT=%d", port))
	return cmd
}

// TestDemo runs `make demo`'s script as a new user would: it says the log runs only once every node is up, the
// commands it prints work on the empty log as they are, a healthy start logs no ERROR, Ctrl-C exits 0, and a port
// already taken makes it fail at once, saying which.
func TestDemo(t *testing.T) {
	t.Parallel()
	port := demoPorts(t)
	dir := filepath.Join(t.TempDir(), "demo")

	// A taken port: the demo refuses to start, naming it.
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	out, err := demoCmd(t, dir, port).CombinedOutput()
	busy.Close()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("port %d on 127.0.0.1 is taken", port)) {
		t.Fatalf("demo with port %d taken: %v\n%s", port, err, out)
	}

	cmd := demoCmd(t, dir, port)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var printed []string
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		printed = append(printed, sc.Text())
		if strings.HasPrefix(sc.Text(), "Ctrl-C stops the log") {
			break
		}
	}
	deadline.Stop()
	if len(printed) == 0 || !strings.Contains(printed[0], "all ready") {
		// One line: CI prints a test's first line of output only.
		t.Fatalf("the demo did not come up: %s", strings.Join(printed, " | "))
	}
	// Every command printed, as printed, from a scratch directory.
	work := t.TempDir()
	for _, line := range printed {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "curl ") && !strings.HasPrefix(line, "echo ") && !strings.HasPrefix(line, binDir) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		run := exec.CommandContext(ctx, "bash", "-c", line)
		run.Dir = work
		got, err := run.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("the demo's command %q: %v\n%s", line, err, got)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo after Ctrl-C: %v, want exit 0", err)
	}
	for _, n := range []string{"primary", "secondary0", "secondary1"} {
		b, _ := os.ReadFile(filepath.Join(dir, n, "log"))
		if strings.Contains(string(b), "level=ERROR") {
			t.Errorf("the demo's %s logged an ERROR on a healthy start:\n%s", n, b)
		}
		// Secondaries start before the primary: they wait quietly, at info level.
		if n != "primary" && strings.Contains(string(b), "level=WARN") {
			t.Errorf("the demo's %s logged a warning on a healthy start:\n%s", n, b)
		}
	}
}

package lockfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "lock")
	l, err := Acquire(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(p)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Acquire: %v; want ErrLocked naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(p)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// TestMain turns the test binary into a lock holder when TestHolderDeath re-executes it.
func TestMain(m *testing.M) {
	if p := os.Getenv("LOCKFILE_CHILD"); p != "" {
		if _, err := Acquire(p); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHolderDeath checks that the kernel frees the lock of a killed holder.
func TestHolderDeath(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "lock")
	// flock(1) from util-linux would do, but the test binary itself is always there: re-exec it holding the lock.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOCKFILE_CHILD="+p)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready" {
		t.Fatalf("child did not take the lock: %q %v", buf, err)
	}
	if _, err := Acquire(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("lock held by the child: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(p)
	if err != nil {
		t.Fatalf("lock of a killed holder: %v", err)
	}
	l.Release()
}

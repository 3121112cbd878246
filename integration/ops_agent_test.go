package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// countingAgent is a real in-memory ssh-agent keyring that counts the signatures it makes.
type countingAgent struct {
	agent.Agent
	signs atomic.Int64
}

func (a *countingAgent) Sign(k ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	a.signs.Add(1)
	return a.Agent.Sign(k, data)
}

// serveAgent serves a on a new Unix socket until the test ends and returns the socket's path.
func serveAgent(t *testing.T, a agent.Agent) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent") // short: a Unix socket path is limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				agent.ServeAgent(a, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return sock
}

// TestOpsSigningThroughSSHAgent runs a primary whose key-file is the log's PUBLIC key: it signs every tree head
// through a real ssh-agent (an in-memory keyring served on a Unix socket) holding the private key, which is no
// longer on disk. Tree heads published and stored in the sth file verify with the log key.
func TestOpsSigningThroughSSHAgent(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "primary")
	p := newNode(t, "primary", dir, "-interval", "300ms", "-key-file", filepath.Join(dir, "key.pub"))
	logKey := p.publicKey()

	priv, err := key.ReadPrivateKeyFile(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv, Comment: "sigsumd log key"}); err != nil {
		t.Fatal(err)
	}
	ag := &countingAgent{Agent: kr}
	sock := serveAgent(t, ag)
	// The private key leaves the disk: only the agent can sign now.
	if err := os.Remove(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}

	// Without an agent the node refuses to start, saying why.
	if code, out := p.runToExit(20*time.Second, "SSH_AUTH_SOCK="); code == 0 || !strings.Contains(out, "SSH_AUTH_SOCK") {
		t.Fatalf("without an agent: exit code %d, output:\n%s", code, out)
	}

	p.startWithEnv("SSH_AUTH_SOCK=" + sock)
	c := p.client()
	first := treeHead(t, c, logKey) // the empty tree, signed through the agent at the first start
	signsAtStart := ag.signs.Load()
	if signsAtStart == 0 {
		t.Fatal("the agent made no signature, yet the node published a tree head")
	}

	leaves := submit(t, c, newSubmitter(t, 62), 8)
	allCommitted(t, c, leaves, 60*time.Second)
	head := checkLog(t, c, logKey, leaves, []sigsum.TreeHead{first.TreeHead})
	if n := ag.signs.Load(); n <= signsAtStart {
		t.Errorf("the agent made %d signatures before the leaves and %d after: the new heads were not signed through it", signsAtStart, n)
	}
	sth, err := primary.ReadSTHFile(filepath.Join(dir, "sth"), logKey)
	if err != nil {
		t.Fatalf("sth file: %v", err)
	}
	if sth.Size < head.Size {
		t.Errorf("sth file holds size %d, below the published %d", sth.Size, head.Size)
	}
	t.Logf("%d signatures through ssh-agent; published size %d", ag.signs.Load(), head.Size)

	// A restart signs through the agent again and resumes from the sth file.
	p.stop()
	p.startWithEnv("SSH_AUTH_SOCK=" + sock)
	more := submit(t, c, newSubmitter(t, 63), 3)
	all := append(leaves, more...)
	allCommitted(t, c, all, 60*time.Second)
	checkLog(t, c, logKey, all, []sigsum.TreeHead{first.TreeHead, head})
}

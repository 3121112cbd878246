package key

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// testAgent serves an agent.Agent on a Unix socket, like ssh-agent.
type testAgent struct {
	socket string
	ln     net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// startAgent serves a on a Unix socket at path (in a fresh temporary directory when path is empty). The agent
// is stopped at the end of the test.
func startAgent(t *testing.T, a agent.Agent, path string) *testAgent {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "agent.sock")
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{socket: path, ln: ln, conns: map[net.Conn]struct{}{}}
	ta.wg.Add(1)
	go func() {
		defer ta.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ta.mu.Lock()
			ta.conns[c] = struct{}{}
			ta.mu.Unlock()
			ta.wg.Add(1)
			go func() {
				defer ta.wg.Done()
				agent.ServeAgent(a, c) // returns when the connection is closed
				c.Close()
			}()
		}
	}()
	t.Cleanup(ta.stop)
	return ta
}

// stop closes the listener (removing the socket) and all connections, and waits for the serving goroutines.
func (ta *testAgent) stop() {
	ta.once.Do(func() {
		ta.ln.Close()
		ta.mu.Lock()
		for c := range ta.conns {
			c.Close()
		}
		ta.mu.Unlock()
		ta.wg.Wait()
	})
}

// newKeyring returns an in-memory agent holding the given keys.
func newKeyring(t *testing.T, keys ...ed25519.PrivateKey) agent.Agent {
	t.Helper()
	kr := agent.NewKeyring()
	for i, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k, Comment: fmt.Sprintf("key %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

// writePub writes pub as a public key file (ssh line, or hex when asHex) and returns its path.
func writePub(t *testing.T, pub sigsum.PublicKey, asHex bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pub")
	if asHex {
		if err := os.WriteFile(path, []byte(pub.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err := WritePublicKeyFile(path, pub, "agent key"); err != nil {
		t.Fatal(err)
	}
	return path
}

// signAndCheck signs msg with s and checks the result equals ed25519.Sign(priv, msg).
func signAndCheck(t *testing.T, s sigsum.Signer, priv ed25519.PrivateKey, msg []byte) {
	t.Helper()
	sig, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig[:], ed25519.Sign(priv, msg)) {
		t.Fatalf("agent signature over %q differs from ed25519.Sign", msg)
	}
}

func TestAgentSigner(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	otherPriv, _, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		asHex bool
	}{
		{"ssh public key file", false},
		{"hex public key file", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ta := startAgent(t, newKeyring(t, otherPriv, priv), "")
			s, err := LoadSigner(context.Background(), writePub(t, pub, tc.asHex), ta.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, ok := s.(*AgentSigner); !ok {
				t.Fatalf("LoadSigner(public key file) = %T, want *AgentSigner", s)
			}
			if s.Public() != pub {
				t.Fatalf("Public() = %s, want %s", s.Public(), pub)
			}
			signAndCheck(t, s, priv, []byte("hello"))
			signAndCheck(t, s, priv, nil)

			// Concurrent use over the one connection.
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := []byte(fmt.Sprintf("message %d", i))
					sig, err := s.Sign(msg)
					if err != nil {
						errs <- err
						return
					}
					if !pub.Verify(msg, sig) {
						errs <- fmt.Errorf("signature %d does not verify", i)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Sign([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Fatalf("Sign after Close: err = %v, want ErrClosed", err)
			}
		})
	}
}

// TestAgentSignerEnvSocket uses t.Setenv, so it cannot run in parallel.
func TestAgentSignerEnvSocket(t *testing.T) {
	priv, pub := seed01(t)
	ta := startAgent(t, newKeyring(t, priv), "")
	t.Setenv(AgentSocketEnv, ta.socket)
	s, err := LoadSigner(context.Background(), writePub(t, pub, false), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	signAndCheck(t, s, priv, []byte("via SSH_AUTH_SOCK"))

	t.Setenv(AgentSocketEnv, "")
	if _, err := LoadSigner(context.Background(), writePub(t, pub, false), ""); err == nil ||
		!strings.Contains(err.Error(), AgentSocketEnv+" is not set") {
		t.Fatalf("no socket: err = %v", err)
	}
}

func TestAgentSignerKeyNotHeld(t *testing.T) {
	t.Parallel()
	_, pub := seed01(t)
	otherPriv, _, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keys []ed25519.PrivateKey
	}{
		{"empty agent", nil},
		{"other key", []ed25519.PrivateKey{otherPriv}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ta := startAgent(t, newKeyring(t, tc.keys...), "")
			s, err := LoadSigner(context.Background(), writePub(t, pub, false), ta.socket)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrAgentKeyNotFound) {
				t.Fatalf("err = %v, want ErrAgentKeyNotFound", err)
			}
			want := fmt.Sprintf("holds %d key(s), none is ssh-ed25519 key %s", len(tc.keys), pub)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
		})
	}
}

// TestAgentSignerAgentGone stops the agent under a live signer: Sign must fail promptly, and succeed again
// (through one reconnect) once an agent is back on the socket.
func TestAgentSignerAgentGone(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	ta := startAgent(t, newKeyring(t, priv), "")
	s, err := NewAgentSigner(context.Background(), ta.socket, pub, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	signAndCheck(t, s, priv, []byte("before"))

	ta.stop()
	start := time.Now()
	if _, err := s.Sign([]byte("agent gone")); err == nil {
		t.Fatal("Sign with the agent gone: no error")
	} else if !strings.Contains(err.Error(), "broken") && !strings.Contains(err.Error(), "connect") {
		t.Fatalf("unexpected error: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Sign took %v with the agent gone", d)
	}

	// A restarted agent on the same socket (its listener is closed, so the path is free again).
	os.Remove(ta.socket)
	startAgent(t, newKeyring(t, priv), ta.socket)
	signAndCheck(t, s, priv, []byte("after restart"))
}

// TestAgentSignerReconnect restarts the agent between two signatures without Sign seeing the gap: the stale
// connection fails and the signer reconnects once, transparently.
func TestAgentSignerReconnect(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	ta := startAgent(t, newKeyring(t, priv), "")
	s, err := NewAgentSigner(context.Background(), ta.socket, pub, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ta.stop()
	os.Remove(ta.socket)
	startAgent(t, newKeyring(t, priv), ta.socket)
	signAndCheck(t, s, priv, []byte("after restart"))
}

// misbehavingAgent wraps an agent, optionally hanging or tampering with signatures.
type misbehavingAgent struct {
	agent.Agent
	hang    <-chan struct{}                     // when non-nil, Sign blocks until it is closed
	tamper  func(*ssh.Signature) *ssh.Signature // when non-nil, applied to signatures
	signing chan<- struct{}                     // when non-nil, notified when Sign is entered
}

func (a *misbehavingAgent) Sign(k ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	if a.signing != nil {
		a.signing <- struct{}{}
	}
	if a.hang != nil {
		<-a.hang
	}
	sig, err := a.Agent.Sign(k, data)
	if err != nil || a.tamper == nil {
		return sig, err
	}
	return a.tamper(sig), nil
}

func TestAgentSignerHungAgent(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	hang := make(chan struct{})
	ta := startAgent(t, &misbehavingAgent{Agent: newKeyring(t, priv), hang: hang}, "")
	t.Cleanup(func() { close(hang) }) // runs before the agent's stop (cleanups are LIFO)
	const timeout = 300 * time.Millisecond
	s, err := NewAgentSigner(context.Background(), ta.socket, pub, timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = s.Sign([]byte("never answered"))
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Fatalf("Sign returned after %v, want about %v", d, timeout)
	}
}

func TestAgentSignerHungAtConnect(t *testing.T) {
	t.Parallel()
	// Accepts connections but never reads or answers.
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	_, pub := seed01(t)
	start := time.Now()
	_, err = NewAgentSigner(context.Background(), path, pub, 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewAgentSigner took %v", d)
	}
	// A context deadline shorter than the timeout wins.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := NewAgentSigner(ctx, path, pub, time.Minute); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewAgentSigner with a short context took %v", d)
	}
	// Cancelling the context interrupts a pending request.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = NewAgentSigner(ctx, path, pub, time.Minute)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("cancelled: err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("NewAgentSigner with a cancelled context took %v", d)
	}
}

func TestAgentSignerBadSignatures(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	for _, tc := range []struct {
		name   string
		tamper func(*ssh.Signature) *ssh.Signature
		want   string
	}{
		{"wrong format", func(s *ssh.Signature) *ssh.Signature {
			return &ssh.Signature{Format: "rsa-sha2-256", Blob: s.Blob}
		}, `signature format "rsa-sha2-256"`},
		{"short blob", func(s *ssh.Signature) *ssh.Signature {
			return &ssh.Signature{Format: s.Format, Blob: s.Blob[:63]}
		}, "signature has 63 bytes, want 64"},
		{"flipped bit", func(s *ssh.Signature) *ssh.Signature {
			b := append([]byte(nil), s.Blob...)
			b[0] ^= 1
			return &ssh.Signature{Format: s.Format, Blob: b}
		}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ta := startAgent(t, &misbehavingAgent{Agent: newKeyring(t, priv), tamper: tc.tamper}, "")
			s, err := NewAgentSigner(context.Background(), ta.socket, pub, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Sign([]byte("msg"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestAgentSignerKeyRemoved covers an agent that refuses to sign (the key was removed after loading): a clear
// error, and the connection stays usable.
func TestAgentSignerKeyRemoved(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	kr := newKeyring(t, priv)
	ta := startAgent(t, kr, "")
	s, err := NewAgentSigner(context.Background(), ta.socket, pub, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := kr.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("msg")); err == nil || !strings.Contains(err.Error(), "failed to sign") {
		t.Fatalf("err = %v, want an agent refusal", err)
	}
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	signAndCheck(t, s, priv, []byte("key back"))
}

// TestAgentSignerCloseDuringSign closes the signer while a Sign waits on a hung agent: both return.
func TestAgentSignerCloseDuringSign(t *testing.T) {
	t.Parallel()
	priv, pub := seed01(t)
	hang := make(chan struct{})
	signing := make(chan struct{}, 1)
	ta := startAgent(t, &misbehavingAgent{Agent: newKeyring(t, priv), hang: hang, signing: signing}, "")
	t.Cleanup(func() { close(hang) })
	s, err := NewAgentSigner(context.Background(), ta.socket, pub, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Sign([]byte("msg"))
		errc <- err
	}()
	<-signing
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Sign on a hung agent succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sign did not return")
	}
}

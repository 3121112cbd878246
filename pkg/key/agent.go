package key

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// DefaultAgentTimeout bounds each ssh-agent operation (connect plus request and reply, including one reconnect).
const DefaultAgentTimeout = 10 * time.Second

// AgentSocketEnv is the environment variable naming the ssh-agent socket when none is given.
const AgentSocketEnv = "SSH_AUTH_SOCK"

// ErrAgentKeyNotFound is returned (wrapped) when the ssh-agent does not hold the requested key.
var ErrAgentKeyNotFound = errors.New("ssh-agent does not hold the key")

// ErrClosed is returned (wrapped) by Sign after Close.
var ErrClosed = errors.New("signer is closed")

// AgentSigner is a sigsum.Signer that signs through an ssh-agent with one Ed25519 key. It keeps one connection
// to the agent, used under a mutex, so it is safe for concurrent use; a broken connection is re-dialled once per
// Sign. Every operation is bounded by the signer's timeout, so a hung agent produces an error, not a hang.
type AgentSigner struct {
	socket  string
	pub     sigsum.PublicKey
	sshPub  ssh.PublicKey
	timeout time.Duration

	mu     sync.Mutex
	conn   *trackedConn // nil when not connected
	client agent.ExtendedAgent
	closed bool
}

// NewAgentSigner connects to the ssh-agent listening on the Unix socket socket ($SSH_AUTH_SOCK when empty) and
// returns a signer for pub, failing with an error wrapping ErrAgentKeyNotFound if the agent does not hold pub.
// timeout bounds each agent operation (DefaultAgentTimeout when not positive); ctx bounds the initial connect
// and key lookup. The caller must Close the signer.
func NewAgentSigner(ctx context.Context, socket string, pub sigsum.PublicKey, timeout time.Duration) (*AgentSigner, error) {
	if socket == "" {
		socket = os.Getenv(AgentSocketEnv)
		if socket == "" {
			return nil, fmt.Errorf("ssh-agent signer: no agent socket given and %s is not set", AgentSocketEnv)
		}
	}
	if timeout <= 0 {
		timeout = DefaultAgentTimeout
	}
	s := &AgentSigner{socket: socket, pub: pub, sshPub: sshPublicKey(pub), timeout: timeout}
	var keys []*agent.Key
	err := s.do(ctx, func(c agent.ExtendedAgent) error {
		var err error
		keys, err = c.List()
		return err
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("ssh-agent signer: list keys: %w", err)
	}
	want := s.sshPub.Marshal()
	for _, k := range keys {
		if k.Format == SSHKeyType && string(k.Blob) == string(want) {
			return s, nil
		}
	}
	s.Close()
	return nil, fmt.Errorf("ssh-agent signer: agent at %s holds %d key(s), none is %s key %s: %w",
		socket, len(keys), SSHKeyType, pub, ErrAgentKeyNotFound)
}

// Public returns the signer's public key.
func (s *AgentSigner) Public() sigsum.PublicKey { return s.pub }

// Sign asks the agent for an Ed25519 signature over msg. For ssh-ed25519 keys the agent signs msg itself (no
// prehash), so the result equals ed25519.Sign with the same key; it is checked to have format ssh-ed25519 and
// 64 bytes and to verify under the public key before it is returned.
func (s *AgentSigner) Sign(msg []byte) (sigsum.Signature, error) {
	var sig *ssh.Signature
	err := s.do(context.Background(), func(c agent.ExtendedAgent) error {
		var err error
		sig, err = c.SignWithFlags(s.sshPub, msg, 0)
		return err
	})
	if err != nil {
		return sigsum.Signature{}, fmt.Errorf("ssh-agent sign with key %s: %w", s.pub, err)
	}
	if sig.Format != SSHKeyType {
		return sigsum.Signature{}, fmt.Errorf("ssh-agent sign with key %s: signature format %q, want %q",
			s.pub, truncate(sig.Format, 64), SSHKeyType)
	}
	if len(sig.Blob) != ed25519.SignatureSize {
		return sigsum.Signature{}, fmt.Errorf("ssh-agent sign with key %s: signature has %d bytes, want %d",
			s.pub, len(sig.Blob), ed25519.SignatureSize)
	}
	var out sigsum.Signature
	copy(out[:], sig.Blob)
	if !s.pub.Verify(msg, out) {
		return sigsum.Signature{}, fmt.Errorf("ssh-agent sign with key %s: agent returned a signature that does not verify", s.pub)
	}
	return out, nil
}

// Close closes the connection to the agent. Later Sign calls fail with ErrClosed. It waits for an in-flight
// Sign, which is bounded by the timeout.
func (s *AgentSigner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.disconnectLocked()
}

// do runs op against the agent under the mutex with an overall deadline of now+timeout (earlier if ctx says
// so). If the connection turns out broken (an I/O error, not an agent refusal) and time remains, it reconnects
// and runs op once more.
func (s *AgentSigner) do(ctx context.Context, op func(agent.ExtendedAgent) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if s.conn == nil {
			if err := s.connectLocked(ctx); err != nil {
				if lastErr != nil {
					return fmt.Errorf("%w; reconnect: %w", lastErr, err)
				}
				return err
			}
		}
		conn := s.conn
		if err := conn.SetDeadline(deadline); err != nil {
			s.disconnectLocked()
			return fmt.Errorf("set deadline on agent connection: %w", err)
		}
		// Cancelling ctx interrupts the exchange by moving the deadline into the past.
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		err := op(s.client)
		interrupted := !stop()
		connErr := conn.err
		if connErr == nil && !interrupted {
			// The exchange completed; the agent either answered or refused (agent refusals keep the connection).
			conn.SetDeadline(time.Time{})
			return err
		}
		// The connection is in an unknown state (maybe mid-message, or with a past deadline): drop it.
		s.disconnectLocked()
		if connErr == nil {
			return err
		}
		if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("ssh-agent request to %s interrupted: %w", s.socket, cerr)
		}
		if errors.Is(connErr, os.ErrDeadlineExceeded) {
			return fmt.Errorf("ssh-agent at %s did not answer in time (timeout %v): %w", s.socket, s.timeout, connErr)
		}
		lastErr = fmt.Errorf("ssh-agent connection to %s broken: %w", s.socket, connErr)
		if ctx.Err() != nil {
			break
		}
	}
	return lastErr
}

// connectLocked dials the agent socket. s.mu must be held.
func (s *AgentSigner) connectLocked(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.socket)
	if err != nil {
		return fmt.Errorf("connect to ssh-agent: %w", err)
	}
	s.conn = &trackedConn{Conn: c}
	// Hiding Close makes agent.NewClient use its serialized mode: each call writes and reads on the caller's
	// goroutine, so the connection deadline bounds it and no background reader outlives the connection.
	s.client = agent.NewClient(struct{ io.ReadWriter }{s.conn})
	return nil
}

// disconnectLocked closes the current connection, if any. s.mu must be held.
func (s *AgentSigner) disconnectLocked() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn, s.client = nil, nil
	if err != nil {
		return fmt.Errorf("close ssh-agent connection: %w", err)
	}
	return nil
}

// trackedConn remembers the first I/O error on the connection, telling a broken connection apart from an
// agent that answered with a failure message.
type trackedConn struct {
	net.Conn
	err error
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

package nodetls

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/agent"

	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func signer(t *testing.T, seed byte) *sigsum.Ed25519Signer {
	t.Helper()
	seedBytes := make([]byte, ed25519.SeedSize)
	seedBytes[0] = seed
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(seedBytes))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cert(t *testing.T, s sigsum.Signer) *tls.Certificate {
	t.Helper()
	c, err := Certificate(s)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// server serves "secret" to the allowed keys over the TLS of a node with key s.
func server(t *testing.T, s sigsum.Signer, allowed ...sigsum.PublicKey) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(Require(allowed, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	})))
	srv.TLS = ServerConfig(*cert(t, s))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func get(hc *http.Client, url string) (int, string, error) {
	rsp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, string(b), nil
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	primary, secondary, stranger := signer(t, 1), signer(t, 2), signer(t, 3)
	srv := server(t, primary, secondary.Public())
	for _, tc := range []struct {
		name    string
		client  *http.Client
		code    int
		body    string // substring
		refused string // substring of a client error, when the client must refuse
	}{
		{"configured secondary", HTTPClient(cert(t, secondary), primary.Public()), 200, "secret", ""},
		{"no client certificate", HTTPClient(nil, primary.Public()), 403, "present the node's key", ""},
		{"another node's key", HTTPClient(cert(t, stranger), primary.Public()), 403, "not configured here", ""},
		{"server is not the pinned key", HTTPClient(cert(t, secondary), stranger.Public()), 0, "", "not the configured"},
		{"TLS 1.2 client", func() *http.Client {
			hc := HTTPClient(cert(t, secondary), primary.Public())
			tc := hc.Transport.(*http.Transport).TLSClientConfig
			tc.MinVersion, tc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return hc
		}(), 0, "", "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body, err := get(tc.client, srv.URL+"/get-leaves/0/1")
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("got %d %q, %v; want a refused connection about %q", code, body, err, tc.refused)
				}
				return
			}
			if err != nil || code != tc.code || !strings.Contains(body, tc.body) || strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Fatalf("got %d %q, %v; want %d %q on one line", code, body, err, tc.code, tc.body)
			}
		})
	}
}

// A node whose key lives in ssh-agent (an HSM behind it) makes its certificate and handshakes through the agent.
func TestAgentKey(t *testing.T) {
	t.Parallel()
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	priv := ed25519.NewKeyFromSeed(seed)
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	var pub sigsum.PublicKey
	copy(pub[:], priv.Public().(ed25519.PublicKey))
	as, err := key.NewAgentSigner(context.Background(), sock, pub, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })

	secondary := signer(t, 2)
	srv := server(t, as, secondary.Public()) // the agent's key serves
	if code, body, err := get(HTTPClient(cert(t, secondary), pub), srv.URL+"/"); err != nil || code != 200 || body != "secret" {
		t.Fatalf("agent-keyed server: %d %q %v", code, body, err)
	}
	srv2 := server(t, secondary, pub) // the agent's key is the client
	if code, body, err := get(HTTPClient(cert(t, as), secondary.Public()), srv2.URL+"/"); err != nil || code != 200 || body != "secret" {
		t.Fatalf("agent-keyed client: %d %q %v", code, body, err)
	}
}

package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// bastionWitness is a witness without a public address: it dials the log's bastion (C2SP https-bastion: TLS 1.3,
// ALPN bastion/0, a self-signed certificate of its Ed25519 key) and serves add-checkpoint over that connection,
// redialling when the connection ends.
func bastionWitness(t *testing.T, addr string, pool *x509.CertPool, priv ed25519.PrivateKey, h http.Handler) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"bastion/0"}, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	srv := &http2.Server{}
	go func() {
		defer close(done)
		for {
			conn, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				closed := make(chan struct{})
				go func() {
					select {
					case <-stop:
						conn.Close()
					case <-closed:
					}
				}()
				srv.ServeConn(conn, &http2.ServeConnOpts{Handler: h, BaseConfig: &http.Server{ErrorLog: log.New(io.Discard, "", 0)}})
				close(closed)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// TestBuiltInBastion: a witness without a public address, named in the trust policy without a URL, connects to the
// primary's built-in bastion; the primary sends it add-checkpoint over that connection, and the published heads
// carry its cosignature. A key the policy does not name is refused at the handshake.
func TestBuiltInBastion(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, 1)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	seed := bytes.Repeat([]byte{77}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	signer, err := sigsum.NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witnesstest.New(witnesstest.Config{Name: "witness.example/behind-nat", Signer: signer,
		Logs: []sigsum.PublicKey{cl.logKey}, StateFile: filepath.Join(dir, "witness-state")})
	if err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf("log %s\nwitness nat %s\ngroup g 1 nat\nquorum g\n", cl.logKey, signer.Public())
	policyFile := filepath.Join(dir, "trust-policy")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	bastionAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cl.primary.extra = append(cl.primary.extra, "-policy-file", policyFile, "-bastion-endpoint", bastionAddr,
		"-bastion-cert-file", certFile, "-bastion-key-file", keyFile)
	cl.start()

	// A stranger's key is refused at the handshake.
	stranger := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{78}, ed25519.SeedSize))
	bastionWitness(t, bastionAddr, pool, stranger, w)
	bastionWitness(t, bastionAddr, pool, priv, w)

	c := cl.primary.client()
	leaves := submit(t, c, newSubmitter(t, 61), 3)
	allCommitted(t, c, leaves, 60*time.Second)
	waitFor(t, "a head of 3 leaves cosigned by the witness behind the bastion", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		if cth.Size != 3 || len(cth.Cosignatures) != 1 {
			return false
		}
		cs := cth.Cosignatures[0]
		return cs.KeyHash == signer.Public().KeyHash() && cs.Verify(signer.Public(), sigsum.Origin(cl.logKey), &cth.TreeHead)
	})
	waitFor(t, "the bastion to refuse the stranger's key", 10*time.Second, func() bool {
		b, _ := os.ReadFile(cl.primary.logFile())
		return bytes.Contains(b, []byte("unrecognized backend"))
	})
	status := ctl(t, "status", "-url", cl.primary.publicURL())
	if !bytes.Contains([]byte(status), []byte("witness=nat in_published=true cosigned_size=3")) {
		t.Errorf("status does not show the witness behind the bastion:\n%s", status)
	}
}

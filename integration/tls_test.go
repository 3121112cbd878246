package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files and returns them with a pool trusting it.
// selfSigned writes a self-signed certificate for 127.0.0.1 (its own CA) and its key into dir, and returns the files
// and a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM := selfSignedLoopbackCert(t)
	certFile, keyFile = writeFile(t, dir, "tls.crt", string(certPEM)), writeFile(t, dir, "tls.key", string(keyPEM))
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certFile, keyFile, pool
}

func TestTLSPublicListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "200ms",
		"-tls-cert-file", certFile, "-tls-key-file", keyFile)
	p.start()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	c, err := client.New(client.Config{URL: fmt.Sprintf("https://127.0.0.1:%d", p.public), HTTPClient: hc, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	logKey := p.publicKey()
	leaves := submit(t, c, newSubmitter(t, 81), 2)
	allCommitted(t, c, leaves, 30*time.Second)
	checkLog(t, c, logKey, leaves, nil)

	// Plain HTTP to the TLS listener gets no log answer.
	plain, _ := client.New(client.Config{URL: p.publicURL(), Timeout: 5 * time.Second})
	if _, err := plain.GetTreeHead(context.Background()); err == nil {
		t.Error("plain HTTP to the TLS listener got a tree head")
	}
}

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/client"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files and returns them with a pool trusting it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sigsumd test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
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

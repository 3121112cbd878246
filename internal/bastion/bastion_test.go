package bastion

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// serverCert writes a self-signed certificate for 127.0.0.1 and returns its files and a pool trusting it.
func serverCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bastion"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// backend connects to the bastion as a witness with key seed and serves h over the connection, as litewitness
// does; it returns the witness's key hash and the handshake's error.
func backend(t *testing.T, addr string, pool *x509.CertPool, seed byte, h http.Handler) (sigsum.Hash, error) {
	t.Helper()
	seedBytes := make([]byte, ed25519.SeedSize)
	seedBytes[0] = seed
	priv := ed25519.NewKeyFromSeed(seedBytes)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	kh := sigsum.Hash(sha256.Sum256(priv.Public().(ed25519.PublicKey)))
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"bastion/0"}, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
	})
	if err != nil {
		return kh, err
	}
	// TLS 1.3 client certificates are checked after the client's handshake ends: a refusal shows on the first read.
	go (&http2.Server{}).ServeConn(conn, &http2.ServeConnOpts{Handler: h,
		BaseConfig: &http.Server{ErrorLog: log.New(io.Discard, "", 0)}})
	t.Cleanup(func() { conn.Close() })
	return kh, nil
}

func TestBastion(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := serverCert(t)
	allowed := map[sigsum.Hash]bool{}
	witnessHash := func(seed byte) sigsum.Hash {
		s := make([]byte, ed25519.SeedSize)
		s[0] = seed
		return sigsum.Hash(sha256.Sum256(ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)))
	}
	allowed[witnessHash(1)] = true
	bs, err := Start(Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile,
		Allowed: func(kh sigsum.Hash) bool { return allowed[kh] }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	addr := bs.Addr().String()

	// An allowed witness connects and answers what the collector sends it, at its path.
	kh, err := backend(t, addr, pool, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/big" {
			w.Write(make([]byte, maxResponseBytes+1))
			return
		}
		w.Header().Set("Content-Type", "text/x.test")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	if err != nil {
		t.Fatal(err)
	}
	// A witness the policy does not name is refused.
	stranger, err := backend(t, addr, pool, 2, http.NotFoundHandler())
	if err == nil {
		t.Logf("handshake of a stranger ended on the client side; the bastion refuses it on its side")
	}

	other := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusTeapot, Body: http.NoBody, Request: r}, nil
	})
	client := &http.Client{Transport: bs.Transport(other), Timeout: 10 * time.Second}
	post := func(url string) (*http.Response, string, error) {
		rsp, err := client.Post(url, "text/plain", strings.NewReader("old 0\n"))
		if err != nil {
			return nil, "", err
		}
		defer rsp.Body.Close()
		b, _ := io.ReadAll(rsp.Body)
		return rsp, string(b), nil
	}
	var rsp *http.Response
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for { // the connection registers once the bastion's PING is answered
		rsp, body, err = post(bs.URL(kh) + "/add-checkpoint")
		if err == nil && rsp.StatusCode != http.StatusBadGateway || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || rsp.StatusCode != http.StatusConflict || body != "POST /add-checkpoint old 0\n" ||
		rsp.Header.Get("Content-Type") != "text/x.test" {
		t.Fatalf("through the bastion: %v %v %q", err, rsp, body)
	}
	for _, tc := range []struct {
		name, url string
		code      int
	}{
		{"a refused witness is not connected", bs.URL(stranger) + "/add-checkpoint", http.StatusBadGateway},
		{"an unknown witness is not connected", bs.URL(witnessHash(3)) + "/add-checkpoint", http.StatusBadGateway},
		{"another host goes to the next transport", "https://witness.example/add-checkpoint", http.StatusTeapot},
	} {
		rsp, _, err := post(tc.url)
		if err != nil || rsp.StatusCode != tc.code {
			t.Errorf("%s: %v %v, want %d", tc.name, err, rsp, tc.code)
		}
	}
	if _, _, err := post(bs.URL(kh) + "/big"); err == nil {
		t.Error("an answer beyond the bound was returned")
	}

	// Anything but a witness on the listener gets a 404.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	r, err := hc.Get("https://" + addr + "/" + kh.String() + "/add-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("plain HTTPS on the bastion listener: %d, want 404", r.StatusCode)
	}
}

func TestStartRejects(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := serverCert(t)
	allow := func(sigsum.Hash) bool { return true }
	for name, cfg := range map[string]Config{
		"no address":       {CertFile: certFile, KeyFile: keyFile, Allowed: allow},
		"no certificate":   {Addr: "127.0.0.1:0", KeyFile: keyFile, Allowed: allow},
		"no allow list":    {Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile},
		"certificate file": {Addr: "127.0.0.1:0", CertFile: keyFile, KeyFile: keyFile, Allowed: allow},
	} {
		if bs, err := Start(cfg); err == nil {
			bs.Close()
			t.Errorf("%s: Start accepted it", name)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

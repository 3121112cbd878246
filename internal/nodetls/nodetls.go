// Package nodetls authenticates the log's own nodes to each other on the internal listeners (PROTOCOL.md §9): mutual
// TLS 1.3 with self-signed certificates made from each node's Ed25519 key (a key file or ssh-agent), pinned to the
// public keys the configuration names. Names, CA chains and expiry play no part, as in C2SP https-bastion: a peer is
// its key.
//
// The server asks every client for a certificate but does not require one at the handshake, so operators' tools
// (/metrics, /readyz) connect without one; Require admits to the replication endpoints only the requests whose
// client proved a configured key. A client accepts only a server that proves the key it expects.
package nodetls

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// cryptoSigner adapts a sigsum.Signer (a key file, or ssh-agent) to crypto.Signer for TLS.
type cryptoSigner struct{ s sigsum.Signer }

func (c cryptoSigner) Public() crypto.PublicKey {
	pub := c.s.Public()
	return ed25519.PublicKey(pub[:])
}

func (c cryptoSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.Hash(0) {
		return nil, errors.New("nodetls: Ed25519 signs the message itself, not a digest")
	}
	sig, err := c.s.Sign(msg)
	if err != nil {
		return nil, err
	}
	return sig[:], nil
}

// Certificate returns a self-signed certificate for signer's key, valid from a day ago for a century: expiry plays
// no part in pinning, and a node's clock must not break replication.
func Certificate(signer sigsum.Signer) (tls.Certificate, error) {
	pub := signer.Public()
	kh := pub.KeyHash()
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(kh[:16]),
		Subject:               pkix.Name{CommonName: "sigsumd node " + kh.String()[:16]},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(100 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	cs := cryptoSigner{signer}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, cs.Public(), cs)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: cs, Leaf: leaf}, nil
}

// PeerKey returns the Ed25519 key of the peer's certificate in state, or false if it presented none (or another
// kind). TLS 1.3 proved that the peer holds the key.
func PeerKey(state *tls.ConnectionState) (sigsum.PublicKey, bool) {
	var pub sigsum.PublicKey
	if state == nil || len(state.PeerCertificates) == 0 {
		return pub, false
	}
	k, ok := state.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(k) != ed25519.PublicKeySize {
		return pub, false
	}
	copy(pub[:], k)
	return pub, true
}

// ServerConfig is the internal listener's TLS: TLS 1.3 only, cert as the node's identity, and a request for the
// client's certificate (checked by Require, per endpoint).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				if _, ok := PeerKey(&cs); !ok {
					return errors.New("client certificate is not an Ed25519 key")
				}
			}
			return nil
		},
	}
}

// ClientConfig is the TLS of a call to a node's internal listener: TLS 1.3 only, cert as the caller's identity (nil:
// none, e.g. sigsumctl reading a secondary's signed head), and the server accepted only if it proves the key server.
func ClientConfig(cert *tls.Certificate, server sigsum.PublicKey) *tls.Config {
	var certs []tls.Certificate
	if cert != nil {
		certs = []tls.Certificate{*cert}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: certs,
		// No chain or name to verify: the pinned key is checked below.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, ok := PeerKey(&cs)
			if !ok {
				return errors.New("the node presented no Ed25519 certificate")
			}
			if got != server {
				return fmt.Errorf("the node's key hash is %s, not the configured %s", got.KeyHash(), server.KeyHash())
			}
			return nil
		},
	}
}

// HTTPClient returns an HTTP client whose TLS connections use ClientConfig(cert, server), with keep-alive and
// HTTP/1.1 (plain http:// URLs are called in the clear).
func HTTPClient(cert *tls.Certificate, server sigsum.PublicKey) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = ClientConfig(cert, server)
	t.ForceAttemptHTTP2 = false
	return &http.Client{Transport: t}
}

// Require passes to h only requests whose TLS client proved one of allowed; others get 403 with a one-line reason
// (plain HTTP gets it too: Require is for TLS listeners).
func Require(allowed []sigsum.PublicKey, h http.Handler) http.Handler {
	set := make(map[sigsum.PublicKey]bool, len(allowed))
	for _, k := range allowed {
		set[k] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := PeerKey(r.TLS)
		switch {
		case !ok:
			http.Error(w, "this endpoint is for the log's own nodes: present the node's key as a TLS client certificate", http.StatusForbidden)
		case !set[key]:
			http.Error(w, "this node's key (key hash "+key.KeyHash().String()+") is not configured here", http.StatusForbidden)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

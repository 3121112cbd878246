package sigsum

import (
	"encoding/hex"
	"strings"
)

const submitTokenNamespace = "sigsum.org/v1/submit-token"

// SubmitTokenHeader is the HTTP header that carries a submit token.
const SubmitTokenHeader = "Sigsum-Token"

// WaitBeyondHeader is sigsumd's extension of the internal API: "Sigsumd-Wait-Beyond: n" asks the node to hold the
// answer briefly until its tree holds more than n leaves. A secondary holding n leaves sends it with get-leaves, so
// that new leaves reach it as soon as the primary sequences them, with no polling; a primary whose tree holds N
// leaves sends N-1 with get-secondary-tree-head to a secondary still copying the last of them, so that the rotation
// goes on as soon as that secondary holds the whole tree. A node that ignores the header answers at once, as the
// protocol has it.
const WaitBeyondHeader = "Sigsumd-Wait-Beyond"

// maxDomainLength is the DNS limit on a name's length.
const maxDomainLength = 253

// SubmitTokenSignedBytes returns what a rate-limit key signs: "sigsum.org/v1/submit-token" ‖ 0x00 ‖ log key.
func SubmitTokenSignedBytes(logKey PublicKey) []byte {
	b := make([]byte, 0, len(submitTokenNamespace)+1+PublicKeySize)
	b = append(b, submitTokenNamespace...)
	b = append(b, 0)
	return append(b, logKey[:]...)
}

// SubmitToken is the value of the sigsum-token header: a domain and a signature by a key published under it.
type SubmitToken struct {
	Domain string
	Token  Signature
}

// SignSubmitToken makes a submit token for the log logKey, for the domain whose TXT record lists signer's key.
func SignSubmitToken(signer Signer, domain string, logKey PublicKey) (SubmitToken, error) {
	sig, err := signer.Sign(SubmitTokenSignedBytes(logKey))
	if err != nil {
		return SubmitToken{}, err
	}
	return SubmitToken{Domain: domain, Token: sig}, nil
}

// Verify reports whether the token is signed by key for the log logKey.
func (t *SubmitToken) Verify(key, logKey PublicKey) bool {
	return key.Verify(SubmitTokenSignedBytes(logKey), t.Token)
}

// String returns the header value: `<domain> <hex signature>`.
func (t *SubmitToken) String() string { return t.Domain + " " + hex.EncodeToString(t.Token[:]) }

// ParseSubmitToken decodes a sigsum-token header value. The domain is checked for shape only: no spaces or
// control characters, at most 253 bytes; normalisation is the rate limiter's job.
func ParseSubmitToken(v string) (SubmitToken, error) {
	var t SubmitToken
	domain, sig, ok := strings.Cut(v, " ")
	if !ok {
		return t, syntaxErr("sigsum-token is not `<domain> <hex signature>`")
	}
	if domain == "" || len(domain) > maxDomainLength {
		return t, syntaxErr("sigsum-token domain is empty or longer than %d bytes", maxDomainLength)
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; c <= ' ' || c == 0x7f {
			return t, syntaxErr("sigsum-token domain has a space or control character")
		}
	}
	var err error
	if t.Token, err = ParseSignature(sig); err != nil {
		return t, err
	}
	t.Domain = domain
	return t, nil
}

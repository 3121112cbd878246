package promote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/nodetls"
	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// DefaultSourceTimeout bounds the consultation of one source.
const DefaultSourceTimeout = 5 * time.Second

// Evidence is what one source says about how far the log has gone. Promote requires the local tree to extend
// every head that a source showed.
type Evidence struct {
	// Source names the source for the operator: what it is and where.
	Source string
	// Head is the tree head the source showed, with its signature checked: by the log's key for a published head,
	// by the source's own key for a replica's head.
	Head sigsum.TreeHead
	// Published is true for a head the log published (signed with the log key); false for a replica's tree head,
	// which bounds how far the log can have gone (the primary publishes only what its secondaries hold).
	Published bool
	// Err is why the source could not be consulted; Head is then meaningless.
	Err error
}

// what says what kind of head e is, for messages.
func (e *Evidence) what() string {
	if e.Published {
		return "published head"
	}
	return "replica head"
}

// RecordedHead is the newest published head the secondary recorded in path while it followed the log
// (internal/secondary), verified with logKey.
func RecordedHead(path string, logKey sigsum.PublicKey) Evidence {
	e := Evidence{Source: "recorded head " + path, Published: true}
	cth, err := witness.LoadPublished(path, logKey)
	if err != nil {
		e.Err = err
		return e
	}
	e.Head = cth.TreeHead
	return e
}

// PublishedHead reads a head the log published from src: a saved get-tree-head body (a file), or the log's
// public URL (http:// or https://), and checks that logKey signed it.
func PublishedHead(ctx context.Context, src string, logKey sigsum.PublicKey) Evidence {
	e := Evidence{Source: "-published " + src, Published: true}
	var cth sigsum.CosignedTreeHead
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		c, err := client.New(client.Config{URL: src, Timeout: DefaultSourceTimeout})
		if err == nil {
			cth, err = c.GetTreeHead(ctx)
		}
		if err != nil {
			e.Err = err
			return e
		}
	} else {
		b, err := os.ReadFile(src)
		if err == nil {
			cth, err = sigsum.ParseCosignedTreeHead(b)
		}
		if err != nil {
			e.Err = err
			return e
		}
	}
	if !cth.Verify(logKey) {
		e.Err = fmt.Errorf("tree head of size %d is not signed by the log key", cth.Size)
		return e
	}
	e.Head = cth.TreeHead
	return e
}

// OldPrimaryHead asks the old primary's public URL for its published head; Err is set when it does not answer.
func OldPrimaryHead(ctx context.Context, publicURL string, logKey sigsum.PublicKey) Evidence {
	e := PublishedHead(ctx, publicURL, logKey)
	e.Source = "old primary " + publicURL
	return e
}

// SecondaryHead asks another secondary's internal URL for its tree head (get-secondary-tree-head), signed with
// its own key: its size bounds how far the log can have gone. Over https:// the secondary must prove key.
func SecondaryHead(ctx context.Context, internalURL string, key sigsum.PublicKey) Evidence {
	e := Evidence{Source: "secondary " + internalURL}
	c, err := client.New(client.Config{URL: internalURL, Timeout: DefaultSourceTimeout, HTTPClient: nodetls.HTTPClient(nil, key)})
	if err != nil {
		e.Err = err
		return e
	}
	sth, err := c.GetSecondaryTreeHead(ctx)
	if err != nil {
		e.Err = err
		return e
	}
	if !sth.Verify(key) {
		e.Err = fmt.Errorf("tree head of size %d is not signed by the secondary's key", sth.Size)
		return e
	}
	e.Head = sth.TreeHead
	return e
}

// maxCheckpointBytes bounds a witness's checkpoint answer: a few lines, and a few kilobytes per ML-DSA cosignature.
const maxCheckpointBytes = 64 << 10

// WitnessCheckpoint asks a witness for the newest checkpoint of the log it cosigned (C2SP tlog-witness, monitor
// retrieval: GET <monitoring prefix>/<hex SHA-256 of the origin>/checkpoint) and checks the log's signature on it:
// a head the log published, since a witness cosigned it. A witness that never cosigned this log answers 404.
func WitnessCheckpoint(ctx context.Context, monitoringURL string, logKey sigsum.PublicKey) Evidence {
	e := Evidence{Source: "witness " + monitoringURL, Published: true}
	origin := sigsum.Origin(logKey)
	u := strings.TrimSuffix(monitoringURL, "/") + "/" + sigsum.HashBytes([]byte(origin)).String() + "/checkpoint"
	ctx, cancel := context.WithTimeout(ctx, DefaultSourceTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		e.Err = err
		return e
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.Err = err
		return e
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(rsp.Body, maxCheckpointBytes+1))
	switch {
	case err != nil:
		e.Err = err
		return e
	case rsp.StatusCode == http.StatusNotFound:
		e.Err = errors.New("the witness has cosigned no checkpoint of this log (404)")
		return e
	case rsp.StatusCode != http.StatusOK:
		e.Err = fmt.Errorf("checkpoint: HTTP %d", rsp.StatusCode)
		return e
	case len(body) > maxCheckpointBytes:
		e.Err = fmt.Errorf("checkpoint larger than %d bytes", maxCheckpointBytes)
		return e
	}
	note, err := sigsum.ParseNote(body)
	if err != nil {
		e.Err = err
		return e
	}
	o, th, err := sigsum.ParseCheckpoint(note.Text)
	if err != nil || o != origin {
		e.Err = fmt.Errorf("not a checkpoint of this log (origin %q): %v", o, err)
		return e
	}
	id := sigsum.LogKeyID(origin, logKey)
	for _, ns := range note.Signatures {
		if ns.Name != origin || ns.KeyID != id || len(ns.Blob) != sigsum.SignatureSize {
			continue
		}
		sth := sigsum.SignedTreeHead{TreeHead: th, Signature: sigsum.Signature(ns.Blob)}
		if sth.Verify(logKey) {
			e.Head = th
			return e
		}
	}
	e.Err = fmt.Errorf("checkpoint of size %d is not signed by the log key", th.Size)
	return e
}

// ErrAnswers is wrapped by Answers' error when something answers HTTP at the URL.
var ErrAnswers = errors.New("answers")

// Answers reports, as an error wrapping ErrAnswers, whether anything answers HTTP at url (any status: a running
// node answers 404 for an unknown path); nil means nothing answered within DefaultSourceTimeout.
func Answers(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultSourceTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+"/", nil)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	// Any answer counts, over TLS too: a node's internal certificate is self-signed (nodetls), and whose it is
	// does not matter here.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	rsp, err := hc.Do(req)
	if err != nil {
		return nil
	}
	io.Copy(io.Discard, io.LimitReader(rsp.Body, 4096))
	rsp.Body.Close()
	return fmt.Errorf("%s %w (HTTP %d)", url, ErrAnswers, rsp.StatusCode)
}

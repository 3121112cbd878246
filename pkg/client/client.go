// Package client is a typed HTTP client for a Sigsum v1 log: the five public endpoints and the internal API that
// primaries and secondaries speak to each other.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 4 << 20
	// maxErrorMessage bounds the server's reason kept in an HTTPError.
	maxErrorMessage = 256
)

// Config configures a Client.
type Config struct {
	// URL is the log's base URL (it may carry a path prefix), or for the internal API the peer's internal URL.
	URL string
	// HTTPClient makes the requests; nil means a client of its own with keep-alive.
	HTTPClient *http.Client
	// Timeout bounds each request, body included; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds a response body; a larger one is an error. Zero means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// UserAgent is sent with every request when set.
	UserAgent string
}

// Client talks to one Sigsum log (or one node's internal listener). It is safe for concurrent use.
type Client struct {
	base    string
	hc      *http.Client
	timeout time.Duration
	max     int64
	ua      string
}

// New returns a Client for cfg.URL.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("log URL %q: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("log URL %q: want http(s)://host[/prefix]", cfg.URL)
	}
	c := &Client{
		base:    strings.TrimSuffix(cfg.URL, "/") + "/",
		hc:      cfg.HTTPClient,
		timeout: cfg.Timeout,
		max:     cfg.MaxResponseBytes,
		ua:      cfg.UserAgent,
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.max <= 0 {
		c.max = DefaultMaxResponseBytes
	}
	return c, nil
}

// HTTPError is a response with a status other than the endpoint's success codes. Message is the server's one-line
// reason, truncated and stripped of control characters.
type HTTPError struct {
	Endpoint   string
	StatusCode int
	Message    string
	// Header holds the response headers (for example Allow on 405).
	Header http.Header
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.Endpoint, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// StatusCode returns the HTTP status of err if it is (or wraps) an HTTPError, and 0 otherwise.
func StatusCode(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

// ErrResponseTooLarge is wrapped when a response body exceeds MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body too large")

// do sends one request and returns the body of a response whose status is in ok.
func (c *Client) do(ctx context.Context, method, endpoint string, body []byte, hdr http.Header, ok ...int) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+endpoint, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	rsp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", endpoint, err)
	}
	defer rsp.Body.Close()
	data, err := readBody(rsp, c.max)
	if err != nil {
		return rsp.StatusCode, nil, fmt.Errorf("%s: reading response: %w", endpoint, err)
	}
	for _, code := range ok {
		if rsp.StatusCode != code {
			continue
		}
		if int64(len(data)) > c.max {
			return rsp.StatusCode, nil, fmt.Errorf("%s: %w (over %d bytes)", endpoint, ErrResponseTooLarge, c.max)
		}
		return rsp.StatusCode, data, nil
	}
	return rsp.StatusCode, nil, &HTTPError{Endpoint: endpoint, StatusCode: rsp.StatusCode, Message: oneLine(data),
		Header: rsp.Header}
}

// readBody reads a response body of at most max bytes (max+1 read tell a longer one): in one read of its length
// when the server sent one (a tile, 33 KiB, is read without growing a buffer eight times).
func readBody(rsp *http.Response, max int64) ([]byte, error) {
	if n := rsp.ContentLength; n >= 0 && n <= max {
		data := make([]byte, n)
		_, err := io.ReadFull(rsp.Body, data)
		return data, err
	}
	return io.ReadAll(io.LimitReader(rsp.Body, max+1))
}

// oneLine reduces an error body to its first line, printable and bounded, so a hostile server cannot flood logs.
func oneLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, string(b))
	if len(s) > maxErrorMessage {
		s = s[:maxErrorMessage] + "..."
	}
	return strings.TrimSpace(s)
}

func (c *Client) get(ctx context.Context, endpoint string) ([]byte, error) {
	_, data, err := c.do(ctx, http.MethodGet, endpoint, nil, nil, http.StatusOK)
	return data, err
}

func parsed[T any](endpoint string, data []byte, err error, parse func([]byte) (T, error)) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(data)
	if err != nil {
		return v, fmt.Errorf("%s: %w", endpoint, err)
	}
	return v, nil
}

// GetTreeHead fetches the log's published, possibly cosigned, tree head. It does not verify signatures.
func (c *Client) GetTreeHead(ctx context.Context) (sigsum.CosignedTreeHead, error) {
	data, err := c.get(ctx, "get-tree-head")
	return parsed("get-tree-head", data, err, sigsum.ParseCosignedTreeHead)
}

// GetCheckpoint fetches the log's published head as a C2SP checkpoint (Sigsum v1.1): the signed note and the
// witnesses' cosignature lines. It does not verify signatures.
func (c *Client) GetCheckpoint(ctx context.Context) ([]byte, error) {
	return c.get(ctx, "checkpoint")
}

// GetTile fetches a C2SP tlog-tiles resource of the published tree by its path below the log's URL:
// "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]". It checks nothing of the content.
func (c *Client) GetTile(ctx context.Context, path string) ([]byte, error) {
	if !strings.HasPrefix(path, "tile/") {
		return nil, fmt.Errorf("tile path %q does not start with tile/", path)
	}
	return c.get(ctx, path)
}

// GetInclusionProof fetches the proof that leafHash is in the tree of size size.
func (c *Client) GetInclusionProof(ctx context.Context, size uint64, leafHash sigsum.Hash) (sigsum.InclusionProof, error) {
	data, err := c.get(ctx, "get-inclusion-proof/"+strconv.FormatUint(size, 10)+"/"+leafHash.String())
	return parsed("get-inclusion-proof", data, err, sigsum.ParseInclusionProof)
}

// GetConsistencyProof fetches the proof that the tree of size newSize extends the one of size oldSize.
func (c *Client) GetConsistencyProof(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error) {
	data, err := c.get(ctx, "get-consistency-proof/"+strconv.FormatUint(oldSize, 10)+"/"+strconv.FormatUint(newSize, 10))
	return parsed("get-consistency-proof", data, err, sigsum.ParseConsistencyProof)
}

// GetLeaves fetches leaves from index start (inclusive) to end (exclusive); the log may return fewer than asked.
// On a primary's internal listener a 404 means start is the end of the tree (StatusCode(err) == 404).
func (c *Client) GetLeaves(ctx context.Context, start, end uint64) ([]sigsum.Leaf, error) {
	return c.getLeaves(ctx, start, end, nil)
}

// GetLeavesWaiting is GetLeaves on a primary's internal listener for a secondary holding size leaves: a sigsumd
// primary holding no more than that waits briefly for new leaves before it answers (sigsum.WaitBeyondHeader).
// ctx should allow a second or two more than a plain request.
func (c *Client) GetLeavesWaiting(ctx context.Context, start, end, size uint64) ([]sigsum.Leaf, error) {
	return c.getLeaves(ctx, start, end, http.Header{sigsum.WaitBeyondHeader: {strconv.FormatUint(size, 10)}})
}

func (c *Client) getLeaves(ctx context.Context, start, end uint64, hdr http.Header) ([]sigsum.Leaf, error) {
	endpoint := "get-leaves/" + strconv.FormatUint(start, 10) + "/" + strconv.FormatUint(end, 10)
	_, data, err := c.do(ctx, http.MethodGet, endpoint, nil, hdr, http.StatusOK)
	leaves, err := parsed("get-leaves", data, err, sigsum.ParseLeavesASCII)
	if err == nil && uint64(len(leaves)) > end-start {
		return nil, fmt.Errorf("get-leaves: asked for %d leaves, got %d", end-start, len(leaves))
	}
	return leaves, err
}

// AddLeaf submits a leaf. It returns true when the log answered 200 (the leaf is committed) and false on 202
// (accepted, not yet committed: submit it again later). token may be nil.
func (c *Client) AddLeaf(ctx context.Context, req *sigsum.AddLeafRequest, token *sigsum.SubmitToken) (bool, error) {
	var hdr http.Header
	if token != nil {
		hdr = http.Header{sigsum.SubmitTokenHeader: {token.String()}}
	}
	code, _, err := c.do(ctx, http.MethodPost, "add-leaf", req.MarshalASCII(), hdr, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return false, err
	}
	return code == http.StatusOK, nil
}

// GetSecondaryTreeHead fetches a secondary's signed tree head from its internal listener. It does not verify it.
func (c *Client) GetSecondaryTreeHead(ctx context.Context) (sigsum.SignedTreeHead, error) {
	return c.getSecondaryTreeHead(ctx, nil)
}

// GetSecondaryTreeHeadWaiting is GetSecondaryTreeHead for a caller that wants a tree of more than beyond leaves: a
// sigsumd secondary holding no more than that waits briefly until it does before it answers
// (sigsum.WaitBeyondHeader); any other answers at once. Bound the wait with ctx.
func (c *Client) GetSecondaryTreeHeadWaiting(ctx context.Context, beyond uint64) (sigsum.SignedTreeHead, error) {
	return c.getSecondaryTreeHead(ctx, http.Header{sigsum.WaitBeyondHeader: {strconv.FormatUint(beyond, 10)}})
}

func (c *Client) getSecondaryTreeHead(ctx context.Context, hdr http.Header) (sigsum.SignedTreeHead, error) {
	_, data, err := c.do(ctx, http.MethodGet, "get-secondary-tree-head", nil, hdr, http.StatusOK)
	return parsed("get-secondary-tree-head", data, err, sigsum.ParseSignedTreeHead)
}

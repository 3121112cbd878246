// Package status is a node's status page: the facts an operator looks at first (role, keys, the published head and
// its cosignatures, replication, rate limits, readiness), as one Report that the roles and the node fill in, served
// as a self-refreshing HTML page at the info page's path (<prefix>/) and as JSON at <prefix>/status.json for
// scripts and `sigsumctl status -url`.
package status

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// JSONPath is where, under the node's URL prefix, the report is served as JSON.
const JSONPath = "status.json"

// Report is what a node says of itself. Times are UTC; ages are seconds at Time.
type Report struct {
	Role    string    `json:"role"` // "primary" or "secondary"
	Version string    `json:"version"`
	Time    time.Time `json:"time"` // when the report was made
	// LogKey and LogKeyHash are the log's public key (hex) and key hash; a secondary without log-public-key-file
	// leaves them empty.
	LogKey     string `json:"log_public_key,omitempty"`
	LogKeyHash string `json:"log_key_hash,omitempty"`
	// NodeKeyHash is a secondary's own key hash, which signs its get-secondary-tree-head.
	NodeKeyHash string `json:"node_key_hash,omitempty"`

	// Published is the log's published (cosigned) tree head: the one this primary serves, or the newest one this
	// secondary verified. Nil when none is known.
	Published *Head `json:"published,omitempty"`
	// LocalSize is the node's own integrated tree.
	LocalSize uint64 `json:"local_size"`

	// Witnesses, on a primary with a trust policy: each witness the policy names.
	Witnesses []Witness `json:"witnesses,omitempty"`
	// Secondaries, on a primary: each configured secondary.
	Secondaries []Secondary `json:"secondaries,omitempty"`
	// Primary, on a secondary: the primary it replicates.
	Primary *Primary `json:"primary,omitempty"`
	// RateLimit, on a primary: nil when rate limiting is off.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Ready is what /readyz answers; Reasons says why not ready, or why degraded, one line each.
	Ready    bool     `json:"ready"`
	Degraded bool     `json:"degraded"`
	Reasons  []string `json:"reasons,omitempty"`

	// Links are the node's read endpoints, relative to the page.
	Links []Link `json:"links,omitempty"`
}

// Head is a published tree head.
type Head struct {
	Size         uint64    `json:"size"`
	RootHash     string    `json:"root_hash"`
	Timestamp    time.Time `json:"timestamp"`   // the latest cosignature's time; zero without one
	AgeSeconds   float64   `json:"age_seconds"` // since Timestamp, or since this node published it (primary)
	Cosignatures int       `json:"cosignatures"`
}

// NewHead is the status page's view of a published head at now: its age is that of its newest cosignature, or,
// without one, the time since published (zero: unknown, age -1).
func NewHead(cth *sigsum.CosignedTreeHead, now, published time.Time) *Head {
	h := &Head{Size: cth.Size, RootHash: cth.RootHash.String(), Cosignatures: len(cth.Cosignatures), AgeSeconds: -1}
	var newest uint64
	for _, c := range cth.Cosignatures {
		newest = max(newest, c.Timestamp)
	}
	switch {
	case newest > 0:
		h.Timestamp = time.Unix(int64(newest), 0).UTC()
		h.AgeSeconds = now.Sub(h.Timestamp).Seconds()
	case !published.IsZero():
		h.AgeSeconds = now.Sub(published).Seconds()
	}
	return h
}

// Witness is one witness of the trust policy, as the primary knows it.
type Witness struct {
	Name    string `json:"name"`
	KeyHash string `json:"key_hash"`
	// InPublished: its cosignature is on the published head.
	InPublished bool `json:"in_published"`
	// CosignedSize, CosignedAt and AgeSeconds: its latest valid cosignature (zero: none in this run).
	CosignedSize uint64    `json:"cosigned_size"`
	CosignedAt   time.Time `json:"cosigned_at"`
	AgeSeconds   float64   `json:"age_seconds"`
	// LastError is why its last exchange gave no cosignature ("" when it gave one).
	LastError string `json:"last_error,omitempty"`
	Requests  int    `json:"requests"`
}

// Secondary is one of a primary's secondaries.
type Secondary struct {
	Name string `json:"name"`
	// Asked: a rotation has asked it in this run. VerifiedSize is the largest tree it proved to hold, Lag how many
	// leaves the primary's tree has beyond it.
	Asked        bool      `json:"asked"`
	VerifiedSize uint64    `json:"verified_size"`
	VerifiedAt   time.Time `json:"verified_at"`
	Lag          uint64    `json:"lag"`
	// Error is why it did not verify in the last rotation ("" when it did).
	Error string `json:"error,omitempty"`
}

// Primary is what a secondary knows of its primary.
type Primary struct {
	InternalURL string `json:"internal_url"`
	PublicURL   string `json:"public_url,omitempty"`
	// Lag is how many leaves of the published head the secondary does not hold yet.
	Lag uint64 `json:"lag"`
	// PublishedCheckedAgeSeconds is how long ago the published head was last confirmed (-1: never in this run).
	PublishedCheckedAgeSeconds float64 `json:"published_checked_age_seconds"`
}

// RateLimit summarises the rate-limit file in force.
type RateLimit struct {
	File    string `json:"file"`
	Keys    int    `json:"keys"`    // `key` lines
	Domains int    `json:"domains"` // `domain` lines
	// Public is the per-registered-domain limit of the `public` line, 0 without one.
	Public int `json:"public"`
}

// Link is one of the node's endpoints.
type Link struct {
	Name string `json:"name"`
	Href string `json:"href"`
}

// Source makes a node's report. It must not block longer than the request's context allows.
type Source func(r *http.Request) Report

//go:embed page.html
var files embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"age":  age,
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).ParseFS(files, "page.html"))

// PageHandler serves the report as HTML: no external assets, no JavaScript, refreshed by the browser every few
// seconds.
func PageHandler(src Source) http.Handler {
	return handler(src, "text/html; charset=utf-8", func(w io.Writer, rep Report) {
		page.Execute(w, rep) // the template is fixed and tested: an error is a client gone mid-write
	})
}

// JSONHandler serves the report as JSON.
func JSONHandler(src Source) http.Handler {
	return handler(src, "application/json", func(w io.Writer, rep Report) {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	})
}

// handler serves src's report, never cached, written by write (not for HEAD).
func handler(src Source, contentType string, write func(io.Writer, Report)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := src(r)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodHead {
			write(w, rep)
		}
	})
}

// age renders seconds as a short human duration: "4s", "3m12s", "3m", "2h5m", "2h", "3d4h"; negative is "never".
func age(seconds float64) string {
	if seconds < 0 {
		return "never"
	}
	d := time.Duration(seconds * float64(time.Second)).Round(time.Second)
	h, m, sec := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", sec)
	case d < time.Hour && sec == 0:
		return fmt.Sprintf("%dm", m)
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", m, sec)
	case d < 48*time.Hour && m == 0:
		return fmt.Sprintf("%dh", h)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		return fmt.Sprintf("%dd%dh", h/24, h%24)
	}
}

// Package reads is a log's public read API at its published head, served the same by the primary and by every
// secondary: Sigsum v1's get-tree-head, get-inclusion-proof, get-consistency-proof and get-leaves, and v1.1's
// checkpoint and tiles (C2SP tlog-checkpoint, tlog-tiles). Every answer is about the one published head the node
// serves, read from the signed tree (internal/committed).
package reads

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"filippo.io/torchwood"

	"github.com/sigsumd/sigsumd/internal/committed"
	"github.com/sigsumd/sigsumd/internal/httpguard"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Head is a published head as the read API serves it, encoded once.
type Head struct {
	// Size is the published tree's size.
	Size uint64
	// Body is the get-tree-head answer: the cosigned tree head in Sigsum's ASCII form.
	Body []byte
	// Checkpoint is the checkpoint answer: the log's signed note and the witnesses' cosignature lines.
	Checkpoint []byte
}

// Tree is what the read API reads of the signed tree (a *committed.Tree is one).
type Tree interface {
	Size() uint64
	Inclusion(ctx context.Context, leafHash sigsum.Hash, size uint64) (sigsum.InclusionProof, error)
	Consistency(ctx context.Context, oldSize, newSize uint64) (sigsum.ConsistencyProof, error)
	Leaves(ctx context.Context, start, end uint64) ([]byte, error)
	HashTile(ctx context.Context, level uint8, n uint64, w int, size uint64) ([]byte, error)
	EntryBundle(ctx context.Context, n uint64, w int, size uint64) ([]byte, error)
}

// Config configures the read API.
type Config struct {
	// Head returns the published head to serve, or nil while there is none (the answers are then 503).
	Head func() *Head
	// Tree returns the signed tree the head is of; nil while there is none.
	Tree func() Tree
	// MaxRange is the most leaves one get-leaves returns (DefaultMaxRange when 0).
	MaxRange uint64
	// BackendFail answers a request whose storage read failed (the node logs and counts it); nil answers 500.
	BackendFail func(w http.ResponseWriter, r *http.Request, err error)
}

// DefaultMaxRange is the most leaves one get-leaves returns by default (the reference's).
const DefaultMaxRange = 512

// Cache lifetimes: a full tile never changes; a partial tile and the checkpoint change with the next head.
const (
	cacheImmutable = "public, max-age=31536000, immutable"
	cacheShort     = "public, max-age=5"
)

// Register adds the read endpoints under base ("/" or "/<prefix>/") to mux.
func Register(mux *http.ServeMux, base string, cfg Config) {
	if cfg.BackendFail == nil {
		cfg.BackendFail = func(w http.ResponseWriter, _ *http.Request, _ error) {
			Fail(w, http.StatusInternalServerError, "backend failure")
		}
	}
	if cfg.MaxRange == 0 {
		cfg.MaxRange = DefaultMaxRange
	}
	a := &api{cfg}
	mux.HandleFunc("GET "+base+"get-tree-head", a.getTreeHead)
	mux.HandleFunc("GET "+base+"get-inclusion-proof/{size}/{hash}", a.getInclusionProof)
	mux.HandleFunc("GET "+base+"get-consistency-proof/{old}/{new}", a.getConsistencyProof)
	mux.HandleFunc("GET "+base+"get-leaves/{start}/{end}", a.getLeaves)
	mux.HandleFunc("GET "+base+"checkpoint", a.getCheckpoint)
	mux.HandleFunc("GET "+base+"tile/", a.getTile)
}

type api struct{ cfg Config }

// Fail writes a reason with code, as one printable line of bounded length (httpguard.Reason).
func Fail(w http.ResponseWriter, code int, format string, args ...any) {
	http.Error(w, httpguard.Reason(fmt.Sprintf(format, args...)), code)
}

// WriteBody writes a text answer.
func WriteBody(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write(body)
}

// current returns the head and tree to answer from, or answers 503 and returns false.
func (a *api) current(w http.ResponseWriter) (*Head, Tree, bool) {
	h := a.cfg.Head()
	var t Tree
	if a.cfg.Tree != nil {
		t = a.cfg.Tree()
	}
	if h == nil || t == nil {
		Fail(w, http.StatusServiceUnavailable, "this node does not hold the log's published tree yet; retry later")
		return nil, nil, false
	}
	return h, t, true
}

func (a *api) getTreeHead(w http.ResponseWriter, _ *http.Request) {
	if h, _, ok := a.current(w); ok {
		WriteBody(w, http.StatusOK, h.Body)
	}
}

// PathInt parses a URL path argument with the ASCII integer grammar.
func PathInt(r *http.Request, name string) (uint64, error) {
	n, err := sigsum.ParseInt(r.PathValue(name))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func (a *api) getInclusionProof(w http.ResponseWriter, r *http.Request) {
	size, err := PathInt(r, "size")
	if err != nil {
		Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	hash, err := sigsum.ParseHash(r.PathValue("hash"))
	if err != nil {
		Fail(w, http.StatusBadRequest, "leaf hash: %v", err)
		return
	}
	h, t, ok := a.current(w)
	if !ok {
		return
	}
	switch {
	case size < 2:
		Fail(w, http.StatusBadRequest, "size %d: inclusion proofs need a tree of at least 2 leaves", size)
		return
	case size > h.Size:
		Fail(w, http.StatusBadRequest, "size %d is larger than the published tree (%d)", size, h.Size)
		return
	}
	// The tree bounds its storage reads by the node's timeout.
	proof, err := t.Inclusion(r.Context(), hash, size)
	switch {
	case errors.Is(err, committed.ErrNotFound):
		Fail(w, http.StatusNotFound, "leaf %s is not in the tree of size %d", hash, size)
		return
	case err != nil:
		a.cfg.BackendFail(w, r, err)
		return
	}
	WriteBody(w, http.StatusOK, proof.MarshalASCII())
}

func (a *api) getConsistencyProof(w http.ResponseWriter, r *http.Request) {
	oldSize, err := PathInt(r, "old")
	if err != nil {
		Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	newSize, err := PathInt(r, "new")
	if err != nil {
		Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	h, t, ok := a.current(w)
	if !ok {
		return
	}
	switch {
	case oldSize == 0 || oldSize >= newSize:
		Fail(w, http.StatusBadRequest, "need 0 < old < new, got old %d, new %d", oldSize, newSize)
		return
	case newSize > h.Size:
		Fail(w, http.StatusBadRequest, "new size %d is larger than the published tree (%d)", newSize, h.Size)
		return
	}
	proof, err := t.Consistency(r.Context(), oldSize, newSize)
	if err != nil {
		a.cfg.BackendFail(w, r, err)
		return
	}
	WriteBody(w, http.StatusOK, proof.MarshalASCII())
}

// LeafRange parses get-leaves arguments: start < end.
func LeafRange(r *http.Request) (start, end uint64, err error) {
	if start, err = PathInt(r, "start"); err != nil {
		return 0, 0, err
	}
	if end, err = PathInt(r, "end"); err != nil {
		return 0, 0, err
	}
	if start >= end {
		return 0, 0, fmt.Errorf("need start < end, got start %d, end %d", start, end)
	}
	return start, end, nil
}

// WaitBeyond reads sigsum.WaitBeyondHeader of an internal request; a malformed value is ignored (the answer is
// then immediate, as without the header).
func WaitBeyond(r *http.Request) (uint64, bool) {
	v := r.Header.Get(sigsum.WaitBeyondHeader)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 63)
	return n, err == nil
}

func (a *api) getLeaves(w http.ResponseWriter, r *http.Request) {
	start, end, err := LeafRange(r)
	if err != nil {
		Fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	h, t, ok := a.current(w)
	if !ok {
		return
	}
	if start >= h.Size {
		Fail(w, http.StatusBadRequest, "start %d is not below the published tree size %d", start, h.Size)
		return
	}
	body, err := t.Leaves(r.Context(), start, min(end, h.Size, start+a.cfg.MaxRange))
	if err != nil {
		a.cfg.BackendFail(w, r, err)
		return
	}
	WriteBody(w, http.StatusOK, body)
}

// getCheckpoint serves the published head as a checkpoint: the note the log signed (origin, size, root), its
// signature line, and the witnesses' cosignature lines under their own names. Always the head get-tree-head serves.
func (a *api) getCheckpoint(w http.ResponseWriter, _ *http.Request) {
	h, _, ok := a.current(w)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", cacheShort)
	w.Header().Set("Content-Length", strconv.Itoa(len(h.Checkpoint)))
	WriteBody(w, http.StatusOK, h.Checkpoint)
}

// getTile serves tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>] of the published tree.
func (a *api) getTile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path[strings.Index(r.URL.Path, "tile/"):]
	tl, err := torchwood.ParseTilePath(path)
	if err != nil || tl.L < -1 || tl.L > 7 || tl.W < 1 || tl.W > committed.TileWidth {
		Fail(w, http.StatusBadRequest, "malformed tile path: want tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>] (c2sp.org/tlog-tiles, height 8)")
		return
	}
	h, t, ok := a.current(w)
	if !ok {
		return
	}
	// The published size; for the moment a rotation publishes before the tree in memory advances, the signed one.
	size := min(h.Size, t.Size())
	var body []byte
	if tl.L == -1 {
		body, err = t.EntryBundle(r.Context(), uint64(tl.N), tl.W, size)
	} else {
		body, err = t.HashTile(r.Context(), uint8(tl.L), uint64(tl.N), tl.W, size)
	}
	switch {
	case errors.Is(err, committed.ErrTileNotServed):
		Fail(w, http.StatusNotFound, "no such tile in the published tree of size %d", size)
		return
	case errors.Is(err, committed.ErrTileNotHeld):
		Fail(w, http.StatusNotImplemented, "tiles above level 0 are served only for a log small enough to hold in memory")
		return
	case err != nil:
		a.cfg.BackendFail(w, r, err)
		return
	}
	if tl.W == committed.TileWidth {
		w.Header().Set("Cache-Control", cacheImmutable)
	} else {
		w.Header().Set("Cache-Control", cacheShort)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// Checkpoint returns the checkpoint of a cosigned head: note, the log's signed note of it, followed by the
// cosignature lines of from (a checkpoint of the same head, kept or fetched) that are valid: an Ed25519 line whose
// signature is one of cs, the cosignatures verified for it, or an ML-DSA-44 line that verifies with the key of one
// of witnesses (a Sigsum v1 head carries no ML-DSA cosignatures to compare with). Lines that do not parse, or are
// not valid, are dropped; without from, the checkpoint is the log's note alone.
func Checkpoint(note, from []byte, cs []sigsum.Cosignature, witnesses ...policy.Witness) []byte {
	out := append([]byte(nil), note...)
	if !bytes.HasPrefix(from, note) {
		return out
	}
	valid := make(map[sigsum.Signature]bool, len(cs))
	for _, c := range cs {
		valid[c.Signature] = true
	}
	var origin string
	var th sigsum.TreeHead
	if i := bytes.Index(note, []byte("\n\n")); i >= 0 {
		origin, th, _ = sigsum.ParseCheckpoint(note[:i+1])
	}
	for _, line := range bytes.SplitAfter(from[len(note):], []byte("\n")) {
		sig, err := sigsum.ParseNoteSignature(strings.TrimSuffix(string(line), "\n"))
		if err != nil || !bytes.HasSuffix(line, []byte("\n")) {
			continue
		}
		switch {
		case len(sig.Blob) == 8+sigsum.SignatureSize && valid[sigsum.Signature(sig.Blob[8:])]:
			out = append(out, line...)
		case len(sig.Blob) == 8+sigsum.MLDSA44SignatureSize && origin != "":
			mc := sigsum.MLDSACosignature{Name: sig.Name, Timestamp: binary.BigEndian.Uint64(sig.Blob), Signature: sig.Blob[8:]}
			for _, w := range witnesses {
				if w.MLDSA != nil && sig.KeyID == sigsum.MLDSAWitnessKeyID(sig.Name, w.MLDSA) && mc.Verify(w.MLDSA, origin, &th) {
					out = append(out, line...)
					break
				}
			}
		}
	}
	return out
}

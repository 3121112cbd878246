// Package witnesstest is a small but real C2SP tlog-witness for tests: it serves POST /add-checkpoint, verifies the
// log's note signature and the consistency proof from the head it last cosigned, persists that head, and answers
// with a cosignature line. It keeps the status codes of the spec (400, 403, 404, 409, 422) so clients can be tested
// against each of them.
package witnesstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// MaxRequestBytes bounds an add-checkpoint body: 126 proof lines and a note are well under it.
const MaxRequestBytes = 64 << 10

// Config configures a Witness.
type Config struct {
	// Name is the witness's note key name, used on its cosignature lines.
	Name string
	// Signer is the witness's cosigning key.
	Signer sigsum.Signer
	// StateFile persists the last cosigned head per log; empty keeps it in memory only.
	StateFile string
	// Logs are the log keys the witness cosigns for.
	Logs []sigsum.PublicKey
	// Now is the clock for cosignature timestamps; nil means time.Now.
	Now func() time.Time
	// MLDSA, if set, is an ML-DSA-44 cosigning key too: each answer carries its subtree/v1 cosignature line after
	// the Ed25519 one (C2SP tlog-cosignature).
	MLDSA *mldsa44.PrivateKey
}

// Witness is an http.Handler for POST /add-checkpoint. It is safe for concurrent use.
type Witness struct {
	name   string
	signer sigsum.Signer
	mldsa  *mldsa44.PrivateKey
	file   string
	now    func() time.Time
	logs   map[string]sigsum.PublicKey // origin → log key

	// mu serialises requests: each one reads, checks and persists the state before answering, as a witness must
	// never cosign two inconsistent heads.
	mu    sync.Mutex
	state map[string]sigsum.TreeHead // origin → last cosigned head
	// cosigned is, by origin hash (hex), the last checkpoint cosigned in this process, with the log's signature and
	// the witness's: what GET <origin hash>/checkpoint serves (C2SP tlog-witness, monitor retrieval).
	cosigned map[string][]byte
	fail     int // when non-zero, every request is answered with this status
	reqs     int
}

// New returns a witness, loading its state from cfg.StateFile if that exists.
func New(cfg Config) (*Witness, error) {
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, " \t\n+") {
		return nil, fmt.Errorf("witness name %q: want a non-empty name without spaces or '+'", cfg.Name)
	}
	if cfg.Signer == nil {
		return nil, errors.New("witness needs a signer")
	}
	w := &Witness{
		name:     cfg.Name,
		signer:   cfg.Signer,
		mldsa:    cfg.MLDSA,
		file:     cfg.StateFile,
		now:      cfg.Now,
		logs:     make(map[string]sigsum.PublicKey),
		state:    make(map[string]sigsum.TreeHead),
		cosigned: make(map[string][]byte),
	}
	if w.now == nil {
		w.now = time.Now
	}
	for _, k := range cfg.Logs {
		w.logs[sigsum.Origin(k)] = k
	}
	if w.file != "" {
		if err := w.load(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Public returns the witness's cosigning public key.
func (w *Witness) Public() sigsum.PublicKey { return w.signer.Public() }

// Name returns the witness's note key name.
func (w *Witness) Name() string { return w.name }

// State returns the head last cosigned for the log with key logKey, and whether there is one.
func (w *Witness) State(logKey sigsum.PublicKey) (sigsum.TreeHead, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	th, ok := w.state[sigsum.Origin(logKey)]
	return th, ok
}

// SetFailure makes every following request fail with status (with a short reason); 0 restores normal service.
func (w *Witness) SetFailure(status int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fail = status
}

// Requests returns how many add-checkpoint requests the witness has received.
func (w *Witness) Requests() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reqs
}

// ServeHTTP answers POST /add-checkpoint, and GET /<origin hash>/checkpoint with the last checkpoint it cosigned
// for that log (404 if none).
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if oh, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/checkpoint"); ok && r.Method == http.MethodGet {
		w.mu.Lock()
		cp, ok := w.cosigned[oh]
		w.mu.Unlock()
		if !ok {
			http.Error(rw, "no checkpoint of that log cosigned", http.StatusNotFound)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(cp)
		return
	}
	if r.URL.Path != "/add-checkpoint" {
		http.Error(rw, "no such endpoint", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		http.Error(rw, "reading request body", http.StatusBadRequest)
		return
	}
	if len(body) > MaxRequestBytes {
		http.Error(rw, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	status, resp := w.addCheckpoint(body)
	switch status {
	case http.StatusOK:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(status)
		rw.Write(resp)
	case http.StatusConflict:
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(status)
		rw.Write(resp)
	default:
		// A reason is one line (errors from the Merkle library span several), kept short.
		reason := strings.Join(strings.Fields(string(resp)), " ")
		if len(reason) > 200 {
			reason = reason[:200] + "..."
		}
		http.Error(rw, reason, status)
	}
}

// addCheckpoint does the work of one request and returns the status and the body (a reason on errors).
func (w *Witness) addCheckpoint(body []byte) (int, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reqs++
	if w.fail != 0 {
		return w.fail, []byte("failing on purpose")
	}
	req, err := sigsum.ParseAddCheckpointRequest(body)
	if err != nil {
		return http.StatusBadRequest, []byte(err.Error())
	}
	note, err := sigsum.ParseNote(req.Note)
	if err != nil {
		return http.StatusBadRequest, []byte(err.Error())
	}
	origin, th, err := sigsum.ParseCheckpoint(note.Text)
	if err != nil {
		return http.StatusBadRequest, []byte(err.Error())
	}
	logKey, ok := w.logs[origin]
	if !ok {
		return http.StatusNotFound, []byte("unknown log origin")
	}
	if !signedBy(note, origin, logKey) {
		return http.StatusForbidden, []byte("no valid signature by the log's key")
	}
	if req.OldSize > th.Size {
		return http.StatusBadRequest, []byte("old size exceeds checkpoint size")
	}
	stored, ok := w.state[origin]
	if !ok {
		// Never cosigned: the witness stands at the empty tree.
		stored = sigsum.TreeHead{Size: 0, RootHash: sigsum.HashBytes(nil)}
	}
	if req.OldSize != stored.Size {
		return http.StatusConflict, []byte(strconv.FormatUint(stored.Size, 10) + "\n")
	}
	if th.Size == 0 && th.RootHash != sigsum.HashBytes(nil) {
		return http.StatusUnprocessableEntity, []byte("empty tree with a non-empty root")
	}
	// ConsistencyProof.Verify covers old == 0 (empty proof, any root) and old == new (empty proof, equal roots).
	p := sigsum.ConsistencyProof{Path: req.Proof}
	if err := p.Verify(&stored, &th); err != nil {
		return http.StatusUnprocessableEntity, []byte(err.Error())
	}
	now := w.now().Unix()
	if now < 0 {
		now = 0
	}
	cs, err := th.Cosign(w.signer, origin, uint64(now))
	if err != nil {
		return http.StatusInternalServerError, []byte(err.Error())
	}
	// Persist before answering: a cosignature must never be given for a head the witness could forget.
	old, had := w.state[origin]
	w.state[origin] = th
	if err := w.save(); err != nil {
		if had {
			w.state[origin] = old
		} else {
			delete(w.state, origin)
		}
		return http.StatusInternalServerError, []byte(err.Error())
	}
	lines := sigsum.CosignatureLine(w.name, w.signer.Public(), &cs)
	if w.mldsa != nil {
		mc := sigsum.MLDSACosignature{Name: w.name, Timestamp: uint64(now), Signature: make([]byte, sigsum.MLDSA44SignatureSize)}
		msg := sigsum.SubtreeCosignedMessage(w.name, origin, mc.Timestamp, 0, th.Size, th.RootHash)
		if err := mldsa44.SignTo(w.mldsa, msg, nil, false, mc.Signature); err != nil {
			return http.StatusInternalServerError, []byte(err.Error())
		}
		pub, _ := w.mldsa.Public().(*mldsa44.PublicKey).MarshalBinary()
		lines = append(lines, mc.Line(pub)...)
	}
	w.cosigned[sigsum.HashBytes([]byte(origin)).String()] = append(append([]byte(nil), req.Note...), lines...)
	return http.StatusOK, lines
}

// signedBy reports whether note carries a valid Ed25519 note signature by the log key of origin.
func signedBy(note sigsum.Note, origin string, logKey sigsum.PublicKey) bool {
	id := sigsum.LogKeyID(origin, logKey)
	for _, s := range note.Signatures {
		if s.Name != origin || s.KeyID != id || len(s.Blob) != sigsum.SignatureSize {
			continue
		}
		if logKey.Verify(note.Text, sigsum.Signature(s.Blob)) {
			return true
		}
	}
	return false
}

// State file: one line per log, `<origin> <size> <root hex>`, sorted by origin.

func (w *Witness) save() error {
	if w.file == "" {
		return nil
	}
	origins := make([]string, 0, len(w.state))
	for o := range w.state {
		origins = append(origins, o)
	}
	slices.Sort(origins)
	var b bytes.Buffer
	for _, o := range origins {
		th := w.state[o]
		fmt.Fprintf(&b, "%s %d %s\n", o, th.Size, th.RootHash)
	}
	if err := atomicfile.Write(w.file, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	return nil
}

func (w *Witness) load() error {
	data, err := os.ReadFile(w.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("witness state: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Split(sc.Text(), " ")
		if len(f) != 3 {
			return fmt.Errorf("witness state %s line %d: want `<origin> <size> <root hex>`", w.file, n)
		}
		size, err := sigsum.ParseInt(f[1])
		if err != nil {
			return fmt.Errorf("witness state %s line %d: %w", w.file, n, err)
		}
		root, err := sigsum.ParseHash(f[2])
		if err != nil {
			return fmt.Errorf("witness state %s line %d: %w", w.file, n, err)
		}
		w.state[f[0]] = sigsum.TreeHead{Size: size, RootHash: root}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("witness state %s: %w", w.file, err)
	}
	return nil
}

package witnesstest

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

var fixedNow = time.Unix(1_700_000_000, 0)

func newWitness(t *testing.T, stateFile string, logs ...*Log) *Witness {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(Seed(0xee)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "test-witness", Signer: s, StateFile: stateFile, Now: func() time.Time { return fixedNow }}
	for _, l := range logs {
		cfg.Logs = append(cfg.Logs, l.Public())
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func post(t *testing.T, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/add-checkpoint", bytes.NewReader(body)))
	return rec
}

// wantCosigned checks a 200 answer: a cosignature line by w that verifies for the log's head at size.
func wantCosigned(t *testing.T, rec *httptest.ResponseRecorder, w *Witness, l *Log, size uint64) {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	c, name, err := sigsum.ParseWitnessCosignature(rec.Body.Bytes(), w.Public())
	if err != nil {
		t.Fatal(err)
	}
	if name != w.Name() {
		t.Errorf("cosignature line under %q, want the witness's name %q", name, w.Name())
	}
	th := l.HeadAt(size).TreeHead
	if !c.Verify(w.Public(), sigsum.Origin(l.Public()), &th) {
		t.Fatal("cosignature does not verify")
	}
	if c.Timestamp != uint64(fixedNow.Unix()) {
		t.Errorf("timestamp %d, want %d", c.Timestamp, fixedNow.Unix())
	}
	if got, _ := w.State(l.Public()); got != th {
		t.Errorf("state %+v, want %+v", got, th)
	}
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), status)
	}
}

func TestGrowingHeads(t *testing.T) {
	t.Parallel()
	l := NewLog(1)
	w := newWitness(t, "", l)
	// The empty tree, first contact.
	wantCosigned(t, post(t, w, l.Request(0, 0)), w, l, 0)
	l.Append(5)
	wantCosigned(t, post(t, w, l.Request(0, 5)), w, l, 5)
	l.Append(17)
	wantCosigned(t, post(t, w, l.Request(5, 22)), w, l, 22)
	// The same head again: empty proof, same root.
	wantCosigned(t, post(t, w, l.Request(22, 22)), w, l, 22)
	l.Append(1)
	wantCosigned(t, post(t, w, l.Request(22, 23)), w, l, 23)
}

func TestStatusCodes(t *testing.T) {
	t.Parallel()
	l, other := NewLog(1), NewLog(2)
	l.Append(10)
	other.Append(10)

	t.Run("404 unknown origin", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		wantStatus(t, post(t, w, other.Request(0, 10)), http.StatusNotFound)
	})
	t.Run("403 signed by another key", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		// The note names l's origin but carries a signature by other's key under l's key id.
		sth := l.HeadAt(10)
		forged, err := sth.Sign(other.Signer())
		if err != nil {
			t.Fatal(err)
		}
		forged.TreeHead = sth.TreeHead
		r := sigsum.AddCheckpointRequest{Note: forged.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusForbidden)
	})
	t.Run("403 no log signature", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		// l's checkpoint text under the signature line of another log (another name and key id).
		sth, osth := l.HeadAt(10), other.HeadAt(10)
		otherNote := osth.SignedNote(other.Public())
		sigLine := otherNote[bytes.Index(otherNote, []byte("\n\n"))+2:]
		note := append(sth.Checkpoint(sigsum.Origin(l.Public())), '\n')
		r := sigsum.AddCheckpointRequest{Note: append(note, sigLine...)}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusForbidden)
	})
	t.Run("400 old beyond size", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		sth := l.HeadAt(5)
		r := sigsum.AddCheckpointRequest{OldSize: 6, Note: sth.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusBadRequest)
	})
	t.Run("400 malformed", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		for _, body := range []string{"", "old x\n\n", "old 0\nnot base64!\n\n", "old 0\n\nno note"} {
			wantStatus(t, post(t, w, []byte(body)), http.StatusBadRequest)
		}
	})
	t.Run("409 wrong old size", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		wantCosigned(t, post(t, w, l.Request(0, 4)), w, l, 4)
		for _, old := range []uint64{0, 3, 5} {
			rec := post(t, w, l.Request(old, 10))
			wantStatus(t, rec, http.StatusConflict)
			if ct := rec.Header().Get("Content-Type"); ct != "text/x.tlog.size" {
				t.Errorf("Content-Type %q", ct)
			}
			if rec.Body.String() != "4\n" {
				t.Errorf("409 body %q, want \"4\\n\"", rec.Body.String())
			}
		}
		// Smaller than what was cosigned: still a conflict, never a rollback.
		rec := post(t, w, l.Request(0, 3))
		wantStatus(t, rec, http.StatusConflict)
		wantCosigned(t, post(t, w, l.Request(4, 10)), w, l, 10)
	})
	t.Run("422 bad proof", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		wantCosigned(t, post(t, w, l.Request(0, 4)), w, l, 4)
		p, err := l.Proof(t.Context(), 4, 10)
		if err != nil {
			t.Fatal(err)
		}
		p.Path[0][0] ^= 1
		sth := l.HeadAt(10)
		r := sigsum.AddCheckpointRequest{OldSize: 4, Proof: p.Path, Note: sth.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusUnprocessableEntity)
		// Missing proof.
		r.Proof = nil
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusUnprocessableEntity)
		if th, _ := w.State(l.Public()); th.Size != 4 {
			t.Errorf("state moved to %d on a bad proof", th.Size)
		}
	})
	t.Run("422 same size other root", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		wantCosigned(t, post(t, w, l.Request(0, 4)), w, l, 4)
		// A fork: another tree of size 4 signed by the same log key.
		fork := NewLog(1)
		fork.Append(5)
		th := sigsum.TreeHead{Size: 4, RootHash: l.HeadAt(3).RootHash}
		sth, err := th.Sign(fork.Signer())
		if err != nil {
			t.Fatal(err)
		}
		r := sigsum.AddCheckpointRequest{OldSize: 4, Note: sth.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusUnprocessableEntity)
	})
	t.Run("422 old zero with proof", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		sth := l.HeadAt(10)
		r := sigsum.AddCheckpointRequest{Proof: []sigsum.Hash{{1}}, Note: sth.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusUnprocessableEntity)
	})
	t.Run("422 empty tree wrong root", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		th := sigsum.TreeHead{Size: 0, RootHash: sigsum.Hash{7}}
		sth, err := th.Sign(l.Signer())
		if err != nil {
			t.Fatal(err)
		}
		r := sigsum.AddCheckpointRequest{Note: sth.SignedNote(l.Public())}
		wantStatus(t, post(t, w, r.MarshalBinary()), http.StatusUnprocessableEntity)
	})
	t.Run("405 and 404 paths", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/add-checkpoint", nil))
		wantStatus(t, rec, http.StatusMethodNotAllowed)
		if rec.Header().Get("Allow") != http.MethodPost {
			t.Errorf("Allow %q", rec.Header().Get("Allow"))
		}
		rec = httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/other", nil))
		wantStatus(t, rec, http.StatusNotFound)
	})
	t.Run("413 huge body", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		wantStatus(t, post(t, w, make([]byte, MaxRequestBytes+1)), http.StatusRequestEntityTooLarge)
	})
	t.Run("SetFailure", func(t *testing.T) {
		t.Parallel()
		w := newWitness(t, "", l)
		w.SetFailure(http.StatusServiceUnavailable)
		wantStatus(t, post(t, w, l.Request(0, 10)), http.StatusServiceUnavailable)
		w.SetFailure(0)
		wantCosigned(t, post(t, w, l.Request(0, 10)), w, l, 10)
		if w.Requests() != 2 {
			t.Errorf("Requests = %d", w.Requests())
		}
	})
}

func TestStatePersisted(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "state")
	a, b := NewLog(1), NewLog(2)
	a.Append(7)
	b.Append(3)
	w := newWitness(t, file, a, b)
	wantCosigned(t, post(t, w, a.Request(0, 7)), w, a, 7)
	wantCosigned(t, post(t, w, b.Request(0, 3)), w, b, 3)

	w2 := newWitness(t, file, a, b)
	if th, ok := w2.State(a.Public()); !ok || th != a.HeadAt(7).TreeHead {
		t.Errorf("log a state after restart: %+v %v", th, ok)
	}
	if th, ok := w2.State(b.Public()); !ok || th != b.HeadAt(3).TreeHead {
		t.Errorf("log b state after restart: %+v %v", th, ok)
	}
	wantStatus(t, post(t, w2, a.Request(0, 7)), http.StatusConflict)
	a.Append(2)
	wantCosigned(t, post(t, w2, a.Request(7, 9)), w2, a, 9)
}

func TestBadStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, content := range []string{"x\n", "o 01 " + strings.Repeat("00", 32) + "\n", "o 1 zz\n", "o 1 " + strings.Repeat("00", 32) + " extra\n"} {
		file := filepath.Join(dir, "state"+string(rune('a'+i)))
		if err := writeFile(file, content); err != nil {
			t.Fatal(err)
		}
		s, _ := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(Seed(1)))
		if _, err := New(Config{Name: "w", Signer: s, StateFile: file}); err == nil {
			t.Errorf("state %q accepted", content)
		}
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	l := NewLog(1)
	l.Append(8)
	w := newWitness(t, filepath.Join(t.TempDir(), "state"), l)
	srv := httptest.NewServer(w)
	defer srv.Close()
	var wg sync.WaitGroup
	codes := make([]int, 16)
	for i := range codes {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(l.Request(0, 8)))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
		default:
			t.Errorf("status %d", c)
		}
	}
	// The first request wins; every later one holds old 0 against a stored size of 8.
	if ok != 1 {
		t.Errorf("%d requests cosigned, want exactly 1", ok)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

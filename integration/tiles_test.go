package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// noteVerifier is an Ed25519 note verifier for key pub under name, made here from the C2SP signed-note rules (key
// hash: SHA-256 of name, newline, type byte and key), not from sigsumd's code.
type noteVerifier struct {
	name string
	typ  byte
	pub  ed25519.PublicKey
	// cosign: C2SP tlog-cosignature/v1 (type 0x04): the signature is over "cosignature/v1\ntime <t>\n" and the note
	// text, and carries the time before it.
	cosign bool
}

func (v noteVerifier) Name() string { return v.name }
func (v noteVerifier) KeyHash() uint32 {
	h := sha256.New()
	h.Write([]byte(v.name + "\n"))
	h.Write([]byte{v.typ})
	h.Write(v.pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}
func (v noteVerifier) Verify(msg, sig []byte) bool {
	if !v.cosign {
		return ed25519.Verify(v.pub, msg, sig)
	}
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	signed := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), msg...)
	return ed25519.Verify(v.pub, signed, sig[8:])
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	rsp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.StatusCode, rsp.Header, b
}

// TestCheckpointAndTiles reads the log through its Sigsum v1.1 endpoints with software nobody here wrote: the
// checkpoint verifies with golang.org/x/mod/sumdb/note (the log's key, and the witness's cosignature under the
// witness's own name), and filippo.io/torchwood's tlog client reads every leaf through the tiles, verifying each
// against the checkpoint's tree, at sizes with partial tiles and with a full one.
func TestCheckpointAndTiles(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1", "w1")
	ws[0].start()
	cl.start()
	c := cl.primary.client()
	sub := newSubmitter(t, 71)
	logPub := ed25519.PublicKey(cl.logKey[:])
	origin := sigsum.Origin(cl.logKey)
	verifiers := note.VerifierList(noteVerifier{name: origin, typ: 0x01, pub: logPub},
		noteVerifier{name: "w1", typ: 0x04, pub: ed25519.PublicKey(ws[0].key[:]), cosign: true})

	var all []submitted
	for _, grow := range []int{3, 260} { // 3: partial tiles only; 263: a full level-0 tile and a partial one
		all = append(all, submit(t, c, sub, grow)...)
		allCommitted(t, c, all, 120*time.Second)
		want := uint64(len(all))
		var cth sigsum.CosignedTreeHead
		waitFor(t, fmt.Sprintf("a head of %d leaves cosigned", want), 60*time.Second, func() bool {
			cth = treeHead(t, c, cl.logKey)
			return cth.Size == want && len(cth.Cosignatures) == 1
		})

		code, hdr, body := get(t, cl.primary.publicURL()+"/checkpoint")
		if code != 200 || !strings.Contains(hdr.Get("Cache-Control"), "max-age") {
			t.Fatalf("checkpoint: %d %v", code, hdr)
		}
		n, err := note.Open(body, verifiers)
		if err != nil {
			t.Fatalf("checkpoint does not verify: %v\n%s", err, body)
		}
		if len(n.Sigs) != 2 {
			t.Errorf("checkpoint verified with %d signatures, want the log's and w1's:\n%s", len(n.Sigs), body)
		}
		cp, err := torchwood.ParseCheckpoint(n.Text)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Origin != origin || uint64(cp.N) != cth.Size || cp.Hash != tlog.Hash(cth.RootHash) {
			t.Fatalf("checkpoint %+v is not the published head (size %d)", cp, cth.Size)
		}

		got := readThroughTiles(t, cl.primary.publicURL(), cp, all)
		// The secondary, once it serves this head, gives the same tiles.
		_, _, head := get(t, cl.primary.publicURL()+"/get-tree-head")
		waitFor(t, fmt.Sprintf("the secondary to serve the head of size %d", cp.N), 30*time.Second, func() bool {
			code, _, body := get(t, cl.secondaries[0].publicURL()+"/get-tree-head")
			return code == 200 && string(body) == string(head)
		})
		if n := readThroughTiles(t, cl.secondaries[0].publicURL(), cp, all); n != got {
			t.Errorf("size %d: %d entries through the secondary's tiles, %d through the primary's", cp.N, n, got)
		}
		t.Logf("size %d: %d entries read and verified through the tiles", cp.N, got)
	}

	// The secondary serves the same reads at the same head: get-tree-head and the checkpoint byte for byte, proofs,
	// leaves and tiles; add-leaf stays the primary's. And it goes on when the primary is down.
	sec := cl.secondaries[0]
	_, _, primaryHead := get(t, cl.primary.publicURL()+"/get-tree-head")
	_, _, primaryCheckpoint := get(t, cl.primary.publicURL()+"/checkpoint")
	waitFor(t, "the secondary to serve the published head", 30*time.Second, func() bool {
		code, _, body := get(t, sec.publicURL()+"/get-tree-head")
		return code == 200 && string(body) == string(primaryHead)
	})
	cl.primary.stop()
	if code, _, body := get(t, sec.publicURL()+"/checkpoint"); code != 200 || string(body) != string(primaryCheckpoint) {
		t.Errorf("the secondary's checkpoint:\n%s\nwant the primary's:\n%s", body, primaryCheckpoint)
	}
	n, err := note.Open(primaryCheckpoint, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil {
		t.Fatal(err)
	}
	got := readThroughTiles(t, sec.publicURL(), cp, all)
	t.Logf("the secondary, primary down: %d entries read and verified through its tiles", got)
	sc := sec.client()
	last := all[len(all)-1].leaf
	proof, err := sc.GetInclusionProof(context.Background(), uint64(cp.N), last.Hash())
	if err != nil {
		t.Fatal(err)
	}
	th := sigsum.TreeHead{Size: uint64(cp.N), RootHash: sigsum.Hash(cp.Hash)}
	if err := proof.Verify(last.Hash(), &th); err != nil {
		t.Errorf("the secondary's inclusion proof: %v", err)
	}
	if code, _, body := get(t, sec.publicURL()+"/get-leaves/0/1"); code != 200 || !strings.HasPrefix(string(body), "leaf=") {
		t.Errorf("the secondary's get-leaves: %d %q", code, body)
	}
	rsp, err := http.Post(sec.publicURL()+"/add-leaf", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if rsp.StatusCode != 404 || !strings.Contains(string(b), "primary") {
		t.Errorf("add-leaf on the secondary: %d %q, want 404 naming the primary", rsp.StatusCode, b)
	}
	// sigsumctl monitor follows the log through its tiles, from the secondary while the primary is down.
	pol := writeFile(t, t.TempDir(), "policy", fmt.Sprintf("log %s %s\nwitness w1 %s\ngroup g 1 w1\nquorum g\n",
		cl.logKey, sec.publicURL(), ws[0].key))
	if out, err := exec.Command(filepath.Join(binDir, "sigsumctl"), "monitor", "-policy", pol, "-tiles", "-once").CombinedOutput(); err != nil {
		t.Errorf("sigsumctl monitor -tiles -once on the secondary: %v\n%s", err, out)
	}
	cl.primary.start()

	// A full tile is immutable; a tile past the published tree is 404; a malformed path 400, on one line.
	code, hdr, _ := get(t, cl.primary.publicURL()+"/tile/0/000")
	if code != 200 || !strings.Contains(hdr.Get("Cache-Control"), "immutable") || hdr.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("full tile: %d %v", code, hdr)
	}
	for path, want := range map[string]int{
		"/tile/0/002":           404,
		"/tile/0/001.p/7":       200,
		"/tile/0/001.p/8":       404,
		"/tile/entries/001.p/7": 200,
		"/tile/1/000.p/1":       200,
		"/tile/0/1":             400,
		"/tile/0/x000/001":      400,
		"/tile/0/000.p/0":       400,
		"/tile/0/000.p/256":     400,
		"/tile/9/000":           400,
		"/tile/entries/000.p/x": 400,
	} {
		code, _, body := get(t, cl.primary.publicURL()+path)
		if code != want || strings.Count(string(body), "\n") > 1 && code != 200 {
			t.Errorf("GET %s: %d %q, want %d", path, code, body, want)
		}
	}
}

// readThroughTiles reads every leaf of the checkpoint's tree from the node at url with filippo.io/torchwood's tlog
// client, which verifies each against the tree, and checks them against the leaves submitted; it returns how many
// the client's iteration yielded (it may stop before a partial entry bundle), after reading three with proofs.
func readThroughTiles(t *testing.T, url string, cp torchwood.Checkpoint, all []submitted) int64 {
	t.Helper()
	tf, err := torchwood.NewTileFetcher(url)
	if err != nil {
		t.Fatal(err)
	}
	client, err := torchwood.NewClient(tf, torchwood.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got int64
	for i, entry := range client.Entries(ctx, cp.Tree, 0) {
		if i != got || string(entry) != string(all[i].leaf.MarshalBinary()) {
			t.Fatalf("entry %d through the tiles is not leaf %d", i, got)
		}
		got++
	}
	if err := client.Err(); err != nil {
		t.Fatalf("reading the tiles: %v", err)
	}
	// The client may stop before a partial entry bundle; each leaf is also read with its proof.
	for _, i := range []int64{0, cp.N / 2, cp.N - 1} {
		entry, _, err := client.Entry(ctx, cp.Tree, i)
		if err != nil || string(entry) != string(all[i].leaf.MarshalBinary()) {
			t.Fatalf("entry %d with its proof from the tiles: %v", i, err)
		}
	}
	return got
}

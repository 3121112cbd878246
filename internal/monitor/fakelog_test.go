package monitor

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/torchwood"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

func testSigner(t testing.TB, seed byte) *sigsum.Ed25519Signer {
	t.Helper()
	s, err := sigsum.NewEd25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeLog is an httptest Sigsum log whose history the test controls: it serves get-tree-head, get-leaves and
// get-consistency-proof over whatever leaves it holds, signed by its key, so a test can make it fork.
type fakeLog struct {
	t      testing.TB
	key    *sigsum.Ed25519Signer
	srv    *httptest.Server
	mu     sync.Mutex
	leaves []sigsum.Leaf
	size   int // published size
	// witnesses cosign each head at cosignTime.
	witnesses  []*sigsum.Ed25519Signer
	cosignTime uint64
	// tamper, when set, may change a head before it is served.
	tamper func(*sigsum.CosignedTreeHead)
	// leafHook, when set, may change leaves before get-leaves serves them.
	leafHook func(start int, ls []sigsum.Leaf)
	maxRange int
	down     bool
	// requests counts the requests of each endpoint.
	requests map[string]int
}

func newFakeLog(t testing.TB, seed byte) *fakeLog {
	l := &fakeLog{t: t, key: testSigner(t, seed), maxRange: 4, cosignTime: 1700000000, requests: map[string]int{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

// add appends n leaves by s and publishes them.
func (l *fakeLog) add(s sigsum.Signer, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; i < n; i++ {
		leaf, err := sigsum.SignLeaf(s, sigsum.HashBytes([]byte(strconv.Itoa(len(l.leaves)))))
		if err != nil {
			l.t.Fatal(err)
		}
		l.leaves = append(l.leaves, leaf)
	}
	l.size = len(l.leaves)
}

// fork replaces leaf i (and so every later root) in the log's history.
func (l *fakeLog) fork(i int, s sigsum.Signer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	leaf, err := sigsum.SignLeaf(s, sigsum.HashBytes([]byte("forged")))
	if err != nil {
		l.t.Fatal(err)
	}
	l.leaves[i] = leaf
}

func leafHashes(ls []sigsum.Leaf) []sigsum.Hash {
	hs := make([]sigsum.Hash, len(ls))
	for i := range ls {
		hs[i] = ls[i].Hash()
	}
	return hs
}

// consistencyPath is RFC 6962 §2.1.2 SUBPROOF(m, D[n], true).
func consistencyPath(hs []sigsum.Hash, m int, complete bool) []sigsum.Hash {
	n := len(hs)
	if m == n {
		if complete {
			return nil
		}
		return []sigsum.Hash{sigsum.RootHash(hs)}
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	if m <= k {
		return append(consistencyPath(hs[:k], m, complete), sigsum.RootHash(hs[k:]))
	}
	return append(consistencyPath(hs[k:], m-k, false), sigsum.RootHash(hs[:k]))
}

func (l *fakeLog) head() sigsum.CosignedTreeHead {
	th := sigsum.TreeHead{Size: uint64(l.size), RootHash: sigsum.RootHash(leafHashes(l.leaves[:l.size]))}
	sth, err := th.Sign(l.key)
	if err != nil {
		l.t.Fatal(err)
	}
	cth := sigsum.CosignedTreeHead{SignedTreeHead: sth}
	for _, w := range l.witnesses {
		c, err := th.Cosign(w, sigsum.Origin(l.key.Public()), l.cosignTime)
		if err != nil {
			l.t.Fatal(err)
		}
		cth.Cosignatures = append(cth.Cosignatures, c)
	}
	sigsum.SortCosignatures(cth.Cosignatures)
	if l.tamper != nil {
		l.tamper(&cth)
	}
	return cth
}

func (l *fakeLog) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	arg := func(i int) int {
		if len(parts) <= i {
			return -1
		}
		n, err := sigsum.ParseInt(parts[i])
		if err != nil {
			return -1
		}
		return int(n)
	}
	l.requests[parts[0]]++
	switch parts[0] {
	case "tile":
		tile, err := torchwood.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
		first := int(tile.N) * torchwood.TileWidth
		if err != nil || tile.L != -1 || first+tile.W > l.size {
			http.Error(w, "no such tile", http.StatusNotFound)
			return
		}
		ls := append([]sigsum.Leaf(nil), l.leaves[first:first+tile.W]...)
		if l.leafHook != nil {
			l.leafHook(first, ls)
		}
		var bundle []byte
		for i := range ls {
			bundle, _ = torchwood.AppendTileEntry(bundle, ls[i].MarshalBinary())
		}
		w.Write(bundle)
	case "get-tree-head":
		cth := l.head()
		w.Write(cth.MarshalASCII())
	case "get-consistency-proof":
		old, new := arg(1), arg(2)
		if old <= 0 || new <= old || new > l.size {
			http.Error(w, "bad sizes", http.StatusBadRequest)
			return
		}
		p := sigsum.ConsistencyProof{Path: consistencyPath(leafHashes(l.leaves[:new]), old, true)}
		w.Write(p.MarshalASCII())
	case "get-leaves":
		start, end := arg(1), arg(2)
		if start < 0 || end <= start || start >= l.size {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		end = min(end, l.size, start+l.maxRange)
		ls := append([]sigsum.Leaf(nil), l.leaves[start:end]...)
		if l.leafHook != nil {
			l.leafHook(start, ls)
		}
		w.Write(sigsum.MarshalLeavesASCII(ls))
	default:
		http.NotFound(w, r)
	}
}

// set changes the log's configuration under its lock.
func (l *fakeLog) set(f func(l *fakeLog)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l)
}

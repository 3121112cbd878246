package integration

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestSecondarySelfCheck: a secondary configured with the log's public URL and key replicates normally while the
// primary publishes heads its replica extends, and stops, unready, when the published head is one its tree does
// not extend.
func TestSecondarySelfCheck(t *testing.T) {
	t.Parallel()
	// One of two secondaries is enough to commit: the second, started later, follows a forged head.
	cl := newCluster(t, 1, "-secondary-quorum", "1")
	p, s := cl.primary, cl.secondaries[0]
	logPub := filepath.Join(p.dir, "key.pub")
	s.extra = append(s.extra, "-primary-public-url", p.publicURL(), "-log-public-key-file", logPub)
	s2 := newSecondary(t, filepath.Join(t.TempDir(), "s2"), p)
	p.addSecondaries(s2) // the primary serves its leaves only to the secondaries it lists
	cl.start()
	c := p.client()
	leaves := submit(t, c, newSubmitter(t, 91), 4)
	allCommitted(t, c, leaves, 60*time.Second)
	checkLog(t, c, cl.logKey, leaves, nil)
	if code, body := getStatus(t, s.internalURL()+"/readyz"); code != 200 {
		t.Fatalf("secondary with a passing self-check: /readyz %d %q", code, body)
	}

	// A second secondary whose "published head" is a forged fork signed with the log key: it must stop.
	forged := sigsum.TreeHead{Size: 2, RootHash: sigsum.Hash{7}}
	signer := loadNodeSigner(t, p)
	fsth, err := forged.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	cth := sigsum.CosignedTreeHead{SignedTreeHead: fsth}
	fork := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/get-tree-head") {
			w.Write(cth.MarshalASCII())
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(fork.Close)
	s2.extra = append(s2.extra, "-primary-public-url", fork.URL, "-log-public-key-file", logPub)
	s2.start()
	waitFor(t, "the second secondary to stop on the forged head", 30*time.Second, func() bool {
		code, _ := getStatus(t, s2.internalURL()+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(s2.tail(), "DIVERGED")
	})
}

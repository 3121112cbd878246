package committed

import (
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestHashFilter: every hash added is found, across the filters of the chain; few hashes never added are, and the
// chain doubles as it grows.
func TestHashFilter(t *testing.T) {
	t.Parallel()
	const n = 5*filterFirst + 123 // three filters: 2^16, 2^17, 2^18
	var f hashFilter
	added := make([]sigsum.Hash, n)
	for i := range added {
		added[i] = sigsum.HashBytes([]byte{byte(i), byte(i >> 8), byte(i >> 16), 'a'})
	}
	for i := 0; i < n; i += 1000 {
		f.add(added[i:min(i+1000, n)])
	}
	for i := range added {
		if !f.mayHave(added[i]) {
			t.Fatalf("hash %d added but not found", i)
		}
	}
	if len(f.segs) != 3 || f.segs[2].limit != 4*filterFirst {
		t.Errorf("%d filters, the last for %d: want 3, the last for %d", len(f.segs), f.segs[len(f.segs)-1].limit, 4*filterFirst)
	}
	const probes = 100000
	found := 0
	for i := range probes {
		if f.mayHave(sigsum.HashBytes([]byte{byte(i), byte(i >> 8), byte(i >> 16), 'b'})) {
			found++
		}
	}
	if rate := float64(found) / probes; rate > 0.01 {
		t.Errorf("%.2f%% of hashes never added found, want at most 1%%", 100*rate)
	}
	var empty hashFilter
	if empty.mayHave(added[0]) {
		t.Error("an empty filter has a hash")
	}
}

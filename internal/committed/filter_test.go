package committed

import (
	"testing"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestHashFilter: every hash added is found, across the filters of the chain; few hashes never added are; the
// chain's capacity doubles as it grows, and a filter made for a size holds it in one.
func TestHashFilter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		f           *hashFilter
		n           int
		wantFilters int
		wantLast    int // capacity of the last filter
	}{
		{"grown", &hashFilter{}, 5*filterFirst + 123, 4, 4 * filterFirst}, // 2^16, 2^16, 2^17, 2^18
		{"sized", newHashFilter(5*filterFirst + 123), 5*filterFirst + 123, 1, 5*filterFirst + 123 + (5*filterFirst+123)/8},
		{"sized and grown", newHashFilter(filterFirst), 5 * filterFirst, 4, 4 * (filterFirst + filterFirst/8)}, // c, c, 2c, 4c
		{"sized small", newHashFilter(10), filterFirst, 1, filterFirst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkFilter(t, tc.f, tc.n)
			if last := tc.f.segs[len(tc.f.segs)-1].limit; len(tc.f.segs) != tc.wantFilters || last != tc.wantLast {
				t.Errorf("%d filters, the last for %d: want %d, the last for %d", len(tc.f.segs), last, tc.wantFilters, tc.wantLast)
			}
		})
	}
	var empty hashFilter
	if empty.mayHave(sigsum.HashBytes([]byte("a"))) || newHashFilter(100).mayHave(sigsum.HashBytes([]byte("a"))) {
		t.Error("an empty filter has a hash")
	}
}

// checkFilter adds n hashes to f and checks that each is found and that few others are.
func checkFilter(t *testing.T, f *hashFilter, n int) {
	t.Helper()
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
}

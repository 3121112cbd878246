package witness

import (
	"fmt"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// maxPublishedBytes bounds a published-head file: a head and a few hundred cosignatures.
const maxPublishedBytes = 1 << 20

// SavePublished writes the published cosigned head to path, atomically, as the get-tree-head body, so the
// primary can serve it again after a restart.
func SavePublished(path string, cth sigsum.CosignedTreeHead) error {
	if err := atomicfile.Write(path, cth.MarshalASCII(), 0o644); err != nil {
		return fmt.Errorf("saving published tree head: %w", err)
	}
	return nil
}

// LoadPublished reads a head written by SavePublished and checks that logKey signed it. It does not verify the
// cosignatures (it does not know the witnesses); use VerifyCosignatures for that. A missing file gives an error
// wrapping fs.ErrNotExist.
func LoadPublished(path string, logKey sigsum.PublicKey) (sigsum.CosignedTreeHead, error) {
	data, err := atomicfile.ReadBounded(path, maxPublishedBytes)
	if err != nil {
		return sigsum.CosignedTreeHead{}, fmt.Errorf("loading published tree head: %w", err)
	}
	cth, err := sigsum.ParseCosignedTreeHead(data)
	if err != nil {
		return sigsum.CosignedTreeHead{}, fmt.Errorf("published tree head %s: %w", path, err)
	}
	if !cth.Verify(logKey) {
		return sigsum.CosignedTreeHead{}, fmt.Errorf("published tree head %s: not signed by the log key", path)
	}
	return cth, nil
}

// VerifyCosignatures returns the cosignatures of cs that are valid for th of the log with logKey by one of
// witnesses, at most one per witness. Use it on a head loaded from disk before counting it toward a quorum.
func VerifyCosignatures(logKey sigsum.PublicKey, th *sigsum.TreeHead, witnesses []policy.Witness, cs []sigsum.Cosignature) []sigsum.Cosignature {
	origin := sigsum.Origin(logKey)
	byHash := make(map[sigsum.Hash]sigsum.PublicKey, len(witnesses))
	for _, w := range witnesses {
		if w.MLDSA == nil { // a Sigsum v1 tree head carries Ed25519 cosignatures only
			byHash[w.KeyHash()] = w.Key
		}
	}
	var out []sigsum.Cosignature
	seen := make(map[sigsum.Hash]bool)
	for _, c := range cs {
		k, ok := byHash[c.KeyHash]
		if !ok || seen[c.KeyHash] || !c.Verify(k, origin, th) {
			continue
		}
		seen[c.KeyHash] = true
		out = append(out, c)
	}
	return out
}

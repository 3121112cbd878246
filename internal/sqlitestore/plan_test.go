package sqlitestore

import (
	"fmt"
	"strings"
	"testing"
)

// TestQueryPlans guards against full scans of a tree's rows: every hot query
// must search by an index (SQLite's planner has no statistics here and picks
// the primary key over a better index unless told).
func TestQueryPlans(t *testing.T) {
	t.Parallel()
	s := openTestStore(t)
	tests := []struct {
		desc, query string
		want        []string // substrings the plan must contain
	}{
		{"leaves by range", selectLeavesByRangeSQL, []string{"INDEX LeafDataSequenceIdx (TreeId=? AND SequenceNumber>? AND SequenceNumber<?)",
			"PRIMARY KEY (TreeId=? AND SequenceNumber=?)"}},
		{"sequenced hashes", selectSequencedHashesSQL, []string{"PRIMARY KEY (TreeId=? AND SequenceNumber>? AND SequenceNumber<?)"}},
		{"leaf hashes by range", selectIntegratedLeafHashesSQL, []string{"PRIMARY KEY (TreeId=? AND SequenceNumber>? AND SequenceNumber<?)"}},
		{"leaf values by range", selectIntegratedLeafValuesSQL, []string{"INDEX LeafDataSequenceIdx (TreeId=? AND SequenceNumber>? AND SequenceNumber<?)",
			"PRIMARY KEY (TreeId=? AND SequenceNumber=?)"}},
		{"leaf index by hash", selectLeafIndexByHashSQL, []string{"INDEX sqlite_autoindex_LeafData_1 (TreeId=? AND LeafIdentityHash=?)",
			"INDEX SequencedLeafMerkleIdx (TreeId=? AND MerkleLeafHash=?"}},
		{"leaves by hash", selectLeavesByMerkleHash(2), []string{"INDEX sqlite_autoindex_LeafData_1 (TreeId=? AND LeafIdentityHash=?)", "PRIMARY KEY (TreeId=? AND SequenceNumber=?)",
			"INDEX SequencedLeafMerkleIdx (TreeId=? AND MerkleLeafHash=?)"}},
		{"existing leaf", selectExistingLeafSQL, []string{"INDEX sqlite_autoindex_LeafData_1 (TreeId=? AND LeafIdentityHash=?)", "PRIMARY KEY (TreeId=? AND SequenceNumber=?)"}},
		{"dequeue", selectQueuedLeavesSQL, []string{"PRIMARY KEY (TreeId=? AND QueueTimestampNanos<?)"}},
		{"latest root", selectLatestRootSQL, []string{"PRIMARY KEY (TreeId=?)"}},
		{"tiles", "SELECT Nodes FROM Subtree WHERE TreeId = ? AND SubtreeId IN (?,?)", []string{"PRIMARY KEY (TreeId=? AND SubtreeId=?)"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			n := strings.Count(tc.query, "?")
			for i := 1; strings.Contains(tc.query, fmt.Sprintf("?%d", i)); i++ {
				n = i // numbered parameters: as many as the highest number
			}
			args := make([]any, n)
			for i := range args {
				args[i] = i + 1
			}
			rows, err := s.reader.Query("EXPLAIN QUERY PLAN "+tc.query, args...)
			if err != nil {
				t.Fatalf("EXPLAIN: %v", err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatalf("Scan: %v", err)
				}
				plan = append(plan, detail)
			}
			joined := strings.Join(plan, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("plan lacks %q:\n%s", w, joined)
				}
			}
			for _, line := range plan {
				if strings.HasPrefix(line, "SCAN") || strings.Contains(line, "TEMP B-TREE") ||
					(strings.Contains(line, "(TreeId=?)") && !strings.Contains(line, "TreeHead")) {
					t.Errorf("plan scans: %s", line)
				}
			}
		})
	}
}

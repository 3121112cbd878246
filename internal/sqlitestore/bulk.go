package sqlitestore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/trillian"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// bulkRows is how many rows one statement of addSequencedInBulk inserts: enough that the per-statement cost of
// database/sql and the driver (binding, stepping, reading the result) is spread thin, few enough that a statement
// stays far below SQLite's limit of 32,766 parameters (7 a row).
const bulkRows = 128

// okLeaf is the result of a stored leaf. It is built directly: status.New(...).Proto() clones a message, which a
// secondary storing 64k leaves a batch paid for once a leaf.
func okLeaf() *trillian.QueuedLogLeaf {
	return &trillian.QueuedLogLeaf{Status: &spb.Status{Code: int32(codes.OK), Message: "OK"}}
}

// bulkable reports whether a batch may take addSequencedInBulk: more than one leaf, every index valid and the
// indices strictly increasing (so no two leaves of the batch compete for one index), as a secondary's batches are.
func bulkable(leaves []*trillian.LogLeaf) bool {
	if len(leaves) < 2 {
		return false
	}
	for i, l := range leaves {
		if l.LeafIndex < 0 || i > 0 && l.LeafIndex <= leaves[i-1].LeafIndex {
			return false
		}
	}
	return true
}

// errBulkConflict reports that addSequencedInBulk found a leaf that conflicts after it had begun to write: the
// transaction must be rolled back and the batch stored leaf by leaf.
var errBulkConflict = errors.New("sqlitestore: a leaf of the batch conflicts")

// addSequencedInBulk is addSequencedLeaves for the common batch, a catching-up secondary's: no leaf is known
// already or repeated in the batch, and no index is taken. It inserts the LeafData rows in identity hash order
// (order, from insertOrder), then the SequencedLeafData rows in index order, bulkRows rows a statement. In index
// order, SequencedLeafData's rows are appended to its b-tree; in hash order they landed at random places within
// the batch's range, splitting pages, which made them cost as much as the random LeafData inserts. It reports
// false, having written nothing, when a leaf is repeated in the batch or an index in the batch's range is taken
// (a secondary storing again what it stored before a restart), and errBulkConflict when a leaf turned out to be
// known at another index after rows were written. In both cases the caller stores the batch leaf by leaf, which
// tells each conflict apart as the MySQL provider does (after errBulkConflict, in a new transaction). Rolling back
// a whole transaction in that rare case is what lets the common case go without a savepoint, whose journal of
// every page the batch touches cost more than the bulk statements saved.
func (t *logTX) addSequencedInBulk(ctx, ectx context.Context, leaves []*trillian.LogLeaf, order []int, ts int64) (bool, error) {
	for n := 1; n < len(order); n++ {
		if bytes.Equal(leaves[order[n]].LeafIdentityHash, leaves[order[n-1]].LeafIdentityHash) {
			return false, nil
		}
	}
	first, last := leaves[0].LeafIndex, leaves[len(leaves)-1].LeafIndex
	var taken int
	switch err := t.tx.QueryRowContext(ectx, `SELECT 1 FROM SequencedLeafData
		WHERE TreeId = ? AND SequenceNumber >= ? AND SequenceNumber <= ? LIMIT 1`, t.treeID, first, last).Scan(&taken); {
	case err == nil:
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("sqlitestore: storing leaves: %w", err)
	}
	n := int64(len(leaves))
	got, err := t.bulkInsert(ctx, ectx, insertSequencedLeafDataPrefix, 7, len(leaves), func(i int, dst []any) []any {
		l := leaves[order[i]]
		return append(dst, t.treeID, l.LeafIdentityHash, nonNil(l.MerkleLeafHash), nonNil(l.LeafValue), l.ExtraData,
			ts, l.LeafIndex)
	})
	if err == nil && got == n {
		got, err = t.bulkInsert(ctx, ectx, insertSequencedLeafPrefix, 5, len(leaves), func(i int, dst []any) []any {
			l := leaves[i]
			return append(dst, t.treeID, l.LeafIndex, l.LeafIdentityHash, nonNil(l.MerkleLeafHash), 0)
		})
	}
	if err != nil {
		return false, err
	}
	if got != n {
		return false, errBulkConflict
	}
	return true, nil
}

// bulkInsert inserts rows rows of cols values each with prefix + "(?, ...), ..." + " ON CONFLICT DO NOTHING",
// bulkRows rows a statement; row appends the values of row i to dst. It returns how many rows were inserted. ctx is
// checked between statements, which run on ectx (see addSequencedLeaves).
func (t *logTX) bulkInsert(ctx, ectx context.Context, prefix string, cols, rows int, row func(i int, dst []any) []any) (int64, error) {
	var stmts [2]*sql.Stmt // full statements, and the one shorter one at the end
	defer func() {
		for _, s := range stmts {
			if s != nil {
				_ = s.Close()
			}
		}
	}()
	args := make([]any, 0, bulkRows*cols)
	var inserted int64
	for start := 0; start < rows; start += bulkRows {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("sqlitestore: storing leaves: %w", err)
		}
		end := min(start+bulkRows, rows)
		args = args[:0]
		for i := start; i < end; i++ {
			args = row(i, args)
		}
		k := 0
		if end-start < bulkRows {
			k = 1
		}
		if stmts[k] == nil {
			s, err := t.tx.PrepareContext(ectx, valuesSQL(prefix, cols, end-start)+" ON CONFLICT DO NOTHING")
			if err != nil {
				return 0, fmt.Errorf("sqlitestore: preparing bulk insert: %w", err)
			}
			stmts[k] = s
		}
		r, err := stmts[k].ExecContext(ectx, args...)
		if err != nil {
			return 0, fmt.Errorf("sqlitestore: storing leaves %d..%d of %d: %w", start, end-1, rows, err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("sqlitestore: storing leaves %d..%d of %d: %w", start, end-1, rows, err)
		}
		inserted += n
	}
	return inserted, nil
}

// valuesSQL is prefix followed by rows groups of cols placeholders.
func valuesSQL(prefix string, cols, rows int) string {
	group := "(" + placeholders(cols) + ")"
	var b strings.Builder
	b.Grow(len(prefix) + rows*(len(group)+2))
	b.WriteString(prefix)
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(group)
	}
	return b.String()
}

// insertOrder returns the order in which addSequencedLeaves stores leaves: by identity hash, which puts the
// inserts into LeafData's key in key order, so that one transaction visits each index page once, in order, however
// large the index. A batch of a catching-up secondary has tens of thousands of leaves; in the given order each
// insert would be a random descent, and a page cache smaller than the index would read and spill the same pages
// again and again. The results are the same in either order: leaves with one identity hash keep their relative
// order (the first one is stored, the others conflict), and when indices are not strictly increasing (two leaves
// could compete for one index) the given order is kept.
func insertOrder(leaves []*trillian.LogLeaf) []int {
	order := make([]int, len(leaves))
	for i := range order {
		order[i] = i
	}
	for i := 1; i < len(leaves); i++ {
		if leaves[i].LeafIndex <= leaves[i-1].LeafIndex {
			return order
		}
	}
	// Sorting on the hashes' first 8 bytes, kept beside the index, touches the leaves only on a tie.
	type keyed struct {
		prefix uint64
		i      int
	}
	keys := make([]keyed, len(leaves))
	for i, l := range leaves {
		var p [8]byte
		copy(p[:], l.LeafIdentityHash)
		keys[i] = keyed{binary.BigEndian.Uint64(p[:]), i}
	}
	slices.SortStableFunc(keys, func(a, b keyed) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return bytes.Compare(leaves[a.i].LeafIdentityHash, leaves[b.i].LeafIdentityHash)
	})
	for n, k := range keys {
		order[n] = k.i
	}
	return order
}

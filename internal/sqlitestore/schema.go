package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

const (
	// schemaVersion is stored in PRAGMA user_version. Bump it, and add a step to
	// migrations, whenever the schema changes.
	schemaVersion = 4
	// applicationID marks the file as a sigsumd store ("sgsd") so that an
	// unrelated SQLite database is never mistaken for one.
	applicationID = 0x73677364
)

// schemaV1 mirrors the tables of Trillian's MySQL schema (storage/mysql/schema/
// storage.sql) so that the same queries give the same semantics, with these
// differences: no TreeControl table (unused by Trillian), no subtree revisions
// (the MySQL default for new trees; a snapshot gives readers a consistent view
// instead), LeafData keeps the Merkle leaf hash so a duplicate QueueLeaves can
// report the real one, and the unused Bucket/QueueID columns are gone.
// STRICT tables make SQLite enforce the column types.
var schemaV1 = []string{
	`CREATE TABLE Trees(
		TreeId                INTEGER PRIMARY KEY,
		TreeState             TEXT    NOT NULL,
		TreeType              TEXT    NOT NULL,
		DisplayName           TEXT    NOT NULL,
		Description           TEXT    NOT NULL,
		CreateTimeMillis      INTEGER NOT NULL,
		UpdateTimeMillis      INTEGER NOT NULL,
		MaxRootDurationNanos  INTEGER NOT NULL,
		StorageSettings       BLOB,
		Deleted               INTEGER NOT NULL DEFAULT 0,
		DeleteTimeMillis      INTEGER
	) STRICT`,
	// One row per signed log root; the latest is the one with the greatest
	// timestamp, as in MySQL. The unique revision keeps two roots from being
	// written by one transaction.
	`CREATE TABLE TreeHead(
		TreeId             INTEGER NOT NULL,
		TreeHeadTimestamp  INTEGER NOT NULL,
		TreeSize           INTEGER NOT NULL,
		RootHash           BLOB    NOT NULL,
		TreeRevision       INTEGER NOT NULL,
		PRIMARY KEY(TreeId, TreeHeadTimestamp)
	) STRICT, WITHOUT ROWID`,
	`CREATE UNIQUE INDEX TreeHeadRevisionIdx ON TreeHead(TreeId, TreeRevision)`,
	// Tiles of the Merkle tree as serialised storagepb.SubtreeProto, written
	// through Trillian's storage/cache.
	`CREATE TABLE Subtree(
		TreeId     INTEGER NOT NULL,
		SubtreeId  BLOB    NOT NULL,
		Nodes      BLOB    NOT NULL,
		PRIMARY KEY(TreeId, SubtreeId)
	) STRICT, WITHOUT ROWID`,
	// Every leaf ever accepted, queued or preordered; the primary key is what
	// deduplicates by identity hash.
	`CREATE TABLE LeafData(
		TreeId               INTEGER NOT NULL,
		LeafIdentityHash     BLOB    NOT NULL,
		MerkleLeafHash       BLOB    NOT NULL,
		LeafValue            BLOB    NOT NULL,
		ExtraData            BLOB,
		QueueTimestampNanos  INTEGER NOT NULL,
		PRIMARY KEY(TreeId, LeafIdentityHash)
	) STRICT`,
	// Leaves with an index: integrated LOG leaves, and PREORDERED_LOG leaves
	// whether integrated yet or not.
	`CREATE TABLE SequencedLeafData(
		TreeId                   INTEGER NOT NULL,
		SequenceNumber           INTEGER NOT NULL CHECK (SequenceNumber >= 0),
		LeafIdentityHash         BLOB    NOT NULL,
		MerkleLeafHash           BLOB    NOT NULL,
		IntegrateTimestampNanos  INTEGER NOT NULL,
		PRIMARY KEY(TreeId, SequenceNumber)
	) STRICT, WITHOUT ROWID`,
	`CREATE INDEX SequencedLeafMerkleIdx ON SequencedLeafData(TreeId, MerkleLeafHash)`,
	`CREATE INDEX SequencedLeafIdentityIdx ON SequencedLeafData(TreeId, LeafIdentityHash)`,
	// The queue of a LOG tree, dequeued in (timestamp, identity hash) order.
	`CREATE TABLE Unsequenced(
		TreeId               INTEGER NOT NULL,
		QueueTimestampNanos  INTEGER NOT NULL,
		LeafIdentityHash     BLOB    NOT NULL,
		MerkleLeafHash       BLOB    NOT NULL,
		PRIMARY KEY(TreeId, QueueTimestampNanos, LeafIdentityHash)
	) STRICT, WITHOUT ROWID`,
}

// schemaV2 indexes a sequenced leaf by its Merkle leaf hash only where that
// differs from its identity hash. A Sigsum leaf's identity is its Merkle leaf
// hash, so SequencedLeafIdentityIdx (until schemaV3) already finds it by that hash, and a second
// index of the same 32 random bytes cost every insert another random b-tree
// descent: in a secondary catching up with a large tree, a third of the work.
// GetLeavesByHash asks both (selectLeavesByMerkleHash).
var schemaV2 = []string{
	`DROP INDEX SequencedLeafMerkleIdx`,
	`CREATE INDEX SequencedLeafMerkleIdx ON SequencedLeafData(TreeId, MerkleLeafHash)
		WHERE MerkleLeafHash <> LeafIdentityHash`,
}

// schemaV3 finds a sequenced leaf by identity hash through LeafData, which
// now keeps the leaf's index (NULL while queued), instead of through an index
// of SequencedLeafData by identity hash: LeafData's primary key is such an
// index already, and the second one cost every stored leaf another descent
// into a b-tree of random keys, a quarter of the work of a secondary catching
// up with a large tree. LeafData's index is set with the SequencedLeafData row:
// by AddSequencedLeaves for a PREORDERED_LOG tree, by UpdateSequencedLeaves
// for a LOG tree.
var schemaV3 = []string{
	`ALTER TABLE LeafData ADD COLUMN SequenceNumber INTEGER`,
	`UPDATE LeafData SET SequenceNumber = (SELECT MIN(s.SequenceNumber)
		FROM SequencedLeafData s INDEXED BY SequencedLeafIdentityIdx
		WHERE s.TreeId = LeafData.TreeId AND s.LeafIdentityHash = LeafData.LeafIdentityHash)`,
	`DROP INDEX SequencedLeafIdentityIdx`,
}

// schemaV4 indexes LeafData by leaf index, so that a range of leaves is read
// in index order: LeafData's rows in that order, then each one's
// SequencedLeafData row by primary key. Through SequencedLeafData and then
// LeafData's identity hash key, every leaf of a range cost a descent into a
// b-tree of random keys, most of the time a primary spends serving a catching-up
// secondary. Queued leaves (no index yet) stay out of it. A primary's LeafData
// rows are inserted in the order they are sequenced, so the rows the index
// leads to are next to each other as well.
var schemaV4 = []string{
	`CREATE INDEX LeafDataSequenceIdx ON LeafData(TreeId, SequenceNumber) WHERE SequenceNumber IS NOT NULL`,
}

// migrations[v] upgrades a store from schema version v to v+1. Version 0 is an
// empty file.
var migrations = [][]string{
	0: schemaV1,
	1: schemaV2,
	2: schemaV3,
	3: schemaV4,
}

// ensureSchema creates or upgrades the schema in one transaction, and refuses
// files that are not sigsumd stores or that a newer binary has written.
func ensureSchema(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: begin schema transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	var version, appID, tables int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlitestore: reading schema version: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("sqlitestore: reading application id: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return fmt.Errorf("sqlitestore: reading schema: %w", err)
	}
	switch {
	case version == 0 && tables > 0, version > 0 && appID != applicationID:
		return fmt.Errorf("sqlitestore: the database is not a sigsumd store (application_id %#x, user_version %d, %d schema objects)", appID, version, tables)
	case version > schemaVersion:
		return fmt.Errorf("sqlitestore: the store has schema version %d, newer than the %d this binary supports: use a newer sigsumd", version, schemaVersion)
	case version == schemaVersion:
		return tx.Commit()
	}
	start := time.Now()
	if version > 0 {
		// An upgrade rewrites tables of a large store (v3: every leaf, some seconds a million): say why a start waits.
		logger.Info("sqlitestore: upgrading the store's schema", "from", version, "to", schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		for _, stmt := range migrations[v] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("sqlitestore: schema step %d->%d: %w", v, v+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
		return fmt.Errorf("sqlitestore: setting application id: %w", err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("sqlitestore: setting schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: committing schema: %w", err)
	}
	if version > 0 {
		logger.Info("sqlitestore: schema upgraded", "to", schemaVersion, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// Package datadir names the files of a node's data directory, once, for sigsumd, sigsumctl init, status and
// promote, and the configuration's defaults. docs/OPERATIONS.md ("Files of a data directory at a glance") lists
// them for operators.
package datadir

import "path/filepath"

// Dir is a node's data directory.
type Dir string

func (d Dir) file(name string) string { return filepath.Join(string(d), name) }

// Config is the configuration sigsumctl init writes.
func (d Dir) Config() string { return d.file("sigsumd.toml") }

// PrimaryConfig is the primary configuration sigsumctl promote writes.
func (d Dir) PrimaryConfig() string { return d.file("sigsumd-primary.toml") }

// Key is the node's private key file (key.pub beside it).
func (d Dir) Key() string { return d.file("key") }

// TreeID is the tree id file (tree-id=<n>).
func (d Dir) TreeID() string { return d.file("tree-id") }

// Store is the embedded SQLite store.
func (d Dir) Store() string { return d.file("trillian.db") }

// STH is a primary's signed tree head file.
func (d Dir) STH() string { return d.file("sth") }

// Published is the newest published head the node knows, as a get-tree-head body: a primary's published
// (cosigned) head, or the head a secondary followed and verified (promote relies on it).
func (d Dir) Published() string { return d.file("published-tree-head") }

// WitnessState is a primary's record of what each witness last cosigned.
func (d Dir) WitnessState() string { return d.file("witness-state") }

// RateLimitState is a primary's rate-limit counters (journals beside it).
func (d Dir) RateLimitState() string { return d.file("rate-limit-state") }

// Lock keeps two processes (a node, sigsumctl promote) off one data directory.
func (d Dir) Lock() string { return d.file("sigsumd.lock") }

// PromoteJournal marks a promotion in progress.
func (d Dir) PromoteJournal() string { return d.file("promote-journal") }

// LogPublicKey is a secondary's copy of the log's public key (sigsumd init -log-public-key): the primary's node key.
func (d Dir) LogPublicKey() string { return d.file("log.pub") }

// LogKey is the log's key file that sigsumctl promote copies in for the new primary.
func (d Dir) LogKey() string { return d.file("log-key") }

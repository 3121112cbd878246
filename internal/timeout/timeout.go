// Package timeout holds the node's one default bound on a single step: a storage call, a request to another node
// or to a witness. The configuration's `timeout` key sets it for all of them; the roles, the committed tree and the
// witness collector fall back to Default when built without one (tests, sigsumctl), so every path runs the same
// value.
package timeout

import "time"

// Default is the bound on one step when none is configured.
const Default = 10 * time.Second

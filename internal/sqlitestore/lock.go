package sqlitestore

import "github.com/sigsumd/sigsumd/internal/lockfile"

// ErrLocked is wrapped by the error Open returns when another process (or
// another Store in this process) holds the store's lock.
var ErrLocked = lockfile.ErrLocked

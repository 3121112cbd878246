package primary

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// StartupMode is what a primary does on a start without an sth file, as `<sth-file>.startup` says.
type StartupMode string

// The startup file's modes, as the reference server reads them.
const (
	// StartupEmpty signs the empty tree: the first start of a new log.
	StartupEmpty StartupMode = "empty"
	// StartupLocalTree signs the node's local tree: the first start after promoting a secondary.
	StartupLocalTree StartupMode = "local-tree"
)

// StartupFile returns the startup file's path for an sth file.
func StartupFile(sthFile string) string { return sthFile + ".startup" }

// ReadSTHFile reads the last signed tree head from an sth file and checks it is signed by logKey.
func ReadSTHFile(path string, logKey sigsum.PublicKey) (sigsum.SignedTreeHead, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sigsum.SignedTreeHead{}, fmt.Errorf("reading sth file: %w", err)
	}
	sth, err := sigsum.ParseSignedTreeHead(b)
	if err != nil {
		return sth, fmt.Errorf("sth file %s: %w", path, err)
	}
	if !sth.Verify(logKey) {
		return sth, fmt.Errorf("sth file %s: signature does not verify with the log key (wrong key-file?)", path)
	}
	return sth, nil
}

// WriteSTHFile replaces the sth file atomically and durably.
func WriteSTHFile(path string, sth *sigsum.SignedTreeHead) error {
	return atomicfile.Write(path, sth.MarshalASCII(), 0o644)
}

// WriteStartupFile creates `<sth-file>.startup` with mode; it refuses if either file exists already.
func WriteStartupFile(sthFile string, mode StartupMode) error {
	if _, err := os.Stat(sthFile); err == nil {
		return fmt.Errorf("sth file %s exists: this log has started before", sthFile)
	}
	return atomicfile.WriteNew(StartupFile(sthFile), []byte("startup="+string(mode)+"\n"), 0o644)
}

// ReadStartupFile reads `<sth-file>.startup`; fs.ErrNotExist (wrapped) if there is none.
func ReadStartupFile(sthFile string) (StartupMode, error) {
	path := StartupFile(sthFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading startup file: %w", err)
	}
	v, ok := strings.CutPrefix(strings.TrimSuffix(string(b), "\n"), "startup=")
	switch mode := StartupMode(v); {
	case ok && (mode == StartupEmpty || mode == StartupLocalTree):
		return mode, nil
	default:
		return "", fmt.Errorf("startup file %s: want a single line startup=empty or startup=local-tree", path)
	}
}

// startupState decides where a primary starts: the sth file's head (restart), or a startup mode (first start).
// Exactly one of the two files must exist.
func startupState(sthFile string, logKey sigsum.PublicKey) (*sigsum.SignedTreeHead, StartupMode, error) {
	sth, sthErr := ReadSTHFile(sthFile, logKey)
	mode, modeErr := ReadStartupFile(sthFile)
	sthMissing, modeMissing := errors.Is(sthErr, fs.ErrNotExist), errors.Is(modeErr, fs.ErrNotExist)
	switch {
	case !sthMissing && !modeMissing:
		return nil, "", fmt.Errorf("both %s and %s exist: remove the startup file if the sth file is this log's latest head",
			sthFile, StartupFile(sthFile))
	case sthMissing && modeMissing:
		return nil, "", fmt.Errorf("neither %s nor %s exists: create the startup file (sigsumctl init) for a new log",
			sthFile, StartupFile(sthFile))
	case !sthMissing:
		if sthErr != nil {
			return nil, "", sthErr
		}
		return &sth, "", nil
	default:
		if modeErr != nil {
			return nil, "", modeErr
		}
		return nil, mode, nil
	}
}

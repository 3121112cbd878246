package key

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// File modes of written key files.
const (
	PrivateKeyFileMode fs.FileMode = 0o600
	PublicKeyFileMode  fs.FileMode = 0o644
)

// maxKeyFileSize bounds how much of a key file is read; real key files are well under 1 KiB.
const maxKeyFileSize = 64 << 10

// ErrUnprotectedKey is wrapped by UnprotectedKeyError.
var ErrUnprotectedKey = errors.New("UNPROTECTED PRIVATE KEY FILE")

// unprotectedBits are the mode bits a private key file must not have: any access by group or others, the rule
// OpenSSH applies to the key files it reads.
const unprotectedBits fs.FileMode = 0o077

// UnprotectedKeyError is returned for a private key file that group or others may access. It wraps ErrUnprotectedKey.
type UnprotectedKeyError struct {
	Path string
	Mode fs.FileMode // permission bits of the file
}

func (e *UnprotectedKeyError) Error() string {
	return fmt.Sprintf("private key file %s has mode %04o, accessible by group or others (%v); fix: chmod 600 %s",
		e.Path, e.Mode.Perm(), ErrUnprotectedKey, e.Path)
}

func (e *UnprotectedKeyError) Unwrap() error { return ErrUnprotectedKey }

// checkPrivateKeyMode refuses a private key file whose mode lets group or others access it. File modes do not
// describe access on Windows, so nothing is checked there.
func checkPrivateKeyMode(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&unprotectedBits == 0 {
		return nil
	}
	return &UnprotectedKeyError{Path: path, Mode: mode.Perm()}
}

// ReadPrivateKeyFile reads and parses an OpenSSH Ed25519 private key file (see ParsePrivateKey). A file that
// group or others may access is refused with an UnprotectedKeyError, as OpenSSH does.
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	data, mode, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkPrivateKeyMode(path, mode); err != nil {
		return nil, err
	}
	priv, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

// ReadPublicKeyFile reads and parses a public key file (see ParsePublicKey).
func ReadPublicKeyFile(path string) (sigsum.PublicKey, error) {
	data, _, err := readKeyFile(path)
	if err != nil {
		return sigsum.PublicKey{}, err
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return sigsum.PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// readKeyFile reads at most maxKeyFileSize bytes of path, failing on larger files. It also returns the mode of
// the opened file (of a symbolic link's target).
func readKeyFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("read key file %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, 0, fmt.Errorf("read key file %s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	return data, fi.Mode(), nil
}

// WritePrivateKeyFile writes priv to path as an OpenSSH private key file with mode 0600. The file is written
// atomically (temporary file in the same directory, fsync, then link/rename into place) and an existing file
// at path is never overwritten.
func WritePrivateKeyFile(path string, priv ed25519.PrivateKey, comment string) error {
	data, err := MarshalPrivateKey(priv, comment)
	if err != nil {
		return fmt.Errorf("write private key file %s: %w", path, err)
	}
	if err := writeNewFile(path, data, PrivateKeyFileMode); err != nil {
		return fmt.Errorf("write private key file: %w", err)
	}
	return nil
}

// WritePublicKeyFile writes pub to path as an `ssh-ed25519 <base64> <comment>` line with mode 0644, atomically
// and without overwriting an existing file, like WritePrivateKeyFile.
func WritePublicKeyFile(path string, pub sigsum.PublicKey, comment string) error {
	data, err := MarshalPublicKey(pub, comment)
	if err != nil {
		return fmt.Errorf("write public key file %s: %w", path, err)
	}
	if err := writeNewFile(path, data, PublicKeyFileMode); err != nil {
		return fmt.Errorf("write public key file: %w", err)
	}
	return nil
}

// writeNewFile atomically creates path with the given content and mode. It fails with an error wrapping
// fs.ErrExist if path already exists. The content reaches disk (file and directory fsync) before it returns.
func writeNewFile(path string, data []byte, mode fs.FileMode) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: refusing to overwrite: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp creates the file with mode 0600, so a private key is never readable by others.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: create temporary file: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		if rerr := os.Remove(tmpName); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("%s: remove temporary file: %w", path, rerr)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("%s: chmod temporary file: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("%s: write temporary file: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: fsync temporary file: %w", path, err)
	}
	cerr := tmp.Close()
	tmp = nil
	if cerr != nil {
		return fmt.Errorf("%s: close temporary file: %w", path, cerr)
	}
	// A hard link publishes the file atomically and fails if path appeared meanwhile, unlike rename.
	if lerr := os.Link(tmpName, path); lerr != nil {
		if errors.Is(lerr, fs.ErrExist) {
			return fmt.Errorf("%s: refusing to overwrite: %w", path, fs.ErrExist)
		}
		// The file system may not support hard links: fall back to rename after re-checking.
		if _, serr := os.Lstat(path); serr == nil {
			return fmt.Errorf("%s: refusing to overwrite: %w", path, fs.ErrExist)
		}
		if rerr := os.Rename(tmpName, path); rerr != nil {
			return fmt.Errorf("%s: rename temporary file into place: %w (link: %v)", path, rerr, lerr)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so a new directory entry survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

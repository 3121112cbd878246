package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	for _, content := range []string{"one\n", "two\n"} {
		if err := Write(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	if err := WriteNew(p, []byte("three\n"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteNew over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two\n" {
		t.Errorf("WriteNew changed the existing file to %q", b)
	}
	q := filepath.Join(dir, "new")
	if err := WriteNew(q, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(q); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the state file (no temporaries)", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"empty", 0, false},
		{"at the bound", 16, false},
		{"one byte over", 17, true},
		{"far over", 1 << 20, true},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, make([]byte, tc.size), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := ReadBounded(path, 16)
		if (err != nil) != tc.wantErr || err == nil && len(b) != tc.size {
			t.Errorf("%s: ReadBounded = %d bytes, %v", tc.name, len(b), err)
		}
	}
	if _, err := ReadBounded(filepath.Join(dir, "missing"), 16); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

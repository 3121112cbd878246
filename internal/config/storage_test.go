package config

import (
	"errors"
	"strings"
	"testing"
)

// TestStorageErrorsHideTheTarget checks that a storage value that does not parse is named by its scheme alone:
// the rest may be a DSN with a password, and the error goes to logs and terminals.
func TestStorageErrorsHideTheTarget(t *testing.T) {
	t.Parallel()
	P := []string{"-role", "primary", "-key-file", "k"}
	for _, tc := range []struct {
		name    string
		storage string
		want    []string // substrings of the error
		unknown bool     // the error wraps ErrUnknownStorageScheme
	}{
		{"mistyped mysql", "mysqll://user:secret@tcp(db:3306)/trillian", []string{`"mysqll"`, "mysql:<dsn>"}, true},
		{"mistyped mysql no slashes", "mysqll:user:secret@tcp(db:3306)/trillian", []string{`"mysqll"`}, true},
		{"postgres for postgresql", "postgres://user:secret@db/trillian", []string{`"postgres"`, "postgresql:<uri>"}, true},
		{"capitalised", "MySQL:user:secret@tcp(db)/t", []string{`"MySQL"`}, true},
		{"dsn without scheme", "user:secret@tcp(db:3306)/trillian", []string{`"user"`}, true},
		{"password before the colon", "secret@tcp(db:3306)/trillian", []string{"scheme"}, true},
		{"long word before the colon", strings.Repeat("secret", 10) + ":x", []string{"scheme"}, true},
		{"no colon", "secret@db/trillian", []string{"no scheme"}, false},
		{"memory with target", "memory:secret", []string{"memory:", "nothing after the colon"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, "", append(P, "-storage", tc.storage)...)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if strings.Contains(msg, "secret") {
				t.Errorf("error %q shows the storage value", msg)
			}
			for _, w := range append(tc.want, "flag -storage") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if got := errors.Is(err, ErrUnknownStorageScheme); got != tc.unknown {
				t.Errorf("errors.Is(%q, ErrUnknownStorageScheme) = %v, want %v", msg, got, tc.unknown)
			}
		})
	}
}

// FuzzParseStorage checks that parseStorage never quotes what follows the scheme, and that its errors are one line.
func FuzzParseStorage(f *testing.F) {
	f.Add("mysqll", "//user:")
	f.Add("mysql", "")
	f.Add("memory", "")
	f.Add("postgresql", "//u@h/db")
	f.Add("user@tcp(db", "3306)/t")
	f.Fuzz(func(t *testing.T, scheme, rest string) {
		const marker = "\x00password\x00"
		_, err := parseStorage(scheme + ":" + marker + rest)
		if err == nil {
			return
		}
		if strings.Contains(err.Error(), "password\\x00") || strings.Contains(err.Error(), marker) {
			t.Fatalf("error %q shows the value after the scheme", err)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("error %q is not one line", err)
		}
	})
}

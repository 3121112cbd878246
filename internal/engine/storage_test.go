package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStorageErrorsHideTheTarget checks that an unsupported storage URI is named by its scheme alone by
// ParseStorage, which parses it for both an embedded engine and an attached database (sigsumctl promote
// -storage): the rest may be a DSN with a password.
func TestStorageErrorsHideTheTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, uri, want string
	}{
		{"mistyped mysql", "mysqll://user:secret@tcp(db:3306)/trillian", `"mysqll"`},
		{"postgres for postgresql", "postgres://user:secret@db/trillian", `"postgres"`},
		{"dsn without scheme", "user:secret@tcp(db:3306)/trillian", `"user"`},
		{"password before the colon", "secret@tcp(db:3306)/trillian", "scheme"},
		{"no colon", "secret@db/trillian", "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// The value is parsed once, by ParseStorage, for both an embedded engine and an attached database.
			st, err := ParseStorage(tc.uri)
			if err == nil {
				e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: st, NoSequencer: true})
				if err == nil {
					e.Close()
				}
				t.Fatalf("ParseStorage succeeded (StartEmbedded: %v)", err)
			}
			aerr := err
			for _, err := range []error{err, aerr} {
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				if strings.Contains(msg, "secret") {
					t.Errorf("error %q shows the storage URI", msg)
				}
				if !strings.Contains(msg, tc.want) {
					t.Errorf("error %q does not contain %q", msg, tc.want)
				}
				if !errors.Is(err, ErrUnsupportedStorage) {
					t.Errorf("error %q does not wrap ErrUnsupportedStorage", msg)
				}
			}
		})
	}
}

// TestBadStorageURIHidesThePassword checks that a storage URI of a supported scheme that does not parse is not
// quoted back with its password.
func TestBadStorageURIHidesThePassword(t *testing.T) {
	t.Parallel()
	for _, uri := range []string{
		"mysql:user:secret@tcp(db:3306)",
		"mysql:user:secret@tcp(db:3306)/trillian?timeout=never",
		"mysql:user:secret@bogus(db:3306)/trillian",
		"postgresql://user:secret@db:99999999x/trillian",
		"postgresql://user:secret@db/trillian\x7f",
		"postgresql:host=db password=secret port=x",
		"crdb:postgresql://user:secret@db:26257/trillian\x7f",
		"crdb:postgresql://user:secret@db:99999999x/trillian",
	} {
		t.Run(uri, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := ParseStorage(uri)
			if err != nil {
				t.Fatalf("ParseStorage: %v", err)
			}
			e, err := StartEmbedded(ctx, EmbeddedConfig{Storage: st, NoSequencer: true})
			if err == nil {
				e.Close()
				t.Fatal("StartEmbedded succeeded")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

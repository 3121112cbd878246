package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file of a data directory is listed in docs/OPERATIONS.md's "Files of a data directory at a glance".
func TestDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## Files of a data directory at a glance")
	if i < 0 {
		t.Fatal("docs/OPERATIONS.md has no data directory section")
	}
	section := doc[i:]
	d := Dir("/d")
	for _, path := range []string{d.Config(), d.PrimaryConfig(), d.Key(), d.TreeID(), d.Store(), d.STH(), d.Published(),
		d.WitnessState(), d.RateLimitState(), d.Lock(), d.PromoteJournal(), d.LogPublicKey(), d.LogKey()} {
		if filepath.Dir(path) != "/d" {
			t.Errorf("%s is not in the data directory", path)
		}
		name := filepath.Base(path)
		if !strings.Contains(section, "\n      "+name) && !strings.Contains(section, " "+name+" ") && !strings.Contains(section, ", "+name) {
			t.Errorf("%s is not listed among the files of a data directory in docs/OPERATIONS.md", name)
		}
	}
}

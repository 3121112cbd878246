package config

import (
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary TOML text to the loader: it must never panic, an error must be one line, and a
// successful result must satisfy the invariants the roles rely on.
func FuzzLoad(f *testing.F) {
	f.Add(fullPrimary, false)
	f.Add(string(Skeleton("primary", "/var/lib/sigsumd")), false)
	f.Add(string(Skeleton("secondary", "/var/lib/sigsumd")), true)
	f.Add("key-file = \"k\"\n[secondary]\nprimary-url = \"http://p:1\"\n", true)
	f.Add("[primary]\nsecondary-quorum = 1\n[[primary.secondaries]]\nurl = \"http://a\"\npubkey-file = \"a\"\n", false)
	f.Add("timeout = 10\ninterval = \"-1s\"\n", false)
	f.Add("[primary]\nmax-range = 9223372036854775807\n", false)
	f.Add("storage = \"postgresql://u@h/d\"\nurl-prefix = \"/x/y/\"\n", false)
	f.Add("a.b.c = 1\n[x]\n\"quoted\\nkey\" = 2\n", false)
	f.Add("primary = 3\n", false)
	f.Add("[[primary.secondaries]]\n[[primary.secondaries]]\nname = {}\n", false)
	f.Add("= = =\n\x00\xff", true)

	f.Fuzz(func(t *testing.T, text string, secondary bool) {
		fv := &flagValues{role: "primary", keyFile: "k"}
		set := map[string]bool{"role": true, "key-file": true}
		if secondary {
			fv.role = "secondary"
		}
		c, err := build(fv, set, "fuzz.toml", []byte(text))
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		switch {
		case c.Timeout <= 0 || c.Interval <= 0 || c.SequencerInterval <= 0 || c.SequencerBatchSize < 1:
			t.Fatalf("non-positive duration or batch size: %+v", c)
		case c.TrillianRPCServer == "" && c.Storage.Scheme == "":
			t.Fatal("neither storage nor trillian-rpc-server")
		case c.Role == RolePrimary && (c.Primary.MaxRange < 1 || c.Primary.Quorum() > len(c.Secondaries())):
			t.Fatalf("invalid primary settings: %+v", c.Primary)
		case c.Role == RoleSecondary && (c.Secondary.PrimaryURL == "" || c.Storage.Scheme == StorageMemory):
			t.Fatalf("invalid secondary settings: %+v", c)
		case strings.HasPrefix(c.URLPrefix, "/") || strings.HasSuffix(c.URLPrefix, "/"):
			t.Fatalf("url-prefix not normalised: %q", c.URLPrefix)
		}
	})
}

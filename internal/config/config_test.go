package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes text to config.toml in a fresh directory and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load runs Load with args, plus -config for text if it is not empty.
func load(t *testing.T, text string, args ...string) (*Config, error) {
	t.Helper()
	if text != "" {
		args = append([]string{"-config", writeConfig(t, text)}, args...)
	}
	var stderr bytes.Buffer
	return Load(args, &stderr)
}

func mustLoad(t *testing.T, text string, args ...string) *Config {
	t.Helper()
	c, err := load(t, text, args...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "", "-role", "primary", "-key-file", "k")
	want := &Config{
		Role:               RolePrimary,
		DataDir:            "/var/lib/sigsumd",
		ExternalEndpoint:   "127.0.0.1:6965",
		InternalEndpoint:   "127.0.0.1:6967",
		Storage:            Storage{Scheme: "sqlite", Target: "/var/lib/sigsumd/trillian.db"},
		TreeIDFile:         "/var/lib/sigsumd/tree-id",
		Timeout:            10 * time.Second,
		KeyFile:            "k",
		Interval:           10 * time.Second, // Sigsum's named policies want witnesses asked every 10 s
		LogLevel:           slog.LevelInfo,
		LogFormat:          "text",
		SequencerInterval:  DefaultSequencerInterval,
		SequencerBatchSize: 1000,
		Primary: PrimaryConfig{STHFile: "/var/lib/sigsumd/sth", MaxRange: 512, WitnessInterval: 10 * time.Second,
			WitnessMinInterval: time.Second},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if c.Secondaries() != nil || c.Primary.Quorum() != 0 {
		t.Errorf("Secondaries() = %v, Quorum() = %d; want none", c.Secondaries(), c.Primary.Quorum())
	}
	if got := c.Storage.String(); got != "sqlite:/var/lib/sigsumd/trillian.db" {
		t.Errorf("Storage.String() = %q", got)
	}

	s := mustLoad(t, "", "-role", "secondary", "-key-file", "k", "-primary-url", "https://p:6967", "-primary-pubkey-file", "p.pub")
	if s.Role != RoleSecondary || s.Secondary.PrimaryURL != "https://p:6967" || !reflect.DeepEqual(s.Primary, PrimaryConfig{}) ||
		s.Interval != DefaultSecondaryInterval {
		t.Errorf("secondary: %+v", s)
	}
}

func TestDataDirDerivedDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
		args       []string
		dir        string
	}{
		{"flag", "", []string{"-data-dir", "/srv/x"}, "/srv/x"},
		{"file", "data-dir = \"/srv/y\"\n", nil, "/srv/y"},
		{"flag over file", "data-dir = \"/srv/y\"\n", []string{"-data-dir", "/srv/z"}, "/srv/z"},
		{"relative kept relative", "", []string{"-data-dir", "state"}, "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustLoad(t, tc.file, append([]string{"-role", "primary", "-key-file", "k"}, tc.args...)...)
			if c.DataDir != tc.dir || c.TreeIDFile != filepath.Join(tc.dir, "tree-id") ||
				c.Primary.STHFile != filepath.Join(tc.dir, "sth") ||
				c.Storage != (Storage{Scheme: "sqlite", Target: filepath.Join(tc.dir, "trillian.db")}) {
				t.Errorf("data-dir %q: tree-id %q, sth %q, storage %v", c.DataDir, c.TreeIDFile, c.Primary.STHFile, c.Storage)
			}
		})
	}
	// Explicit values do not follow data-dir.
	c := mustLoad(t, "trillian-tree-id-file = \"t\"\nstorage = \"sqlite:db\"\n[primary]\nsth-file = \"s\"\n",
		"-role", "primary", "-key-file", "k", "-data-dir", "/d")
	if c.TreeIDFile != "t" || c.Storage.Target != "db" || c.Primary.STHFile != "s" {
		t.Errorf("explicit paths changed: %+v", c)
	}
}

const fullPrimary = `
external-endpoint = "0.0.0.0:7000"
internal-endpoint = "10.0.0.1:7001"
url-prefix = "/a/b/"
trillian-tree-id-file = "tid"
timeout = "5s"
key-file = "file.key"
interval = "1m"
log-level = "debug"
data-dir = "/data"
storage = "mysql:u:p@tcp(db:3306)/trillian"
log-format = "json"
sequencer-interval = "50ms"
sequencer-batch-size = 10

[primary]
policy-file = "policy"
rate-limit-file = "limits"
allow-test-domain = true
secondary-url = "https://s1:6967"
secondary-pubkey-file = "s1.pub"
sth-file = "sth"
max-range = 100
secondary-quorum = 2

[[primary.secondaries]]
name = "two"
url = "https://s2.example/prefix"
pubkey-file = "s2.pub"

[[primary.secondaries]]
url = "https://[::1]:6967"
pubkey-file = "s3.pub"
`

func TestFileAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, fullPrimary, "-role", "primary")
	want := &Config{
		Role:               RolePrimary,
		ConfigFile:         c.ConfigFile,
		DataDir:            "/data",
		ExternalEndpoint:   "0.0.0.0:7000",
		InternalEndpoint:   "10.0.0.1:7001",
		Storage:            Storage{Scheme: "mysql", Target: "u:p@tcp(db:3306)/trillian"},
		URLPrefix:          "a/b",
		TreeIDFile:         "tid",
		Timeout:            5 * time.Second,
		KeyFile:            "file.key",
		Interval:           time.Minute,
		LogLevel:           slog.LevelDebug,
		LogFormat:          "json",
		SequencerInterval:  50 * time.Millisecond,
		SequencerBatchSize: 10,
		Primary: PrimaryConfig{
			PolicyFile:         "policy",
			RateLimitFile:      "limits",
			AllowTestDomain:    true,
			STHFile:            "sth",
			MaxRange:           100,
			WitnessInterval:    DefaultWitnessInterval,
			WitnessMinInterval: DefaultWitnessMinInterval,
			SecondaryQuorum:    2,
			Secondaries: []Secondary{
				{Name: "https://s1:6967", URL: "https://s1:6967", PubkeyFile: "s1.pub"},
				{Name: "two", URL: "https://s2.example/prefix", PubkeyFile: "s2.pub"},
				{Name: "https://[::1]:6967", URL: "https://[::1]:6967", PubkeyFile: "s3.pub"},
			},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("file only:\ngot  %+v\nwant %+v", c, want)
	}
	if len(c.Secondaries()) != 3 || c.Primary.Quorum() != 2 {
		t.Errorf("Secondaries() = %d, Quorum() = %d", len(c.Secondaries()), c.Primary.Quorum())
	}

	c = mustLoad(t, fullPrimary, "-role", "primary",
		"-external-endpoint", ":8000", "-internal-endpoint", ":8001", "-url-prefix", "x",
		"-trillian-tree-id-file", "tid2", "-timeout", "7s", "-key-file", "flag.key", "-interval", "2s",
		"-log-level", "warn", "-data-dir", "/other", "-storage", "memory:", "-log-format", "text",
		"-sequencer-interval", "1s", "-sequencer-batch-size", "5", "-policy-file", "p2", "-rate-limit-file", "l2",
		"-allow-test-domain=false", "-secondary-url", "https://s9", "-secondary-pubkey-file", "s9.pub",
		"-sth-file", "sth2", "-max-range", "7", "-secondary-quorum", "0")
	want.ConfigFile = c.ConfigFile
	want.DataDir, want.ExternalEndpoint, want.InternalEndpoint, want.URLPrefix = "/other", ":8000", ":8001", "x"
	want.Storage = Storage{Scheme: "memory"}
	want.TreeIDFile, want.Timeout, want.KeyFile, want.Interval = "tid2", 7*time.Second, "flag.key", 2*time.Second
	want.LogLevel, want.LogFormat, want.SequencerInterval, want.SequencerBatchSize = slog.LevelWarn, "text", time.Second, 5
	want.Primary.PolicyFile, want.Primary.RateLimitFile, want.Primary.AllowTestDomain = "p2", "l2", false
	want.Primary.STHFile, want.Primary.MaxRange, want.Primary.SecondaryQuorum = "sth2", 7, 0
	want.Primary.Secondaries[0] = Secondary{Name: "https://s9", URL: "https://s9", PubkeyFile: "s9.pub"}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("flags over file:\ngot  %+v\nwant %+v", c, want)
	}
	if c.Primary.Quorum() != 3 {
		t.Errorf("Quorum() = %d, want all 3", c.Primary.Quorum())
	}
}

// TestReferenceStyle loads a file with only the reference server's keys and one secondary.
func TestReferenceStyle(t *testing.T) {
	t.Parallel()
	const ref = `
external-endpoint = "localhost:6965"
internal-endpoint = "localhost:6967"
trillian-rpc-server = "localhost:6962"
url-prefix = ""
trillian-tree-id-file = "/var/lib/sigsum-log/tree-id"
timeout = "10s"
key-file = "/etc/sigsum-log/log.key"
interval = "30s"
log-level = "info"

[primary]
policy-file = "/etc/sigsum-log/trust_policy"
rate-limit-file = "/etc/sigsum-log/rate-limit.cfg"
allow-test-domain = false
secondary-url = "http://secondary.example:6967"
secondary-pubkey-file = "/etc/sigsum-log/secondary.pub"
sth-file = "/var/lib/sigsum-log/sth"
max-range = 512
`
	// The reference's nodes speak plain HTTP between them: pairing with them is explicit.
	c := mustLoad(t, ref, "-role", "primary", "-insecure-internal-http")
	if c.TrillianRPCServer != "localhost:6962" || c.Storage != (Storage{}) {
		t.Errorf("external trillian: rpc %q storage %v", c.TrillianRPCServer, c.Storage)
	}
	want := []Secondary{{Name: "http://secondary.example:6967", URL: "http://secondary.example:6967", PubkeyFile: "/etc/sigsum-log/secondary.pub"}}
	if !reflect.DeepEqual(c.Secondaries(), want) || c.Primary.Quorum() != 1 {
		t.Errorf("secondaries %+v quorum %d", c.Secondaries(), c.Primary.Quorum())
	}
	if c.Primary.STHFile != "/var/lib/sigsum-log/sth" || c.TreeIDFile != "/var/lib/sigsum-log/tree-id" {
		t.Errorf("paths: %+v", c)
	}

	const refSecondary = `
internal-endpoint = "localhost:6967"
trillian-rpc-server = "localhost:6962"
trillian-tree-id-file = "/var/lib/sigsum-log/tree-id"
key-file = "/etc/sigsum-log/secondary.key"
interval = "3s"

[secondary]
primary-url = "http://primary.example:6967"
`
	s := mustLoad(t, refSecondary, "-role", "secondary", "-insecure-internal-http")
	if s.Secondary.PrimaryURL != "http://primary.example:6967" || s.Interval != 3*time.Second {
		t.Errorf("secondary: %+v", s)
	}
}

func TestURLPrefixNormalised(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", "/": "", "a": "a", "/a/": "a", "//a/b//": "a/b", "sigsum/v1": "sigsum/v1"} {
		c := mustLoad(t, "", "-role", "primary", "-key-file", "k", "-url-prefix", in)
		if c.URLPrefix != want {
			t.Errorf("url-prefix %q: got %q, want %q", in, c.URLPrefix, want)
		}
	}
}

func TestStorage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Storage{
		"sqlite:rel/db":                      {Scheme: "sqlite", Target: "rel/db"},
		"memory:":                            {Scheme: "memory", Target: ""},
		"mysql:user:pw@tcp(h:3306)/db":       {Scheme: "mysql", Target: "user:pw@tcp(h:3306)/db"},
		"postgresql:host=h dbname=d":         {Scheme: "postgresql", Target: "host=h dbname=d"},
		"postgresql://u@h/db?sslmode=verify": {Scheme: "postgresql", Target: "postgresql://u@h/db?sslmode=verify"},
	} {
		c := mustLoad(t, "", "-role", "primary", "-key-file", "k", "-storage", in)
		if c.Storage != want {
			t.Errorf("storage %q: got %+v, want %+v", in, c.Storage, want)
		}
		if c.Storage.String() != in {
			t.Errorf("storage %q: String() = %q", in, c.Storage.String())
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	P := []string{"-role", "primary", "-key-file", "k"}
	S := []string{"-role", "secondary", "-key-file", "k", "-primary-url", "https://p:6967", "-primary-pubkey-file", "p.pub"}
	for _, tc := range []struct {
		name string
		file string
		args []string
		want []string // substrings of the error
	}{
		// File syntax, unknown keys, types.
		{"unknown key", "[primary]\nsecondary-ur = \"x\"\n", P, []string{`config.toml: unknown key "primary.secondary-ur" (line 2)`}},
		{"unknown keys", "foo = 1\nbar = 2\n", P, []string{`unknown keys "foo" (line 1), "bar" (line 2)`}},
		{"unknown key in secondaries", "[[primary.secondaries]]\nurl = \"http://a\"\npubkey-file = \"a\"\nurll = \"x\"\n", P, []string{`"primary.secondaries.urll" (line 4)`}},
		{"unknown section", "[primry]\nmax-range = 1\n", P, []string{`config.toml: unknown key "primry" (line 1)`}},
		{"syntax", "key-file = \"k\"\nmax-range = = 3\n", P, []string{"config.toml: line 2: "}},
		{"wrong type int", "[primary]\nmax-range = \"big\"\n", P, []string{"config.toml", "max-range", "line 2"}},
		{"wrong type bool", "[primary]\nallow-test-domain = \"yes\"\n", P, []string{"allow-test-domain"}},
		{"wrong type string", "key-file = 3\n", P, []string{"key-file"}},
		{"duration as integer", "timeout = 10\n", P, []string{"timeout", "duration string"}},
		{"bad duration", "interval = \"often\"\n", P, []string{"interval", "duration string"}},
		{"self-check without the log key", "", append(S, "-primary-public-url", "http://p:6965"), []string{"primary-public-url", "together"}},
		{"self-check URL for a primary", "", append(P, "-primary-public-url", "http://p:6965"), []string{"-primary-public-url", "secondary"}},
		{"backend other than trillian", "backend = \"ephemeral\"\n", P, []string{"backend", "ephemeral"}},
		{"tls cert without key", "tls-cert-file = \"c\"\n", P, []string{"tls-cert-file", "together"}},
		{"dns-server without port", "[primary]\ndns-server = \"127.0.0.1\"\n", P, []string{"primary.dns-server"}},
		{"dns-server for a secondary", "", append(S, "-dns-server", "127.0.0.1:53"), []string{"-dns-server", "primary"}},
		{"section as value", "primary = 3\n", P, []string{"config.toml: line 1: key \"primary\": type mismatch: expected table"}},
		{"missing file", "", []string{"-role", "primary", "-key-file", "k", "-config", "/nonexistent/c.toml"}, []string{"-config", "/nonexistent/c.toml"}},
		{"extra argument", "", append(P, "extra"), []string{`unexpected argument "extra"`}},
		{"unknown flag", "", append(P, "-nope"), []string{"nope"}},

		// Role and key.
		{"no role", "", []string{"-key-file", "k"}, []string{"-role", "required"}},
		{"empty role", "", []string{"-role", "", "-key-file", "k"}, []string{"-role", "required"}},
		{"bad role", "", []string{"-role", "tertiary", "-key-file", "k"}, []string{"-role", `"tertiary"`}},
		{"no key-file", "", []string{"-role", "primary"}, []string{`key "key-file"`, "required"}},
		{"no key-file secondary", "", []string{"-role", "secondary", "-primary-url", "http://p"}, []string{"key-file", "required"}},
		{"empty key-file in file", "key-file = \"\"\n", []string{"-role", "primary"}, []string{`config.toml: key "key-file"`}},

		// Primary.
		{"secondary-url without pubkey", "[primary]\nsecondary-url = \"http://s\"\n", P, []string{`key "primary.secondary-url"`, "secondary-pubkey-file"}},
		{"pubkey without secondary-url", "", append(P, "-secondary-pubkey-file", "s.pub"), []string{"flag -secondary-pubkey-file", "secondary-url"}},
		{"secondaries entry without url", "[[primary.secondaries]]\npubkey-file = \"a\"\n", P, []string{"primary.secondaries[0]", `"url"`}},
		{"secondaries entry without pubkey", "[[primary.secondaries]]\nurl = \"http://a\"\n", P, []string{"primary.secondaries[0]", `"pubkey-file"`}},
		{"secondary url scheme", "", append(P, "-secondary-url", "ftp://s", "-secondary-pubkey-file", "p"), []string{"flag -secondary-url", "http"}},
		{"secondary url no host", "", append(P, "-secondary-url", "http:///x", "-secondary-pubkey-file", "p"), []string{"flag -secondary-url", "no host"}},
		{"secondary url relative", "", append(P, "-secondary-url", "s:6967", "-secondary-pubkey-file", "p"), []string{"flag -secondary-url"}},
		{"secondaries url invalid", "[[primary.secondaries]]\nurl = \"s2\"\npubkey-file = \"a\"\n", P, []string{"primary.secondaries[0]", `"url"`, "http"}},
		{"duplicate secondary url", "[primary]\nsecondary-url = \"http://a\"\nsecondary-pubkey-file = \"a\"\n[[primary.secondaries]]\nurl = \"http://a\"\npubkey-file = \"b\"\n", P, []string{"secondaries", `"http://a"`, "twice"}},
		{"duplicate secondary name", "[[primary.secondaries]]\nname = \"x\"\nurl = \"http://a\"\npubkey-file = \"a\"\n[[primary.secondaries]]\nname = \"x\"\nurl = \"http://b\"\npubkey-file = \"b\"\n", P, []string{"secondaries", `name "x"`}},
		{"quorum too large", "[primary]\nsecondary-quorum = 1\n", P, []string{`key "primary.secondary-quorum"`, "got 1"}},
		{"quorum too large flag", "", append(P, "-secondary-url", "http://a", "-secondary-pubkey-file", "a", "-secondary-quorum", "2"), []string{"flag -secondary-quorum", "(1)"}},
		{"quorum negative", "", append(P, "-secondary-quorum", "-1"), []string{"flag -secondary-quorum", "got -1"}},
		{"max-range zero", "[primary]\nmax-range = 0\n", P, []string{`key "primary.max-range"`, "at least 1"}},
		{"max-range negative flag", "", append(P, "-max-range", "-5"), []string{"flag -max-range", "at least 1"}},
		{"empty sth-file", "[primary]\nsth-file = \"\"\n", P, []string{"primary.sth-file", "empty"}},
		{"bastion without its certificate", "[primary]\nbastion-endpoint = \"127.0.0.1:8443\"\n", P, []string{`key "primary.bastion-endpoint"`, "go together"}},
		{"bastion certificate without endpoint", "", append(P, "-bastion-cert-file", "c", "-bastion-key-file", "k"), []string{"bastion-endpoint", "go together"}},
		{"bastion endpoint not host:port", "[primary]\nbastion-endpoint = \"8443\"\nbastion-cert-file = \"c\"\nbastion-key-file = \"k\"\n", P, []string{`key "primary.bastion-endpoint"`, "host:port"}},
		{"witness-min-interval zero", "[primary]\nwitness-min-interval = \"0s\"\n", P, []string{`key "primary.witness-min-interval"`, "positive"}},
		{"bastion for secondary", "", append(S, "-bastion-endpoint", "127.0.0.1:8443"), []string{"flag -bastion-endpoint", "role primary"}},
		{"secondary section for primary", "[secondary]\nprimary-url = \"http://p\"\n", P, []string{`"secondary.primary-url"`, "role secondary", "-role is primary"}},
		{"empty secondary section for primary", "[secondary]\n", P, []string{`key "secondary"`, "role secondary"}},
		{"secondary flag for primary", "", append(P, "-primary-url", "http://p"), []string{"flag -primary-url", "role secondary"}},

		// Secondary.
		{"no primary-url", "", []string{"-role", "secondary", "-key-file", "k"}, []string{`key "secondary.primary-url"`, "required"}},
		{"bad primary-url", "[secondary]\nprimary-url = \"127.0.0.1:6967\"\n", []string{"-role", "secondary", "-key-file", "k"}, []string{`config.toml: key "secondary.primary-url"`}},
		{"primary-url with query", "", []string{"-role", "secondary", "-key-file", "k", "-primary-url", "http://p/?x=1"}, []string{"flag -primary-url", "query"}},
		{"memory storage for secondary", "storage = \"memory:\"\n", S, []string{`key "storage"`, "PREORDERED_LOG"}},
		{"primary section for secondary", "[primary]\nmax-range = 3\n", S, []string{`"primary.max-range"`, "role primary"}},
		{"primary flag for secondary", "", append(S, "-sth-file", "x"), []string{"flag -sth-file", "role primary"}},
		{"primary bool flag for secondary", "", append(S, "-allow-test-domain"), []string{"flag -allow-test-domain", "role primary"}},

		// Storage and Trillian.
		{"storage and rpc server", "storage = \"sqlite:x\"\ntrillian-rpc-server = \"t:1\"\n", P, []string{`key "storage"`, "trillian-rpc-server"}},
		{"storage flag and rpc server", "trillian-rpc-server = \"t:1\"\n", append(P, "-storage", "sqlite:x"), []string{"flag -storage", "trillian-rpc-server"}},
		{"storage unknown scheme", "", append(P, "-storage", "redis:x"), []string{"flag -storage", `"redis"`}},
		{"storage no scheme", "storage = \"/var/db\"\n", P, []string{`key "storage"`, "scheme"}},
		{"storage sqlite empty", "", append(P, "-storage", "sqlite:"), []string{"flag -storage", "file path"}},
		{"storage memory with target", "", append(P, "-storage", "memory:x"), []string{"flag -storage", "memory"}},
		{"storage empty", "storage = \"\"\n", P, []string{`key "storage"`, "empty"}},
		{"rpc server no port", "", append(P, "-trillian-rpc-server", "localhost"), []string{"flag -trillian-rpc-server", "host:port"}},
		{"rpc server no host", "", append(P, "-trillian-rpc-server", ":8090"), []string{"flag -trillian-rpc-server", "host"}},

		// Endpoints, prefix, durations, enums.
		{"external endpoint", "external-endpoint = \"localhost\"\n", P, []string{`key "external-endpoint"`, "host:port"}},
		{"internal endpoint port", "", append(P, "-internal-endpoint", "h:http"), []string{"flag -internal-endpoint", "port"}},
		{"internal endpoint port range", "", append(P, "-internal-endpoint", "h:70000"), []string{"flag -internal-endpoint", "port"}},
		{"url-prefix query", "url-prefix = \"a?b\"\n", P, []string{`key "url-prefix"`}},
		{"url-prefix dotdot", "", append(P, "-url-prefix", "a/../b"), []string{"flag -url-prefix", ".."}},
		{"url-prefix double slash", "", append(P, "-url-prefix", "a//b"), []string{"flag -url-prefix"}},
		{"timeout zero", "timeout = \"0s\"\n", P, []string{`key "timeout"`, "positive"}},
		{"interval negative", "", append(P, "-interval", "-1s"), []string{"flag -interval", "positive"}},
		{"sequencer-interval zero", "", append(P, "-sequencer-interval", "0"), []string{"flag -sequencer-interval", "positive"}},
		{"sequencer-batch-size zero", "sequencer-batch-size = 0\n", P, []string{`key "sequencer-batch-size"`, "at least 1"}},
		{"log-level", "log-level = \"verbose\"\n", P, []string{`key "log-level"`, `"verbose"`, "debug"}},
		{"log-level case", "", append(P, "-log-level", "INFO"), []string{"flag -log-level"}},
		{"log-format", "", append(P, "-log-format", "xml"), []string{"flag -log-format", "json"}},
		{"empty data-dir", "data-dir = \"\"\n", P, []string{`key "data-dir"`, "empty"}},
		{"empty tree-id-file", "", append(P, "-trillian-tree-id-file", ""), []string{"flag -trillian-tree-id-file", "empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tc.file, tc.args...)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	_, err := Load([]string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Load(-h) = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-role", "-config", "-key-file", "-primary-url", "-secondary-quorum", "-sequencer-batch-size"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage lacks %s", f)
		}
	}
}

// TestParseOwnFlagSet checks that Parse works on a caller's flag set and leaves flag.CommandLine alone.
func TestParseOwnFlagSet(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := Parse(fs, []string{"-role", "primary", "-key-file", "k"})
	if err != nil || c.KeyFile != "k" {
		t.Fatalf("Parse: %v, %+v", err, c)
	}
	if fs.Lookup("max-range") == nil || flag.CommandLine.Lookup("max-range") != nil {
		t.Error("flags registered on the wrong set")
	}
}

func TestSkeletonRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ role, dir string }{
		{"primary", "/var/lib/sigsumd"},
		{"secondary", "/var/lib/sigsumd"},
		{"primary", "rel dir/with \"quotes\" and \\ back\tslash"},
		{"secondary", ""},
	} {
		t.Run(tc.role+" "+tc.dir, func(t *testing.T) {
			t.Parallel()
			sk := Skeleton(tc.role, tc.dir)
			c, err := load(t, string(sk), "-role", tc.role)
			if err != nil {
				t.Fatalf("Load(Skeleton): %v\n%s", err, sk)
			}
			dir := tc.dir
			if dir == "" {
				dir = DefaultDataDir
			}
			if c.DataDir != dir || c.KeyFile != filepath.Join(dir, "key") || string(c.Role) != tc.role {
				t.Errorf("data-dir %q key-file %q role %q", c.DataDir, c.KeyFile, c.Role)
			}

			// Every commented-out example must be a valid key with a valid value: uncomment them all (except
			// trillian-rpc-server, which excludes storage) and load again.
			var lines []string
			for l := range strings.SplitSeq(string(sk), "\n") {
				if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "#trillian-rpc-server") {
					l = l[1:]
				}
				lines = append(lines, l)
			}
			full := strings.Join(lines, "\n")
			c, err = load(t, full, "-role", tc.role)
			if err != nil {
				t.Fatalf("Load(uncommented skeleton): %v\n%s", err, full)
			}
			if tc.role == "primary" && (len(c.Secondaries()) != 2 || c.Primary.PolicyFile == "") {
				t.Errorf("uncommented primary skeleton: %+v", c.Primary)
			}
			if tc.role == "secondary" && c.Secondary.PrimaryURL == "" {
				t.Error("secondary skeleton without primary-url")
			}
		})
	}
	if Skeleton("tertiary", "/x") != nil {
		t.Error("Skeleton(unknown role) != nil")
	}
}

func TestDNSServer(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "[primary]\ndns-server = \"127.0.0.1:5353\"\n", "-role", "primary", "-key-file", "k")
	if c.Primary.DNSServer != "127.0.0.1:5353" {
		t.Errorf("DNSServer = %q", c.Primary.DNSServer)
	}
	c = mustLoad(t, "", "-role", "primary", "-key-file", "k", "-dns-server", "[::1]:53")
	if c.Primary.DNSServer != "[::1]:53" {
		t.Errorf("DNSServer from flag = %q", c.Primary.DNSServer)
	}
}

func TestReferenceKeysBackendAndLogFile(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "backend = \"trillian\"\nlog-file = \"/var/log/sigsumd.log\"\nstorage = \"crdb:postgresql://root@h:26257/t\"\n",
		"-role", "primary", "-key-file", "k")
	if c.LogFile != "/var/log/sigsumd.log" || c.Storage.Scheme != StorageCockroachDB {
		t.Errorf("log-file %q, storage %+v", c.LogFile, c.Storage)
	}
}

func TestSecondarySelfCheckKeys(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, "[secondary]\nprimary-url = \"https://p:6967\"\nprimary-public-url = \"http://p:6965/log\"\nlog-public-key-file = \"log.pub\"\n",
		"-role", "secondary", "-key-file", "k")
	if c.Secondary.PrimaryPublicURL != "http://p:6965/log" || c.Secondary.LogPublicKeyFile != "log.pub" {
		t.Errorf("self-check keys: %+v", c.Secondary)
	}
}

// The internal API is mutual TLS unless insecure-internal-http says otherwise, and the URLs say which.
func TestInternalScheme(t *testing.T) {
	t.Parallel()
	P := []string{"-role", "primary", "-key-file", "k"}
	S := []string{"-role", "secondary", "-key-file", "k"}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" loads
	}{
		{"primary https", append(P, "-secondary-url", "https://s", "-secondary-pubkey-file", "s.pub"), ""},
		{"primary http", append(P, "-secondary-url", "http://s", "-secondary-pubkey-file", "s.pub"), "want https://"},
		{"primary http, insecure", append(P, "-secondary-url", "http://s", "-secondary-pubkey-file", "s.pub", "-insecure-internal-http"), ""},
		{"primary https, insecure", append(P, "-secondary-url", "https://s", "-secondary-pubkey-file", "s.pub", "-insecure-internal-http"), "want http://"},
		{"secondary https with the primary's key", append(S, "-primary-url", "https://p", "-primary-pubkey-file", "p.pub"), ""},
		{"secondary https, key from the log key", append(S, "-primary-url", "https://p", "-primary-public-url", "https://log", "-log-public-key-file", "log.pub"), ""},
		{"secondary without the primary's key", append(S, "-primary-url", "https://p"), "primary-pubkey-file"},
		{"secondary http", append(S, "-primary-url", "http://p", "-primary-pubkey-file", "p.pub"), "want https://"},
		{"secondary http, insecure", append(S, "-primary-url", "http://p", "-insecure-internal-http"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tc.args, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load: %v, want an error about %q", err, tc.want)
			case tc.want == "" && tc.name == "secondary https, key from the log key" && c.Secondary.PrimaryPubkeyFile != "log.pub":
				t.Errorf("primary-pubkey-file %q, want the log key's file", c.Secondary.PrimaryPubkeyFile)
			}
		})
	}
}

// Package configs holds the example configuration, policy, rate-limit and systemd files; its test loads each of
// them through the code sigsumd uses, so the examples cannot rot.
package configs

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/ratelimit"
	"github.com/sigsumd/sigsumd/pkg/policy"
)

func load(t *testing.T, role, file string) *config.Config {
	t.Helper()
	var stderr bytes.Buffer
	cfg, err := config.Load([]string{"-role", role, "-config", file}, &stderr)
	if err != nil {
		t.Fatalf("%s does not load as a %s configuration: %v\n%s", file, role, err, stderr.String())
	}
	return cfg
}

func TestPrimaryExample(t *testing.T) {
	t.Parallel()
	cfg := load(t, "primary", "primary.toml")
	if cfg.Role != config.RolePrimary || cfg.DataDir != "/var/lib/sigsumd" {
		t.Errorf("role %s, data-dir %q", cfg.Role, cfg.DataDir)
	}
	if cfg.Primary.PolicyFile != "/etc/sigsumd/trust-policy" || cfg.Primary.RateLimitFile != "/etc/sigsumd/rate-limits" {
		t.Errorf("policy-file %q, rate-limit-file %q: the example should name the installed example files",
			cfg.Primary.PolicyFile, cfg.Primary.RateLimitFile)
	}
	if n := len(cfg.Primary.Secondaries); n != 3 || cfg.Primary.Quorum() != 2 {
		t.Errorf("%d secondaries with quorum %d, want 3 with quorum 2", n, cfg.Primary.Quorum())
	}
	if cfg.Primary.AllowTestDomain {
		t.Error("the production example must not accept test-domain tokens")
	}
	// The other role refuses it: a [primary] section is never silently ignored.
	if _, err := config.Load([]string{"-role", "secondary", "-config", "primary.toml"}, io.Discard); err == nil {
		t.Error("primary.toml loads as a secondary configuration")
	}
}

func TestSecondaryExample(t *testing.T) {
	t.Parallel()
	cfg := load(t, "secondary", "secondary.toml")
	if cfg.Role != config.RoleSecondary || cfg.Secondary.PrimaryURL == "" {
		t.Errorf("role %s, primary-url %q", cfg.Role, cfg.Secondary.PrimaryURL)
	}
	if _, err := config.Load([]string{"-role", "primary", "-config", "secondary.toml"}, io.Discard); err == nil {
		t.Error("secondary.toml loads as a primary configuration")
	}
}

// keyLine matches a TOML key, set or commented out, at the start of a line.
var keyLine = regexp.MustCompile(`(?m)^#?([a-z][a-z0-9-]*) = `)

// TestExamplesDocumentEveryKey checks that each key sigsumctl init's skeleton knows of appears in the example of
// its role, set or commented out, so a new key shows up in the examples too.
func TestExamplesDocumentEveryKey(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"primary", "secondary"} {
		example, err := os.ReadFile(role + ".toml")
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, m := range keyLine.FindAllStringSubmatch(string(example), -1) {
			have[m[1]] = true
		}
		for _, m := range keyLine.FindAllStringSubmatch(string(config.Skeleton(role, "/var/lib/sigsumd")), -1) {
			if !have[m[1]] {
				t.Errorf("%s.toml does not mention key %q (sigsumctl init's skeleton has it)", role, m[1])
			}
		}
	}
}

func TestTrustPolicyExample(t *testing.T) {
	t.Parallel()
	p, err := policy.ParseFile("trust-policy")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logs()) != 1 || len(p.Witnesses()) != 3 || p.Quorum() != "witnesses" {
		t.Errorf("%d logs, %d witnesses, quorum %q", len(p.Logs()), len(p.Witnesses()), p.Quorum())
	}
	for _, w := range p.Witnesses() {
		if w.URL == "" {
			t.Errorf("witness %s has no URL: the primary would not contact it", w.Name)
		}
	}
}

func TestRateLimitsExample(t *testing.T) {
	t.Parallel()
	f, err := os.Open("rate-limits")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := ratelimit.ParseLimits(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Keys) != 2 || len(l.Domains) != 2 || l.Public == nil || l.Public.SuffixList != ratelimit.DefaultSuffixList {
		t.Errorf("parsed %+v", l)
	}
}

// hardening are the directives every unit must carry, as "Key=Value" lines.
var hardening = []string{
	"User=sigsumd",
	"Group=sigsumd",
	"StateDirectory=sigsumd",
	"ProtectSystem=strict",
	"ProtectHome=yes",
	"NoNewPrivileges=yes",
	"PrivateTmp=yes",
	"PrivateDevices=yes",
	"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
	"CapabilityBoundingSet=",
	"SystemCallFilter=@system-service",
	"ExecReload=/bin/kill -HUP $MAINPID",
	"Restart=on-failure",
}

func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"primary", "secondary"} {
		name := "sigsumd-" + role + ".service"
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(string(b), "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, d := range hardening {
			if !lines[d] {
				t.Errorf("%s: missing %q", name, d)
			}
		}
		exec := "ExecStart=/usr/local/bin/sigsumd -role " + role + " -config /etc/sigsumd/" + role + ".toml"
		if !lines[exec] {
			t.Errorf("%s: missing %q", name, exec)
		}
		if !regexp.MustCompile(`(?m)^TimeoutStopSec=\d+s$`).Match(b) {
			t.Errorf("%s: no TimeoutStopSec", name)
		}
		if !regexp.MustCompile(`(?m)^#Environment=SSH_AUTH_SOCK=/`).Match(b) {
			t.Errorf("%s: no commented SSH_AUTH_SOCK example for signing through ssh-agent", name)
		}
		if !bytes.Contains(b, []byte("-config /etc/sigsumd/"+role+".toml")) {
			t.Errorf("%s does not start the %s example configuration", name, role)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the units when the tool is installed (it is not on
// every machine: then the test is skipped). The binary path is replaced by this test's own executable, which
// exists, so only the units' own content is judged.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, role := range []string{"primary", "secondary"} {
		name := "sigsumd-" + role + ".service"
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(dir, name)
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/sigsumd "), []byte(self+" "))
		if err := os.WriteFile(unit, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tool, "verify", unit)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if len(out) > 0 {
			t.Logf("systemd-analyze verify %s:\n%s", name, out)
		}
		if err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}

// placeholders are keys without a default that both files show with an example value.
var placeholders = map[string]bool{"secondary-url": true, "secondary-pubkey-file": true, "url": true, "name": true,
	"pubkey-file": true, "trillian-rpc-server": true, "tls-cert-file": true, "tls-key-file": true, "policy-file": true,
	"rate-limit-file": true, "dns-server": true, "primary-public-url": true, "log-public-key-file": true,
	"primary-pubkey-file": true, "key-file": true}

// commented is a commented-out `key = value` line: a default shown.
var commented = regexp.MustCompile(`(?m)^#([a-z][a-z0-9-]*) = (\S+)\s*$`)

// TestExamplesShowTheCodesDefaults checks that every default an example shows (a commented-out key) is the one the
// code applies: sigsumctl init's skeleton prints the code's defaults, so the two must agree.
func TestExamplesShowTheCodesDefaults(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"primary", "secondary"} {
		example, err := os.ReadFile(role + ".toml")
		if err != nil {
			t.Fatal(err)
		}
		defaults := map[string]string{}
		for _, m := range commented.FindAllStringSubmatch(string(config.Skeleton(role, "/var/lib/sigsumd")), -1) {
			defaults[m[1]] = m[2]
		}
		for _, m := range commented.FindAllStringSubmatch(string(example), -1) {
			if placeholders[m[1]] {
				continue
			}
			if want, ok := defaults[m[1]]; ok && m[2] != want {
				t.Errorf("%s.toml shows %s = %s, but the code's default is %s", role, m[1], m[2], want)
			}
		}
	}
}

package config

import (
	"fmt"
	"strings"

	"github.com/sigsumd/sigsumd/internal/datadir"
)

// Skeleton returns a commented example configuration for role ("primary" or "secondary") with its state under
// dataDir, which Load accepts as is. Every other key is shown commented out with its default. It returns nil for
// an unknown role.
func Skeleton(role string, dataDir string) []byte {
	r, err := ParseRole(role)
	if err != nil {
		return nil
	}
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("# sigsumd configuration for a %s node: start it with", r)
	w("#   sigsumd -role %s -config <this file>", r)
	w("# Flags of the same names (without the section) override the values here. Relative paths are relative")
	w("# to sigsumd's working directory. Commented-out keys show their defaults.")
	w("")
	w("# Directory for the node's state: tree id file, SQLite store%s.", map[Role]string{RolePrimary: ", signed tree head file"}[r])
	w("data-dir = %s", tomlString(dataDir))
	w("")
	if r == RolePrimary {
		w("# The log's signing key: an OpenSSH ed25519 private key file (ssh-keygen -t ed25519), or its")
	} else {
		w("# This secondary's own signing key (not the log's): an OpenSSH ed25519 private key file, or its")
	}
	w("# ssh-ed25519 public key file to sign through ssh-agent (SSH_AUTH_SOCK).")
	w("key-file = %s", tomlString(datadir.Dir(dataDir).Key()))
	w("")
	if r == RolePrimary {
		w("# Public API listener (host:port) and the path prefix of the public API (e.g. \"sigsum/v1\").")
		w("#external-endpoint = %s", tomlString(DefaultExternalEndpoint))
		w("#url-prefix = \"\"")
		w("")
		w("# Internal API listener: secondaries pull leaves from it.")
	} else {
		w("# Internal API listener: the primary asks it for this secondary's tree head.")
	}
	w("#internal-endpoint = %s", tomlString(DefaultInternalEndpoint))
	w("# The internal API is mutual TLS 1.3 with certificates made from the nodes' keys, pinned to the configured")
	w("# public keys (https:// URLs). Plain, unauthenticated HTTP only to pair with reference-implementation nodes:")
	w("#insecure-internal-http = false")
	w("")
	w("# Storage of the embedded Trillian: sqlite:<path>, mysql:<dsn> or postgresql:<uri>%s.",
		map[Role]string{RolePrimary: " (memory: for tests)"}[r])
	w("#storage = %s", tomlString(StorageSQLite+":"+datadir.Dir(dataDir).Store()))
	w("# Or an external Trillian log server (host:port) instead of the embedded one; then leave storage unset.")
	w("#trillian-rpc-server = \"localhost:8090\"")
	w("#trillian-tree-id-file = %s", tomlString(datadir.Dir(dataDir).TreeID()))
	w("# Embedded Trillian sequencer: run interval and most leaves integrated per run.")
	w("#sequencer-interval = %s", tomlString(DefaultSequencerInterval.String()))
	w("#sequencer-batch-size = %d", map[Role]int{RolePrimary: DefaultSequencerBatchSize,
		RoleSecondary: DefaultSecondarySequencerBatchSize}[r])
	w("")
	if r == RolePrimary {
		w("# How often a new tree head is signed.")
	} else {
		w("# How often leaves are pulled from the primary.")
	}
	if r == RolePrimary {
		w("#interval = %s", tomlString(DefaultInterval.String()))
	} else {
		w("#interval = %s", tomlString(DefaultSecondaryInterval.String()))
	}
	w("# Timeout of one request and of one backend call.")
	w("#timeout = %s", tomlString(DefaultTimeout.String()))
	w("# debug, info, warn or error; text or json.")
	w("#log-level = %s", tomlString(DefaultLogLevel))
	w("#log-format = %s", tomlString(DefaultLogFormat))
	w("# HTTPS on the public listener, for a node without a TLS proxy in front (PEM files; set both).")
	w("#tls-cert-file = \"/etc/sigsumd/tls.crt\"")
	w("#tls-key-file = \"/etc/sigsumd/tls.key\"")
	w("# Profiling at /debug/pprof/ on the internal listener.")
	w("#enable-pprof = false")
	w("")

	if r == RolePrimary {
		w("[primary]")
		w("# Trust policy (witnesses and their quorum); unset: tree heads are published without cosignatures.")
		w("#policy-file = \"/etc/sigsumd/trust-policy\"")
		w("# Witnesses are asked at once when the tree grows, and again every witness-interval while it does not")
		w("# (Sigsum's named trust policies want a request at least every 10 s).")
		w("#witness-interval = %s", tomlString(DefaultWitnessInterval.String()))
		w("# Least time between two requests to one witness (one still out also waits): witnesses are scarce.")
		w("#witness-min-interval = %s", tomlString(DefaultWitnessMinInterval.String()))
		w("# Built-in bastion (C2SP https-bastion): the policy's witnesses without a URL connect here and are reached")
		w("# over that connection; its certificate must name the host they dial.")
		w("#bastion-endpoint = \"0.0.0.0:8443\"")
		w("#bastion-cert-file = \"/etc/sigsumd/bastion.crt\"")
		w("#bastion-key-file = \"/etc/sigsumd/bastion.key\"")
		w("# Rate limits per submitter key and domain; unset: no rate limiting.")
		w("#rate-limit-file = \"/etc/sigsumd/rate-limits\"")
		w("# DNS server (host:port) for the TXT lookups of submit tokens; unset: the system's resolver.")
		w("#dns-server = \"127.0.0.1:53\"")
		w("# Accept submit tokens for the test domain.")
		w("#allow-test-domain = false")
		w("#sth-file = %s", tomlString(datadir.Dir(dataDir).STH()))
		w("# Most leaves returned by one get-leaves.")
		w("#max-range = %d", DefaultMaxRange)
		w("")
		w("# Secondaries: a tree head is signed only for a size they hold. One in the reference style:")
		w("#secondary-url = \"https://192.0.2.10:6967\"")
		w("#secondary-pubkey-file = \"/etc/sigsumd/secondary-a.pub\"")
		w("# k of the n secondaries must hold a size before it is signed; 0 means all of them.")
		w("#secondary-quorum = 0")
		w("# Any number more (the reference pair above, if set, counts as the first):")
		w("#[[primary.secondaries]]")
		w("#name = \"secondary-b\"")
		w("#url = \"https://192.0.2.11:6967\"")
		w("#pubkey-file = \"/etc/sigsumd/secondary-b.pub\"")
	} else {
		w("[secondary]")
		w("# The primary's internal API URL (its internal-endpoint).")
		w("primary-url = \"https://127.0.0.1:6967\"")
		w("# The log's public URL and public key: the secondary follows the head the log publishes, keeps the newest in")
		w("# published-tree-head (sigsumctl promote relies on it) and checks its replica against it. Set both; a")
		w("# replica that does not extend the published head stops replicating and makes /readyz fail.")
		w("#primary-public-url = \"http://127.0.0.1:6965\"")
		w("#log-public-key-file = \"/etc/sigsumd/log.pub\"")
		w("# The log's trust policy, to check the published head's cosignatures.")
		w("#policy-file = \"/etc/sigsumd/trust-policy\"")
		w("# The primary's node key, which its internal listener proves under mutual TLS: the log's public key (a")
		w("# primary's node key is the log's key, before and after a failover). sigsumctl init -log-public-key")
		w("# copies it here.")
		w("primary-pubkey-file = %s", tomlString(datadir.Dir(dataDir).LogPublicKey()))
	}
	return []byte(b.String())
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

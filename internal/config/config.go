// Package config reads the configuration of a sigsumd node: a TOML file that uses the key names of the reference
// Sigsum log server (plus sigsumd's own keys), overridden by command-line flags of the same names, with defaults
// and validation. Every problem is reported as one line that names the offending key.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sigsumd/sigsumd/internal/datadir"
	"github.com/sigsumd/sigsumd/internal/engine"
	"github.com/sigsumd/sigsumd/internal/primary"
	"github.com/sigsumd/sigsumd/internal/secondary"
	"github.com/sigsumd/sigsumd/internal/timeout"
	"github.com/sigsumd/sigsumd/internal/witness"
)

// Role is the role a node runs in.
type Role string

// The roles of a node.
const (
	RolePrimary   Role = "primary"
	RoleSecondary Role = "secondary"
)

// ParseRole parses "primary" or "secondary".
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RolePrimary, RoleSecondary:
		return Role(s), nil
	}
	return "", fmt.Errorf("invalid role %q: want primary or secondary", s)
}

// Log output formats.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// Storage schemes accepted in the storage key.
const (
	StorageSQLite     = engine.StorageSQLite
	StorageMemory     = engine.StorageMemory
	StorageMySQL      = engine.StorageMySQL
	StoragePostgreSQL = engine.StoragePostgreSQL
	// StorageCockroachDB needs a binary built with -tags crdb (docs/STORAGE.md).
	StorageCockroachDB = engine.StorageCockroachDB
)

// Defaults of the keys that do not derive from the data directory. Those of a role or the engine are that package's
// own, defined there once, so that sigsumd, sigsumctl and tests run the same values.
const (
	DefaultExternalEndpoint = "127.0.0.1:6965"
	DefaultInternalEndpoint = "127.0.0.1:6967"
	DefaultDataDir          = "/var/lib/sigsumd"
	DefaultTimeout          = timeout.Default
	DefaultInterval         = primary.DefaultInterval
	// DefaultSecondaryInterval is a secondary's poll interval once caught up: every leaf waits for a secondary
	// before it is committed, so a secondary polls far more often than the primary rotates.
	DefaultSecondaryInterval  = secondary.DefaultInterval
	DefaultSequencerInterval  = engine.DefaultSequencerInterval
	DefaultSequencerBatchSize = engine.DefaultBatchSize
	// DefaultSecondarySequencerBatchSize is larger: a secondary catching up stores thousands of leaves a request,
	// and its sequencer, one pass an interval, would otherwise bound catch-up at batch/interval (20,000 leaves/s).
	DefaultSecondarySequencerBatchSize = 8192
	DefaultMaxRange                    = primary.DefaultMaxRange
	DefaultWitnessInterval             = primary.DefaultWitnessInterval
	DefaultWitnessMinInterval          = witness.DefaultMinInterval
	DefaultLogLevel                    = "info"
	DefaultLogFormat                   = LogFormatText
)

// Storage is the storage of the embedded Trillian, parsed from "<scheme>:<target>" (engine.ParseStorage).
type Storage = engine.Storage

// Secondary is a secondary node the primary asks for its tree head.
type Secondary struct {
	// Name identifies the secondary in logs and metrics; defaults to its URL.
	Name string
	// URL is the base URL of the secondary's internal API (http or https).
	URL string
	// PubkeyFile is the secondary's ssh-ed25519 public key file.
	PubkeyFile string
}

// PrimaryConfig holds the settings of the [primary] section.
type PrimaryConfig struct {
	// PolicyFile is the trust policy file (witnesses and quorum); empty means no witnesses.
	PolicyFile string
	// RateLimitFile is the rate-limit file; empty means no rate limiting.
	RateLimitFile string
	// DNSServer is host:port of the DNS server submit tokens are looked up with; empty means the system's.
	DNSServer string
	// AllowTestDomain accepts tokens for the test domain test.sigsum.org.
	AllowTestDomain bool
	// STHFile is where the signed tree head is kept (default <data-dir>/sth).
	STHFile string
	// MaxRange is the largest number of leaves get-leaves returns at once.
	MaxRange uint64
	// WitnessInterval is how often the witnesses are asked again while the tree does not grow.
	WitnessInterval time.Duration
	// WitnessMinInterval is the least time between two requests to one witness.
	WitnessMinInterval time.Duration
	// BastionEndpoint, set with BastionCertFile and BastionKeyFile, starts the built-in bastion (C2SP
	// https-bastion) there: the policy's witnesses without a URL connect to it and are reached over it.
	BastionEndpoint, BastionCertFile, BastionKeyFile string
	// Secondaries are the secondaries: the reference pair secondary-url/secondary-pubkey-file first, then every
	// [[primary.secondaries]] table in file order.
	Secondaries []Secondary
	// SecondaryQuorum is k: the signed size is the k-th largest verified secondary size. 0 means all of them.
	SecondaryQuorum int
}

// Quorum returns the effective k of SecondaryQuorum: the number of secondaries when SecondaryQuorum is 0.
func (p *PrimaryConfig) Quorum() int {
	if p.SecondaryQuorum == 0 {
		return len(p.Secondaries)
	}
	return p.SecondaryQuorum
}

// SecondaryConfig holds the settings of the [secondary] section.
type SecondaryConfig struct {
	// PrimaryURL is the base URL of the primary's internal API, e.g. http://127.0.0.1:6967.
	PrimaryURL string
	// PrimaryPublicURL and LogPublicKeyFile, set together, make the secondary follow the log's published tree head
	// (the log's public API, verified with the log's key), record the newest in its data directory (promote relies
	// on it) and check that its replica extends it.
	PrimaryPublicURL, LogPublicKeyFile string
	// PolicyFile, if set, is the log's trust policy: the followed head's cosignatures are checked against its
	// witnesses.
	PolicyFile string
	// PrimaryPubkeyFile is the primary's node key, which its internal listener proves under mutual TLS; it
	// defaults to LogPublicKeyFile (a primary's node key is the log's key, before and after a failover).
	PrimaryPubkeyFile string
}

// Config is the validated configuration of one node.
type Config struct {
	// Role is the role given with -role.
	Role Role
	// ConfigFile is the path of the TOML file read, empty if none.
	ConfigFile string

	// DataDir holds the node's state (tree id file, sth file, SQLite store by default).
	DataDir string
	// ExternalEndpoint is host:port of the public listener.
	ExternalEndpoint string
	// InternalEndpoint is host:port of the internal listener.
	InternalEndpoint string
	// TrillianRPCServer is host:port of an external Trillian log server; empty means embedded Trillian.
	TrillianRPCServer string
	// Storage is the embedded Trillian's storage; zero when TrillianRPCServer is set.
	Storage Storage
	// URLPrefix is the path prefix of the public API without leading or trailing slash, e.g. "a/b"; may be empty.
	URLPrefix string
	// TreeIDFile holds the Trillian tree id (default <data-dir>/tree-id).
	TreeIDFile string
	// Timeout bounds one request and one backend call.
	Timeout time.Duration
	// KeyFile is the node's signing key: an OpenSSH ed25519 private key, or a public key to sign through ssh-agent.
	KeyFile string
	// Interval is the primary's rotation interval or the secondary's replication interval.
	Interval time.Duration
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is LogFormatText or LogFormatJSON.
	LogFormat string
	// TLSCertFile and TLSKeyFile, set together, make the public listener serve HTTPS.
	TLSCertFile, TLSKeyFile string
	// EnablePprof serves net/http/pprof on the internal listener.
	EnablePprof bool
	// InsecureInternalHTTP serves and calls the internal API over plain HTTP, unauthenticated, for pairing with
	// reference-implementation nodes. Otherwise (the default) it is mutual TLS 1.3 pinned to the nodes' keys
	// (PROTOCOL.md §9): https:// URLs, and each side must know the other's public key.
	InsecureInternalHTTP bool
	// LogFile, if set, receives the logs instead of stderr (the reference's log-file key).
	LogFile string
	// SequencerInterval is the run interval of the embedded Trillian sequencer.
	SequencerInterval time.Duration
	// SequencerBatchSize is the most leaves the embedded sequencer integrates per tree and run.
	SequencerBatchSize int

	// Primary holds the [primary] settings; zero unless Role is RolePrimary.
	Primary PrimaryConfig
	// Secondary holds the [secondary] settings; zero unless Role is RoleSecondary.
	Secondary SecondaryConfig
}

// Secondaries returns the secondaries a primary asks for tree heads (nil for a secondary node).
func (c *Config) Secondaries() []Secondary {
	return c.Primary.Secondaries
}

// Load parses args (without the program name) on a new flag set named "sigsumd", reads the TOML file given with
// -config, applies defaults and validates. Flag syntax errors and -help output go to stderr; -help returns an
// error that wraps flag.ErrHelp.
func Load(args []string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("sigsumd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	return Parse(fs, args)
}

// Parse registers sigsumd's flags on fs (a fresh flag set the caller owns, never flag.CommandLine), parses args,
// reads the TOML file given with -config, applies defaults and validates.
func Parse(fs *flag.FlagSet, args []string) (*Config, error) {
	fv := registerFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("command line: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var data []byte
	if fv.config != "" {
		var err error
		if data, err = os.ReadFile(fv.config); err != nil {
			return nil, fmt.Errorf("flag -config: %w", err)
		}
	}
	return build(fv, set, fv.config, data)
}

// flagValues receives the values of the command-line flags.
type flagValues struct {
	role, config string

	externalEndpoint, internalEndpoint, trillianRPCServer, urlPrefix, treeIDFile, keyFile string
	timeout, interval, sequencerInterval                                                  time.Duration
	logLevel, dataDir, storage, logFormat, tlsCertFile, tlsKeyFile                        string
	enablePprof, insecureInternalHTTP                                                     bool
	logFile, backend                                                                      string
	sequencerBatchSize                                                                    int

	policyFile, rateLimitFile, secondaryURL, secondaryPubkeyFile, sthFile, dnsServer string
	allowTestDomain                                                                  bool
	maxRange                                                                         int64
	secondaryQuorum                                                                  int
	witnessInterval, witnessMinInterval                                              time.Duration
	bastionEndpoint, bastionCertFile, bastionKeyFile                                 string

	primaryURL, primaryPublicURL, logPublicKeyFile, primaryPubkeyFile string
}

func registerFlags(fs *flag.FlagSet) *flagValues {
	v := &flagValues{}
	fs.StringVar(&v.role, "role", "", "node role: primary or secondary (required)")
	fs.StringVar(&v.config, "config", "", "TOML configuration `file`; flags override its values")

	fs.StringVar(&v.externalEndpoint, "external-endpoint", DefaultExternalEndpoint, "public listener `host:port`")
	fs.StringVar(&v.internalEndpoint, "internal-endpoint", DefaultInternalEndpoint, "internal listener `host:port`")
	fs.StringVar(&v.trillianRPCServer, "trillian-rpc-server", "", "`host:port` of an external Trillian log server (default: embedded Trillian)")
	fs.StringVar(&v.urlPrefix, "url-prefix", "", "path `prefix` of the public API")
	fs.StringVar(&v.treeIDFile, "trillian-tree-id-file", "", "tree id `file` (default <data-dir>/tree-id)")
	fs.DurationVar(&v.timeout, "timeout", DefaultTimeout, "per-request and backend timeout")
	fs.StringVar(&v.keyFile, "key-file", "", "signing key `file`: OpenSSH ed25519 private key, or public key for ssh-agent (required)")
	fs.DurationVar(&v.interval, "interval", DefaultInterval, "rotation interval (primary) or poll interval once caught up (secondary, default "+DefaultSecondaryInterval.String()+")")
	fs.StringVar(&v.logLevel, "log-level", DefaultLogLevel, "log `level`: debug, info, warn or error")
	fs.StringVar(&v.dataDir, "data-dir", DefaultDataDir, "data `directory`")
	fs.StringVar(&v.storage, "storage", "", "embedded Trillian storage: sqlite:<path>, memory:, mysql:<dsn> or postgresql:<uri> (default sqlite:<data-dir>/trillian.db)")
	fs.StringVar(&v.logFormat, "log-format", DefaultLogFormat, "log `format`: text or json")
	fs.StringVar(&v.tlsCertFile, "tls-cert-file", "", "PEM certificate `file` for HTTPS on the public listener")
	fs.StringVar(&v.tlsKeyFile, "tls-key-file", "", "PEM private key `file` for HTTPS on the public listener")
	fs.BoolVar(&v.enablePprof, "enable-pprof", false, "serve /debug/pprof/ on the internal listener")
	fs.BoolVar(&v.insecureInternalHTTP, "insecure-internal-http", false, "internal API over plain, unauthenticated HTTP (for pairing with reference nodes); default: mutual TLS pinned to the node keys")
	fs.StringVar(&v.logFile, "log-file", "", "append logs to this `file` instead of stderr")
	fs.StringVar(&v.backend, "backend", "trillian", "log backend: trillian (the only one; accepted for reference configurations)")
	fs.DurationVar(&v.sequencerInterval, "sequencer-interval", DefaultSequencerInterval, "embedded Trillian sequencer run interval")
	fs.IntVar(&v.sequencerBatchSize, "sequencer-batch-size", DefaultSequencerBatchSize, "embedded Trillian sequencer batch size (secondary: default "+strconv.Itoa(DefaultSecondarySequencerBatchSize)+")")

	fs.StringVar(&v.policyFile, "policy-file", "", "trust policy `file` (primary: witnesses to ask and their quorum; secondary: to check the published head's cosignatures)")
	fs.StringVar(&v.rateLimitFile, "rate-limit-file", "", "primary: rate-limit `file`")
	fs.StringVar(&v.dnsServer, "dns-server", "", "primary: `host:port` of the DNS server for submit tokens (default: the system's)")
	fs.BoolVar(&v.allowTestDomain, "allow-test-domain", false, "primary: accept tokens for the test domain")
	fs.StringVar(&v.secondaryURL, "secondary-url", "", "primary: internal API `URL` of a secondary")
	fs.StringVar(&v.secondaryPubkeyFile, "secondary-pubkey-file", "", "primary: public key `file` of that secondary")
	fs.StringVar(&v.sthFile, "sth-file", "", "primary: signed tree head `file` (default <data-dir>/sth)")
	fs.Int64Var(&v.maxRange, "max-range", DefaultMaxRange, "primary: most leaves per get-leaves")
	fs.DurationVar(&v.witnessInterval, "witness-interval", DefaultWitnessInterval, "primary: how often witnesses are asked again while the tree does not grow (it grows: at once)")
	fs.DurationVar(&v.witnessMinInterval, "witness-min-interval", DefaultWitnessMinInterval, "primary: least time between two requests to one witness (a request still out also waits)")
	fs.StringVar(&v.bastionEndpoint, "bastion-endpoint", "", "primary: `host:port` of the built-in bastion, where the policy's witnesses without a URL connect (with -bastion-cert-file and -bastion-key-file)")
	fs.StringVar(&v.bastionCertFile, "bastion-cert-file", "", "primary: the bastion's PEM certificate `file` (the name witnesses dial)")
	fs.StringVar(&v.bastionKeyFile, "bastion-key-file", "", "primary: the bastion's PEM key `file`")
	fs.IntVar(&v.secondaryQuorum, "secondary-quorum", 0, "primary: k of n secondaries must hold a size before it is signed (0 = all)")

	fs.StringVar(&v.primaryURL, "primary-url", "", "secondary: internal API `URL` of the primary (required)")
	fs.StringVar(&v.primaryPublicURL, "primary-public-url", "", "secondary: the log's public `URL`, to check the replica against its published head")
	fs.StringVar(&v.logPublicKeyFile, "log-public-key-file", "", "secondary: the log's public key `file` (with -primary-public-url)")
	fs.StringVar(&v.primaryPubkeyFile, "primary-pubkey-file", "", "secondary: the primary's node key `file`, for mutual TLS (default: log-public-key-file)")
	return v
}

// duration is a TOML duration: only strings such as "10s" are accepted (an integer would silently mean nanoseconds).
type duration struct{ d time.Duration }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("want a duration string such as \"10s\", got %T", v)
	}
	var err error
	if d.d, err = time.ParseDuration(s); err != nil {
		return fmt.Errorf("want a duration string such as \"10s\": %w", err)
	}
	return nil
}

// fileConfig is the TOML file's structure.
type fileConfig struct {
	ExternalEndpoint   string   `toml:"external-endpoint"`
	InternalEndpoint   string   `toml:"internal-endpoint"`
	TrillianRPCServer  string   `toml:"trillian-rpc-server"`
	URLPrefix          string   `toml:"url-prefix"`
	TreeIDFile         string   `toml:"trillian-tree-id-file"`
	Timeout            duration `toml:"timeout"`
	KeyFile            string   `toml:"key-file"`
	Interval           duration `toml:"interval"`
	LogLevel           string   `toml:"log-level"`
	DataDir            string   `toml:"data-dir"`
	Storage            string   `toml:"storage"`
	LogFormat          string   `toml:"log-format"`
	TLSCertFile        string   `toml:"tls-cert-file"`
	TLSKeyFile         string   `toml:"tls-key-file"`
	EnablePprof        bool     `toml:"enable-pprof"`
	InsecureInternal   bool     `toml:"insecure-internal-http"`
	LogFile            string   `toml:"log-file"`
	Backend            string   `toml:"backend"`
	SequencerInterval  duration `toml:"sequencer-interval"`
	SequencerBatchSize int      `toml:"sequencer-batch-size"`

	Primary   filePrimary   `toml:"primary"`
	Secondary fileSecondary `toml:"secondary"`
}

// filePrimary is the [primary] section.
type filePrimary struct {
	PolicyFile          string               `toml:"policy-file"`
	RateLimitFile       string               `toml:"rate-limit-file"`
	DNSServer           string               `toml:"dns-server"`
	AllowTestDomain     bool                 `toml:"allow-test-domain"`
	SecondaryURL        string               `toml:"secondary-url"`
	SecondaryPubkeyFile string               `toml:"secondary-pubkey-file"`
	STHFile             string               `toml:"sth-file"`
	MaxRange            int64                `toml:"max-range"`
	WitnessInterval     duration             `toml:"witness-interval"`
	WitnessMinInterval  duration             `toml:"witness-min-interval"`
	BastionEndpoint     string               `toml:"bastion-endpoint"`
	BastionCertFile     string               `toml:"bastion-cert-file"`
	BastionKeyFile      string               `toml:"bastion-key-file"`
	Secondaries         []fileSecondaryEntry `toml:"secondaries"`
	SecondaryQuorum     int                  `toml:"secondary-quorum"`
}

// fileSecondary is the [secondary] section.
type fileSecondary struct {
	PrimaryURL       string `toml:"primary-url"`
	PrimaryPublicURL string `toml:"primary-public-url"`
	LogPublicKeyFile string `toml:"log-public-key-file"`
	PolicyFile       string `toml:"policy-file"`
	PrimaryPubkey    string `toml:"primary-pubkey-file"`
}

// fileSecondaryEntry is one [[primary.secondaries]] table.
type fileSecondaryEntry struct {
	Name       string `toml:"name"`
	URL        string `toml:"url"`
	PubkeyFile string `toml:"pubkey-file"`
}

// source says where a key's value came from.
type source int

const (
	fromDefault source = iota
	fromFile
	fromFlag
)

// merger picks each key's value by precedence (flag, file, default) and remembers where it came from, so that an
// error names the key the way the operator wrote it.
type merger struct {
	path string
	md   toml.MetaData
	set  map[string]bool // flags given explicitly
	src  map[string]source
}

// flagName returns the flag name of a key: the key without its section.
func flagName(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// inFile reports whether the TOML file sets key ("a" or "section.a").
func (m *merger) inFile(key string) bool {
	return m.path != "" && m.md.IsDefined(strings.Split(key, ".")...)
}

// where describes key for an error message: the flag or the file key that set it.
func (m *merger) where(key string) string {
	switch m.src[key] {
	case fromFlag:
		return "flag -" + flagName(key)
	case fromFile:
		return fmt.Sprintf("%s: key %q", m.path, key)
	}
	return fmt.Sprintf("key %q", key)
}

// errorf returns a one-line error about key.
func (m *merger) errorf(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", m.where(key), fmt.Sprintf(format, args...))
}

// wrap returns a one-line error about key that wraps err.
func (m *merger) wrap(key, what string, err error) error {
	return fmt.Errorf("%s: %s: %w", m.where(key), what, err)
}

// explicit reports whether key was set by a flag or the file.
func (m *merger) explicit(key string) bool { return m.src[key] != fromDefault }

func pick[T any](m *merger, key string, flagVal, fileVal, def T) T {
	switch {
	case m.set[flagName(key)]:
		m.src[key] = fromFlag
		return flagVal
	case m.inFile(key):
		m.src[key] = fromFile
		return fileVal
	}
	m.src[key] = fromDefault
	return def
}

// Keys that belong to one role only, by their file names.
var (
	primaryKeys = []string{"primary.rate-limit-file", "primary.dns-server", "primary.allow-test-domain",
		"primary.secondary-url", "primary.secondary-pubkey-file", "primary.sth-file", "primary.max-range", "primary.witness-interval",
		"primary.secondary-quorum", "primary.witness-min-interval", "primary.bastion-endpoint", "primary.bastion-cert-file", "primary.bastion-key-file"}
	secondaryKeys = []string{"secondary.primary-url", "secondary.primary-public-url", "secondary.log-public-key-file",
		"secondary.primary-pubkey-file"}
)

// build merges defaults, the file (path, data; path empty if none) and the flags, then validates.
func build(fv *flagValues, set map[string]bool, path string, data []byte) (*Config, error) {
	if !set["role"] || fv.role == "" {
		return nil, errors.New("flag -role is required: primary or secondary")
	}
	role, err := ParseRole(fv.role)
	if err != nil {
		return nil, fmt.Errorf("flag -role: %w", err)
	}

	m := &merger{path: path, set: set, src: map[string]source{}}
	var fc fileConfig
	if path != "" {
		md, err := toml.Decode(string(data), &fc)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", path, tomlMessage(err))
		}
		if und := md.Undecoded(); len(und) > 0 {
			var names []string
			prev := ""
			for _, k := range und {
				// An unknown table's keys are unknown too: name the table only.
				if ks := k.String(); prev == "" || !strings.HasPrefix(ks, prev+".") {
					name := strconv.Quote(ks)
					if n := keyLine(data, ks); n > 0 {
						name = fmt.Sprintf("%s (line %d)", name, n)
					}
					names = append(names, name)
					prev = ks
				}
			}
			noun := "key"
			if len(names) > 1 {
				noun = "keys"
			}
			return nil, fmt.Errorf("%s: unknown %s %s", path, noun, strings.Join(names, ", "))
		}
		m.md = md
	}

	if err := m.checkRoleKeys(role); err != nil {
		return nil, err
	}

	c := &Config{Role: role, ConfigFile: path}
	c.DataDir = pick(m, "data-dir", fv.dataDir, fc.DataDir, DefaultDataDir)
	c.ExternalEndpoint = pick(m, "external-endpoint", fv.externalEndpoint, fc.ExternalEndpoint, DefaultExternalEndpoint)
	c.InternalEndpoint = pick(m, "internal-endpoint", fv.internalEndpoint, fc.InternalEndpoint, DefaultInternalEndpoint)
	c.TrillianRPCServer = pick(m, "trillian-rpc-server", fv.trillianRPCServer, fc.TrillianRPCServer, "")
	storage := pick(m, "storage", fv.storage, fc.Storage, "")
	c.URLPrefix = pick(m, "url-prefix", fv.urlPrefix, fc.URLPrefix, "")
	c.TreeIDFile = pick(m, "trillian-tree-id-file", fv.treeIDFile, fc.TreeIDFile, "")
	c.Timeout = pick(m, "timeout", fv.timeout, fc.Timeout.d, DefaultTimeout)
	c.KeyFile = pick(m, "key-file", fv.keyFile, fc.KeyFile, "")
	defInterval := DefaultInterval
	if role == RoleSecondary {
		defInterval = DefaultSecondaryInterval
	}
	c.Interval = pick(m, "interval", fv.interval, fc.Interval.d, defInterval)
	logLevel := pick(m, "log-level", fv.logLevel, fc.LogLevel, DefaultLogLevel)
	c.LogFormat = pick(m, "log-format", fv.logFormat, fc.LogFormat, DefaultLogFormat)
	c.TLSCertFile = pick(m, "tls-cert-file", fv.tlsCertFile, fc.TLSCertFile, "")
	c.TLSKeyFile = pick(m, "tls-key-file", fv.tlsKeyFile, fc.TLSKeyFile, "")
	c.EnablePprof = pick(m, "enable-pprof", fv.enablePprof, fc.EnablePprof, false)
	c.InsecureInternalHTTP = pick(m, "insecure-internal-http", fv.insecureInternalHTTP, fc.InsecureInternal, false)
	c.LogFile = pick(m, "log-file", fv.logFile, fc.LogFile, "")
	if backend := pick(m, "backend", fv.backend, fc.Backend, "trillian"); backend != "trillian" {
		return nil, m.errorf("backend", "%q is not supported: sigsumd runs on Trillian (backend = \"trillian\")", backend)
	}
	c.SequencerInterval = pick(m, "sequencer-interval", fv.sequencerInterval, fc.SequencerInterval.d, DefaultSequencerInterval)
	defBatch := DefaultSequencerBatchSize
	if role == RoleSecondary {
		defBatch = DefaultSecondarySequencerBatchSize
	}
	c.SequencerBatchSize = pick(m, "sequencer-batch-size", fv.sequencerBatchSize, fc.SequencerBatchSize, defBatch)

	if c.DataDir == "" {
		return nil, m.errorf("data-dir", "must not be empty")
	}
	if c.TreeIDFile == "" {
		if m.explicit("trillian-tree-id-file") {
			return nil, m.errorf("trillian-tree-id-file", "must not be empty (leave it unset for <data-dir>/tree-id)")
		}
		c.TreeIDFile = datadir.Dir(c.DataDir).TreeID()
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, m.errorf("tls-cert-file", "and tls-key-file must be set together")
	}
	if c.KeyFile == "" {
		return nil, m.errorf("key-file", "is required (the node's signing key; set it in the file or with -key-file)")
	}
	if err := m.checkEndpoint("external-endpoint", c.ExternalEndpoint, false); err != nil {
		return nil, err
	}
	if err := m.checkEndpoint("internal-endpoint", c.InternalEndpoint, false); err != nil {
		return nil, err
	}
	if c.TrillianRPCServer != "" {
		if err := m.checkEndpoint("trillian-rpc-server", c.TrillianRPCServer, true); err != nil {
			return nil, err
		}
		if m.explicit("storage") {
			return nil, m.errorf("storage", "conflicts with trillian-rpc-server (storage configures the embedded Trillian; set one of them)")
		}
	} else {
		if storage == "" {
			if m.explicit("storage") {
				return nil, m.errorf("storage", "must not be empty (leave it unset for sqlite:<data-dir>/trillian.db)")
			}
			storage = StorageSQLite + ":" + datadir.Dir(c.DataDir).Store()
		}
		if c.Storage, err = parseStorage(storage); err != nil {
			return nil, m.wrap("storage", "invalid", err)
		}
		if role == RoleSecondary && c.Storage.Scheme == StorageMemory {
			return nil, m.errorf("storage", "memory: cannot be used by a secondary (Trillian's memory storage cannot hold a PREORDERED_LOG tree)")
		}
	}
	if c.URLPrefix, err = normalizePrefix(c.URLPrefix); err != nil {
		return nil, m.wrap("url-prefix", "invalid", err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"timeout", c.Timeout}, {"interval", c.Interval}, {"sequencer-interval", c.SequencerInterval}} {
		if d.v <= 0 {
			return nil, m.errorf(d.key, "must be a positive duration, got %s", d.v)
		}
	}
	if c.LogLevel, err = parseLogLevel(logLevel); err != nil {
		return nil, m.wrap("log-level", "invalid", err)
	}
	if c.LogFormat != LogFormatText && c.LogFormat != LogFormatJSON {
		return nil, m.errorf("log-format", "invalid %q: want text or json", c.LogFormat)
	}
	if c.SequencerBatchSize < 1 {
		return nil, m.errorf("sequencer-batch-size", "must be at least 1, got %d", c.SequencerBatchSize)
	}

	switch role {
	case RolePrimary:
		err = m.buildPrimary(c, fv, &fc)
	case RoleSecondary:
		err = m.buildSecondary(c, fv, &fc)
	}
	if err != nil {
		return nil, err
	}
	if err := m.checkInternalScheme(c); err != nil {
		return nil, err
	}
	return c, nil
}

// checkInternalScheme requires https:// URLs for the internal API under mutual TLS, and http:// without it.
func (m *merger) checkInternalScheme(c *Config) error {
	want, why := "https", "the internal API is mutual TLS pinned to the node keys (PROTOCOL.md §9); set insecure-internal-http = true only to pair with reference nodes"
	if c.InsecureInternalHTTP {
		want, why = "http", "insecure-internal-http is set"
	}
	check := func(key, u string) error {
		if scheme, _, _ := strings.Cut(u, "://"); scheme != want {
			return m.errorf(key, "%q: want %s:// (%s)", u, want, why)
		}
		return nil
	}
	if c.Role == RoleSecondary {
		if err := check("secondary.primary-url", c.Secondary.PrimaryURL); err != nil {
			return err
		}
		if !c.InsecureInternalHTTP && c.Secondary.PrimaryPubkeyFile == "" {
			return m.errorf("secondary.primary-pubkey-file", "is needed to authenticate the primary (its node key, the log's key: "+
				"set log-public-key-file or primary-pubkey-file), or set insecure-internal-http = true")
		}
		return nil
	}
	for _, s := range c.Primary.Secondaries {
		if err := check("primary.secondaries", s.URL); err != nil {
			return err
		}
	}
	return nil
}

// checkRoleKeys refuses keys and flags of the other role, so that none is silently ignored.
func (m *merger) checkRoleKeys(role Role) error {
	other, otherKeys := RoleSecondary, secondaryKeys
	if role == RoleSecondary {
		other, otherKeys = RolePrimary, primaryKeys
	}
	if m.path != "" && m.md.IsDefined(string(other)) {
		// Name the first key of the section as written, or the section itself if it is empty.
		name := string(other)
		for _, k := range m.md.Keys() {
			if len(k) > 1 && k[0] == string(other) {
				name = k.String()
				break
			}
		}
		return fmt.Errorf("%s: key %q is for role %s, but -role is %s", m.path, name, other, role)
	}
	for _, k := range otherKeys {
		if m.set[flagName(k)] {
			return fmt.Errorf("flag -%s is for role %s, but -role is %s", flagName(k), other, role)
		}
	}
	return nil
}

func (m *merger) buildPrimary(c *Config, fv *flagValues, fc *fileConfig) error {
	fp := &fc.Primary
	p := &c.Primary
	p.PolicyFile = pick(m, "primary.policy-file", fv.policyFile, fp.PolicyFile, "")
	p.RateLimitFile = pick(m, "primary.rate-limit-file", fv.rateLimitFile, fp.RateLimitFile, "")
	p.DNSServer = pick(m, "primary.dns-server", fv.dnsServer, fp.DNSServer, "")
	if p.DNSServer != "" {
		if err := m.checkEndpoint("primary.dns-server", p.DNSServer, true); err != nil {
			return err
		}
	}
	p.AllowTestDomain = pick(m, "primary.allow-test-domain", fv.allowTestDomain, fp.AllowTestDomain, false)
	p.STHFile = pick(m, "primary.sth-file", fv.sthFile, fp.STHFile, "")
	maxRange := pick(m, "primary.max-range", fv.maxRange, fp.MaxRange, DefaultMaxRange)
	p.SecondaryQuorum = pick(m, "primary.secondary-quorum", fv.secondaryQuorum, fp.SecondaryQuorum, 0)
	secURL := pick(m, "primary.secondary-url", fv.secondaryURL, fp.SecondaryURL, "")
	secKey := pick(m, "primary.secondary-pubkey-file", fv.secondaryPubkeyFile, fp.SecondaryPubkeyFile, "")

	if p.STHFile == "" {
		if m.explicit("primary.sth-file") {
			return m.errorf("primary.sth-file", "must not be empty (leave it unset for <data-dir>/sth)")
		}
		p.STHFile = datadir.Dir(c.DataDir).STH()
	}
	if maxRange < 1 {
		return m.errorf("primary.max-range", "must be at least 1, got %d", maxRange)
	}
	p.MaxRange = uint64(maxRange)
	p.WitnessInterval = pick(m, "primary.witness-interval", fv.witnessInterval, fp.WitnessInterval.d, DefaultWitnessInterval)
	if p.WitnessInterval <= 0 {
		return m.errorf("primary.witness-interval", "must be positive, got %v", p.WitnessInterval)
	}
	p.WitnessMinInterval = pick(m, "primary.witness-min-interval", fv.witnessMinInterval, fp.WitnessMinInterval.d, DefaultWitnessMinInterval)
	if p.WitnessMinInterval <= 0 {
		return m.errorf("primary.witness-min-interval", "must be positive, got %v", p.WitnessMinInterval)
	}
	p.BastionEndpoint = pick(m, "primary.bastion-endpoint", fv.bastionEndpoint, fp.BastionEndpoint, "")
	p.BastionCertFile = pick(m, "primary.bastion-cert-file", fv.bastionCertFile, fp.BastionCertFile, "")
	p.BastionKeyFile = pick(m, "primary.bastion-key-file", fv.bastionKeyFile, fp.BastionKeyFile, "")
	if p.BastionEndpoint != "" || p.BastionCertFile != "" || p.BastionKeyFile != "" {
		if p.BastionEndpoint == "" || p.BastionCertFile == "" || p.BastionKeyFile == "" {
			return m.errorf("primary.bastion-endpoint", "bastion-endpoint, bastion-cert-file and bastion-key-file go together (the bastion serves TLS)")
		}
		if err := m.checkEndpoint("primary.bastion-endpoint", p.BastionEndpoint, false); err != nil {
			return err
		}
	}

	switch {
	case secURL != "" && secKey == "":
		return m.errorf("primary.secondary-url", "is set but secondary-pubkey-file is not (a secondary needs both)")
	case secURL == "" && secKey != "":
		return m.errorf("primary.secondary-pubkey-file", "is set but secondary-url is not (a secondary needs both)")
	case secURL != "":
		if err := checkURL(secURL); err != nil {
			return m.wrap("primary.secondary-url", "invalid", err)
		}
		p.Secondaries = append(p.Secondaries, Secondary{Name: secURL, URL: secURL, PubkeyFile: secKey})
	}
	for i, s := range fp.Secondaries {
		where := fmt.Sprintf("%s: primary.secondaries[%d]", m.path, i)
		switch {
		case s.URL == "":
			return fmt.Errorf("%s: key \"url\" is required", where)
		case s.PubkeyFile == "":
			return fmt.Errorf("%s: key \"pubkey-file\" is required", where)
		}
		if err := checkURL(s.URL); err != nil {
			return fmt.Errorf("%s: key \"url\": invalid: %w", where, err)
		}
		if s.Name == "" {
			s.Name = s.URL
		}
		p.Secondaries = append(p.Secondaries, Secondary(s))
	}
	urls, names := map[string]bool{}, map[string]bool{}
	for i, s := range p.Secondaries {
		if urls[s.URL] {
			return fmt.Errorf("secondaries (secondary-url and [[primary.secondaries]]): url %q is listed twice (entry %d)", s.URL, i)
		}
		if names[s.Name] {
			return fmt.Errorf("secondaries (secondary-url and [[primary.secondaries]]): name %q is used twice (entry %d)", s.Name, i)
		}
		urls[s.URL], names[s.Name] = true, true
	}
	if q := p.SecondaryQuorum; q < 0 || q > len(p.Secondaries) {
		return m.errorf("primary.secondary-quorum", "must be between 0 (all) and the number of secondaries (%d), got %d", len(p.Secondaries), q)
	}
	return nil
}

func (m *merger) buildSecondary(c *Config, fv *flagValues, fc *fileConfig) error {
	c.Secondary.PrimaryURL = pick(m, "secondary.primary-url", fv.primaryURL, fc.Secondary.PrimaryURL, "")
	if c.Secondary.PrimaryURL == "" {
		return m.errorf("secondary.primary-url", "is required for role secondary (the primary's internal API URL, e.g. http://127.0.0.1:6967)")
	}
	if err := checkURL(c.Secondary.PrimaryURL); err != nil {
		return m.wrap("secondary.primary-url", "invalid", err)
	}
	c.Secondary.PrimaryPublicURL = pick(m, "secondary.primary-public-url", fv.primaryPublicURL, fc.Secondary.PrimaryPublicURL, "")
	c.Secondary.LogPublicKeyFile = pick(m, "secondary.log-public-key-file", fv.logPublicKeyFile, fc.Secondary.LogPublicKeyFile, "")
	if (c.Secondary.PrimaryPublicURL == "") != (c.Secondary.LogPublicKeyFile == "") {
		return m.errorf("secondary.primary-public-url", "and log-public-key-file must be set together (following the published head needs both)")
	}
	c.Secondary.PolicyFile = pick(m, "secondary.policy-file", fv.policyFile, fc.Secondary.PolicyFile, "")
	c.Secondary.PrimaryPubkeyFile = pick(m, "secondary.primary-pubkey-file", fv.primaryPubkeyFile, fc.Secondary.PrimaryPubkey, c.Secondary.LogPublicKeyFile)
	if c.Secondary.PolicyFile != "" && c.Secondary.LogPublicKeyFile == "" {
		return m.errorf("secondary.policy-file", "needs log-public-key-file and primary-public-url (it checks the published head's cosignatures)")
	}
	if c.Secondary.PrimaryPublicURL != "" {
		if err := checkURL(c.Secondary.PrimaryPublicURL); err != nil {
			return m.wrap("secondary.primary-public-url", "invalid", err)
		}
	}
	return nil
}

var (
	tomlPosition = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): `)
	tomlMismatch = regexp.MustCompile(`type mismatch for [\w.]+: `)
)

// tomlMessage rewrites an error of the TOML decoder as `line N: key "k": message` on one line, without Go types.
func tomlMessage(err error) string {
	s := err.Error()
	if m := tomlPosition.FindStringSubmatchIndex(s); m != nil {
		prefix := ""
		if m[2] >= 0 {
			prefix = "line " + s[m[2]:m[3]] + ": "
		}
		s = prefix + "key " + s[m[4]:m[5]] + ": " + s[m[1]:]
	} else {
		s = strings.TrimPrefix(s, "toml: ")
	}
	s = tomlMismatch.ReplaceAllString(s, "type mismatch: ")
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// keyLine returns the line of the TOML text where key ("a", "table.a", "table.subtable") is set or its table
// begins, or 0: the decoder reports unknown keys without their place.
func keyLine(data []byte, key string) int {
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			name := strings.TrimSpace(strings.Trim(strings.SplitN(line, "#", 2)[0], "[] \t"))
			if name == key {
				return i + 1
			}
			table = name
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		full := strings.Trim(strings.TrimSpace(name), `"`)
		if table != "" {
			full = table + "." + full
		}
		if full == key {
			return i + 1
		}
	}
	return 0
}

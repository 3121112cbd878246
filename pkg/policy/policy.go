// Package policy reads a Sigsum trust policy file (PROTOCOL.md §5) and decides whether a set of witness
// cosignatures meets its quorum.
//
// One statement a line; `#` starts a comment (at the start of a line or of a field); blank lines are ignored:
//
//	log <hex public key> [url]
//	witness <name> <hex public key> [url]
//	group <name> <k|any|all> <member>...
//	quorum <name|none>
//
// Group members are witnesses or groups defined on earlier lines, so a policy can never be cyclic. `any` means 1,
// `all` the number of members, and an explicit k must be between 1 and the number of members. Names are unique
// across witnesses and groups; the same key may not appear twice. quorum appears exactly once; `none` means no
// cosignatures are required.
package policy

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// Limits that keep a hostile or broken policy file from using unbounded memory.
const (
	// MaxFileSize bounds a policy file; real ones are a few KiB.
	MaxFileSize = 1 << 20
	// maxLineLength bounds one line.
	maxLineLength = 64 << 10
	// maxShown bounds how much of a name or value an error message repeats.
	maxShown = 64
)

// QuorumNone is the quorum name that requires no cosignatures at all.
const QuorumNone = "none"

// Log is a log the policy trusts.
type Log struct {
	Key sigsum.PublicKey
	URL string // may be empty
}

// Witness is a witness the policy names.
type Witness struct {
	// Name is the witness's name in the policy; local to the policy file (the witness signs under its own).
	Name string
	// Key is an Ed25519 witness's key (zero for an ML-DSA-44 witness).
	Key sigsum.PublicKey
	// MLDSA is an ML-DSA-44 witness's 1312-byte public key (C2SP tlog-cosignature subtree/v1), written in the
	// policy as 2624 hex digits; nil for an Ed25519 witness.
	MLDSA []byte
	URL   string // may be empty: the witness is known but not contacted
}

// KeyHash is the witness's key hash, SHA-256 of its public key, by which its cosignatures count.
func (w *Witness) KeyHash() sigsum.Hash {
	if w.MLDSA != nil {
		return sigsum.HashBytes(w.MLDSA)
	}
	return w.Key.KeyHash()
}

// Policy is a parsed trust policy. It is immutable and safe for concurrent use.
type Policy struct {
	logs      []Log
	witnesses []Witness
	// entities holds witnesses and groups in definition order; members always refer to earlier entries, which is
	// what lets Satisfied evaluate everything in one forward pass.
	entities []entity
	byName   map[string]int
	quorum   int // index into entities, or -1 for none
}

type entity struct {
	name    string
	witness int   // index into witnesses, or -1 for a group
	k       int   // groups: how many members must be satisfied
	members []int // groups: indices into entities, all smaller than this entity's own
}

// Logs returns the logs of the policy, in file order.
func (p *Policy) Logs() []Log { return append([]Log(nil), p.logs...) }

// Witnesses returns the witnesses of the policy, in file order.
func (p *Policy) Witnesses() []Witness { return append([]Witness(nil), p.witnesses...) }

// Quorum returns the name of the quorum group or witness, or QuorumNone.
func (p *Policy) Quorum() string {
	if p.quorum < 0 {
		return QuorumNone
	}
	return p.entities[p.quorum].name
}

// WitnessByKeyHash returns the witness whose key hashes to h.
func (p *Policy) WitnessByKeyHash(h sigsum.Hash) (Witness, bool) {
	for _, w := range p.witnesses {
		if w.KeyHash() == h {
			return w, true
		}
	}
	return Witness{}, false
}

// Satisfied reports whether the witnesses whose key hashes map to true in cosigners meet the quorum. The caller
// must have verified those cosignatures; keys the policy does not name are ignored. With quorum none it is always
// true.
func (p *Policy) Satisfied(cosigners map[sigsum.Hash]bool) bool {
	if p.quorum < 0 {
		return true
	}
	ok := make([]bool, p.quorum+1)
	for i := range ok {
		e := &p.entities[i]
		if e.witness >= 0 {
			ok[i] = cosigners[p.witnesses[e.witness].KeyHash()]
			continue
		}
		n := 0
		for _, m := range e.members {
			if ok[m] {
				n++
			}
		}
		ok[i] = n >= e.k
	}
	return ok[p.quorum]
}

// ParseFile reads and parses the policy file at path.
func ParseFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	// Read one byte more than allowed so a too-large file is told apart from one of exactly the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy file %s: larger than %d bytes", path, MaxFileSize)
	}
	p, err := Parse(strings.NewReader(string(data)))
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, nil
}

// LineError is a parse error on one line of a policy.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// Parse reads a policy from r. An error names the offending line and says why.
func Parse(r io.Reader) (*Policy, error) {
	p := &Policy{byName: make(map[string]int), quorum: -1}
	keys := make(map[sigsum.PublicKey]int) // key → line of first use
	quorumLine := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineLength)
	n := 0
	for sc.Scan() {
		n++
		f := fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "log":
			err = p.parseLog(f[1:], keys, n)
		case "witness":
			err = p.parseWitness(f[1:], keys, n)
		case "group":
			err = p.parseGroup(f[1:])
		case "quorum":
			if quorumLine != 0 {
				err = fmt.Errorf("second quorum statement (the first is on line %d)", quorumLine)
				break
			}
			quorumLine = n
			err = p.parseQuorum(f[1:])
		default:
			err = fmt.Errorf("unknown statement %q (want log, witness, group or quorum)", shown(f[0]))
		}
		if err != nil {
			return nil, &LineError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Err: fmt.Errorf("line longer than %d bytes", maxLineLength)}
		}
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	if quorumLine == 0 {
		return nil, errors.New("no quorum statement (use `quorum none` to require no cosignatures)")
	}
	return p, nil
}

// fields splits a line on white space and drops a comment: a field starting with '#' and everything after it. A
// '#' inside a field (a URL fragment, say) is not a comment.
func fields(line string) []string {
	f := strings.Fields(line)
	for i, s := range f {
		if strings.HasPrefix(s, "#") {
			return f[:i]
		}
	}
	return f
}

func (p *Policy) parseLog(args []string, keys map[sigsum.PublicKey]int, line int) error {
	if len(args) < 1 || len(args) > 2 {
		return errors.New("want `log <hex public key> [url]`")
	}
	k, err := parseKey(args[0], keys, line)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	l := Log{Key: k}
	if len(args) == 2 {
		if l.URL, err = parseURL(args[1]); err != nil {
			return fmt.Errorf("log: %w", err)
		}
	}
	p.logs = append(p.logs, l)
	return nil
}

func (p *Policy) parseWitness(args []string, keys map[sigsum.PublicKey]int, line int) error {
	if len(args) < 2 || len(args) > 3 {
		return errors.New("want `witness <name> <hex public key> [url]`")
	}
	name := args[0]
	if err := p.checkNewName(name); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	var w Witness
	if len(args[1]) == 2*sigsum.MLDSA44PublicKeySize {
		key, err := hex.DecodeString(args[1])
		if err != nil {
			return fmt.Errorf("witness %s: ML-DSA-44 public key: not hex", name)
		}
		var h sigsum.PublicKey = sigsum.PublicKey(sigsum.HashBytes(key)) // its key hash stands for it in keys
		if prev, dup := keys[h]; dup {
			return fmt.Errorf("witness %s: public key already used on line %d", name, prev)
		}
		keys[h] = line
		w = Witness{Name: name, MLDSA: key}
	} else {
		k, err := parseKey(args[1], keys, line)
		if err != nil {
			return fmt.Errorf("witness %s: %w", name, err)
		}
		w = Witness{Name: name, Key: k}
	}
	var err error
	if len(args) == 3 {
		if w.URL, err = parseURL(args[2]); err != nil {
			return fmt.Errorf("witness %s: %w", name, err)
		}
	}
	p.byName[name] = len(p.entities)
	p.entities = append(p.entities, entity{name: name, witness: len(p.witnesses)})
	p.witnesses = append(p.witnesses, w)
	return nil
}

func (p *Policy) parseGroup(args []string) error {
	if len(args) < 3 {
		return errors.New("want `group <name> <k|any|all> <member>...` with at least one member")
	}
	name := args[0]
	if err := p.checkNewName(name); err != nil {
		return fmt.Errorf("group: %w", err)
	}
	e := entity{name: name, witness: -1}
	seen := make(map[int]bool)
	for _, m := range args[2:] {
		i, ok := p.byName[m]
		if !ok {
			return fmt.Errorf("group %s: member %q is not a witness or group defined on an earlier line", name, shown(m))
		}
		if seen[i] {
			return fmt.Errorf("group %s: member %q listed twice", name, m)
		}
		seen[i] = true
		e.members = append(e.members, i)
	}
	switch t := args[1]; t {
	case "any":
		e.k = 1
	case "all":
		e.k = len(e.members)
	default:
		k, err := sigsum.ParseInt(t)
		if err != nil || k < 1 || k > uint64(len(e.members)) {
			return fmt.Errorf("group %s: threshold %q is not any, all or a number from 1 to %d (the member count)",
				name, shown(t), len(e.members))
		}
		e.k = int(k)
	}
	p.byName[name] = len(p.entities)
	p.entities = append(p.entities, e)
	return nil
}

func (p *Policy) parseQuorum(args []string) error {
	if len(args) != 1 {
		return errors.New("want `quorum <name|none>`")
	}
	if args[0] == QuorumNone {
		return nil
	}
	i, ok := p.byName[args[0]]
	if !ok {
		return fmt.Errorf("quorum %q is not a witness or group defined on an earlier line", shown(args[0]))
	}
	p.quorum = i
	return nil
}

// checkNewName refuses names that are taken, reserved, or unusable as a signed-note key name (a witness's name is
// the key name on its cosignature lines, and note key names cannot contain '+').
func (p *Policy) checkNewName(name string) error {
	switch {
	case name == QuorumNone || name == "any" || name == "all":
		return fmt.Errorf("%q is a reserved word, not usable as a name", name)
	case strings.Contains(name, "+"):
		return fmt.Errorf("name %q contains '+'", shown(name))
	case !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("name %q is not printable UTF-8", shown(name))
	}
	if _, dup := p.byName[name]; dup {
		return fmt.Errorf("name %q is already defined", shown(name))
	}
	return nil
}

func parseKey(s string, keys map[sigsum.PublicKey]int, line int) (sigsum.PublicKey, error) {
	k, err := sigsum.ParsePublicKey(s)
	if err != nil {
		return k, fmt.Errorf("public key %q: %w", shown(s), err)
	}
	if prev, dup := keys[k]; dup {
		return k, fmt.Errorf("public key %s already used on line %d", k, prev)
	}
	keys[k] = line
	return k, nil
}

func parseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("URL %q is not http(s)://host[/path]", shown(s))
	}
	return s, nil
}

// shown bounds what an error message repeats of the input.
func shown(s string) string {
	if len(s) > maxShown {
		return s[:maxShown] + "..."
	}
	return s
}

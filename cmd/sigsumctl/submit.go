package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sigsumd/sigsumd/internal/atomicfile"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/proof"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// proofSuffix is appended to an input file's name to name its proof of logging, as sigsum-submit does.
const proofSuffix = ".proof"

// submitState is one input file on its way to a proof.
type submitState struct {
	file      string
	message   sigsum.Hash
	req       sigsum.AddLeafRequest
	leaf      sigsum.Leaf
	committed bool
	accepted  bool // the log answered 202 or 200 once
	done      bool
}

// submitCmd signs each input file's checksum, adds the leaves to the log, waits until every leaf is committed and
// in a published head that satisfies the policy's quorum, and writes <file>.proof beside each input.
func submitCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("submit", stderr)
	keyFile := flags.String("key-file", "", "submitter's key `file`: OpenSSH ed25519 private key, or public key to sign through ssh-agent (required)")
	policyFile := flags.String("policy", "", "trust policy `file` naming the log (with its URL), witnesses and quorum (required)")
	var lf logFlags
	lf.register(flags)
	rawHash := flags.Bool("raw-hash", false, "each input file holds the 32-byte message itself (raw, or 64 hex digits), not data to hash")
	tokenDomain := flags.String("token-domain", "", "send a sigsum-token for this `domain` (its _sigsum_v1 TXT record lists the token key)")
	tokenKeyFile := flags.String("token-key-file", "", "key `file` that signs the sigsum-token (private key, or public key for ssh-agent)")
	timeout := flags.Duration("timeout", 10*time.Minute, "give up after this long")
	poll := flags.Duration("poll", 1500*time.Millisecond, "interval between add-leaf retries and tree head polls")
	cosignWait := flags.Duration("cosign-timeout", 2*time.Minute, "give up when the log's heads lack the policy's quorum of cosignatures for this long, naming the witnesses missing")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: sigsumctl submit -key-file key -policy policy [flags] file...")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	files := flags.Args()
	switch {
	case *keyFile == "":
		return errors.New("-key-file is required")
	case *policyFile == "":
		return errors.New("-policy is required")
	case len(files) == 0:
		return errors.New("no input files")
	case (*tokenDomain == "") != (*tokenKeyFile == ""):
		return errors.New("-token-domain and -token-key-file go together")
	case *timeout <= 0 || *poll <= 0 || *cosignWait <= 0:
		return errors.New("-timeout, -poll and -cosign-timeout must be positive")
	}
	pol, err := policy.ParseFile(*policyFile)
	if err != nil {
		return err
	}
	logKey, c, err := lf.open(pol)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	signer, err := key.LoadSigner(ctx, *keyFile, "")
	if err != nil {
		return err
	}
	defer signer.Close()
	var token *sigsum.SubmitToken
	if *tokenDomain != "" {
		ts, err := key.LoadSigner(ctx, *tokenKeyFile, "")
		if err != nil {
			return fmt.Errorf("token key: %w", err)
		}
		t, err := sigsum.SignSubmitToken(ts, *tokenDomain, logKey)
		ts.Close()
		if err != nil {
			return fmt.Errorf("signing sigsum-token: %w", err)
		}
		token = &t
	}

	items := make([]*submitState, 0, len(files))
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			return fmt.Errorf("%s: given twice", f)
		}
		seen[f] = true
		msg, err := readMessage(f, *rawHash)
		if err != nil {
			return err
		}
		leaf, err := sigsum.SignLeaf(signer, msg)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		items = append(items, &submitState{file: f, message: msg, leaf: leaf,
			req: sigsum.AddLeafRequest{Message: msg, Signature: leaf.Signature, PublicKey: signer.Public()}})
	}

	s := submitter{c: c, logKey: logKey, pol: pol, poll: *poll, timeout: *timeout, cosignWait: *cosignWait,
		stdout: stdout, progress: stderr}
	if err := s.addLeaves(ctx, items, token); err != nil {
		return err
	}
	return s.collectProofs(ctx, items)
}

// submitter runs one batch of submissions against one log.
type submitter struct {
	c       *client.Client
	logKey  sigsum.PublicKey
	pol     *policy.Policy
	poll    time.Duration
	timeout time.Duration
	stdout  io.Writer
	// progress receives what the submission is waiting for, a line whenever that changes.
	progress io.Writer
	said     string
	// cosignWait bounds how long heads may lack the quorum; lacking is when that started (zero: they do not).
	cosignWait time.Duration
	lacking    time.Time
}

// say reports progress once per change.
func (s *submitter) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if line != s.said {
		s.said = line
		fmt.Fprintln(s.progress, "sigsumctl submit: "+line)
	}
}

// wait sleeps one poll interval, or fails with a timeout naming what it waited for and the last error seen.
func (s *submitter) wait(ctx context.Context, what string, last error) error {
	t := time.NewTimer(s.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		if last != nil {
			return fmt.Errorf("gave up waiting for %s after %s (last problem: %w)", what, s.timeout, last)
		}
		return fmt.Errorf("gave up waiting for %s after %s: %w", what, s.timeout, ctx.Err())
	case <-t.C:
		return nil
	}
}

// addLeaves submits every leaf and resubmits each until the log answers 200 (committed).
func (s *submitter) addLeaves(ctx context.Context, items []*submitState, token *sigsum.SubmitToken) error {
	for {
		pending := 0
		var last error
		for _, it := range items {
			if it.committed {
				continue
			}
			committed, err := s.c.AddLeaf(ctx, &it.req, token)
			switch code := client.StatusCode(err); {
			case err == nil:
				it.committed = committed
				if !it.accepted {
					it.accepted = true
					if !committed {
						s.say("%s: accepted, waiting for the log to commit it", it.file)
					}
				}
				if committed {
					s.say("%s: committed", it.file)
				}
			case code == http.StatusBadRequest || code == http.StatusForbidden:
				return fmt.Errorf("%s: the log refused the leaf: %w", it.file, err)
			default: // 429, 5xx, network trouble: try again until the timeout
				last = fmt.Errorf("%s: %w", it.file, err)
			}
			if !it.committed {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		if err := s.wait(ctx, fmt.Sprintf("add-leaf to commit %d of %d leaves", pending, len(items)), last); err != nil {
			return err
		}
	}
}

// collectProofs polls the published tree head until it satisfies the policy and includes every leaf, and writes
// each leaf's proof as soon as it is included.
func (s *submitter) collectProofs(ctx context.Context, items []*submitState) error {
	for {
		last := s.proofRound(ctx, items)
		var perm *permanentError
		if errors.As(last, &perm) {
			return perm.err
		}
		pending := 0
		for _, it := range items {
			if !it.done {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		if err := s.wait(ctx, fmt.Sprintf("a published tree head with %d of %d leaves that satisfies the policy", pending, len(items)), last); err != nil {
			return err
		}
	}
}

// permanentError is a problem retrying cannot help with.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// proofRound fetches the tree head once and writes the proofs of the leaves it includes. It returns the last
// problem worth retrying, or a *permanentError when retrying cannot help.
func (s *submitter) proofRound(ctx context.Context, items []*submitState) error {
	cth, err := s.c.GetTreeHead(ctx)
	if err != nil {
		return err
	}
	if !cth.Verify(s.logKey) {
		return &permanentError{fmt.Errorf("the log's tree head of size %d does not verify with the log key %s", cth.Size, s.logKey.KeyHash())}
	}
	if valid, err := proof.VerifyCosignatures(s.logKey, s.pol, &cth); err != nil {
		var have, missing []string
		for _, w := range s.pol.Witnesses() {
			if valid[w.KeyHash()] {
				have = append(have, w.Name)
			} else {
				missing = append(missing, w.Name)
			}
		}
		state := fmt.Sprintf("cosigned by %d of %d witnesses (%s); missing %s", len(have), len(s.pol.Witnesses()),
			strings.Join(have, ", "), strings.Join(missing, ", "))
		if len(have) == 0 {
			state = fmt.Sprintf("cosigned by none of the %d witnesses; missing %s", len(s.pol.Witnesses()), strings.Join(missing, ", "))
		}
		s.say("waiting for a tree head the policy accepts (quorum %q): size %d is %s", s.pol.Quorum(), cth.Size, state)
		if s.lacking.IsZero() {
			s.lacking = time.Now()
		}
		if time.Since(s.lacking) >= s.cosignWait {
			return &permanentError{fmt.Errorf("the log's tree heads have lacked the policy's quorum %q for %v: size %d is %s",
				s.pol.Quorum(), s.cosignWait, cth.Size, state)}
		}
		return fmt.Errorf("tree head of size %d: %w", cth.Size, err)
	}
	s.lacking = time.Time{}
	var last error
	for _, it := range items {
		if it.done || cth.Size == 0 {
			continue
		}
		leafHash := it.leaf.Hash()
		var incl *sigsum.InclusionProof
		if cth.Size == 1 {
			if leafHash != cth.RootHash {
				continue // the only leaf is another one: ours comes later
			}
		} else {
			p, err := s.c.GetInclusionProof(ctx, cth.Size, leafHash)
			if client.StatusCode(err) == http.StatusNotFound {
				continue // not in this head yet
			}
			if err != nil {
				last = fmt.Errorf("%s: %w", it.file, err)
				continue
			}
			incl = &p
		}
		pr := proof.New(s.logKey.KeyHash(), &it.leaf, &cth, incl)
		// The proof must verify as a verifier will check it; anything else is the log's fault.
		if err := pr.Verify(it.message, []sigsum.PublicKey{it.req.PublicKey}, s.pol); err != nil {
			return &permanentError{fmt.Errorf("%s: the log's proof does not verify: %w", it.file, err)}
		}
		out := it.file + proofSuffix
		if err := atomicfile.Write(out, pr.MarshalASCII(), 0o644); err != nil {
			return &permanentError{err}
		}
		it.done = true
		fmt.Fprintf(s.stdout, "%s: leaf index %d in tree of size %d\n", out, pr.Inclusion.LeafIndex, cth.Size)
	}
	return last
}

// readMessage returns the message to sign for file: SHA-256 of its content, or with raw the content itself (32
// bytes, or 64 hex digits with surrounding white space).
func readMessage(file string, raw bool) (sigsum.Hash, error) {
	var msg sigsum.Hash
	f, err := os.Open(file)
	if err != nil {
		return msg, err
	}
	defer f.Close()
	if !raw {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return msg, fmt.Errorf("%s: %w", file, err)
		}
		copy(msg[:], h.Sum(nil))
		return msg, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return msg, fmt.Errorf("%s: %w", file, err)
	}
	return parseRawHash(file, b)
}

// parseRawHash decodes a -raw-hash input: exactly 32 bytes, or 64 hex digits and optional white space.
func parseRawHash(what string, b []byte) (sigsum.Hash, error) {
	var msg sigsum.Hash
	if len(b) == sigsum.HashSize {
		copy(msg[:], b)
		return msg, nil
	}
	msg, err := sigsum.ParseHash(string(bytes.TrimSpace(b)))
	if err != nil {
		return msg, fmt.Errorf("%s: -raw-hash input is neither 32 bytes nor 64 hex digits", what)
	}
	return msg, nil
}

// logFlags chooses the log to talk to: by default the first log of the policy that has a URL.
type logFlags struct {
	url     string
	keyFile string
}

func (lf *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&lf.url, "log-url", "", "log base `URL` (default: the URL on the policy's log line)")
	fs.StringVar(&lf.keyFile, "log-key", "", "log public key `file`, to pick one of the policy's logs (default: the policy's first log with a URL, or its only log)")
}

// open returns the chosen log's key and a client for it. The log must be one the policy trusts.
func (lf *logFlags) open(pol *policy.Policy) (sigsum.PublicKey, *client.Client, error) {
	logs := pol.Logs()
	var chosen *policy.Log
	switch {
	case lf.keyFile != "":
		k, err := key.ReadPublicKeyFile(lf.keyFile)
		if err != nil {
			return k, nil, fmt.Errorf("-log-key: %w", err)
		}
		for i := range logs {
			if logs[i].Key == k {
				chosen = &logs[i]
			}
		}
		if chosen == nil {
			return k, nil, fmt.Errorf("-log-key: log %s is not in the policy", k.KeyHash())
		}
	case len(logs) == 1:
		chosen = &logs[0]
	default:
		for i := range logs {
			if logs[i].URL != "" {
				chosen = &logs[i]
				break
			}
		}
		if chosen == nil || lf.url != "" {
			return sigsum.PublicKey{}, nil, fmt.Errorf("the policy names %d logs: choose one with -log-key", len(logs))
		}
	}
	url := lf.url
	if url == "" {
		url = chosen.URL
	}
	if url == "" {
		return chosen.Key, nil, fmt.Errorf("no URL for log %s: add it to the policy's log line or give -log-url", chosen.Key.KeyHash())
	}
	c, err := client.New(client.Config{URL: strings.TrimSpace(url), UserAgent: "sigsumctl"})
	return chosen.Key, c, err
}

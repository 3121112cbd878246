package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/proof"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// keyFilesFlag collects a repeatable public key file flag.
type keyFilesFlag struct{ keys []sigsum.PublicKey }

func (f *keyFilesFlag) String() string { return "" }

func (f *keyFilesFlag) Set(path string) error {
	k, err := key.ReadPublicKeyFile(path)
	if err != nil {
		return err
	}
	f.keys = append(f.keys, k)
	return nil
}

// verifyCmd checks proofs of logging offline: for each input file, <file>.proof (or -proof) against the file's
// data, the submitter keys and the policy. It needs no network.
func verifyCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("verify", stderr)
	var keys keyFilesFlag
	flags.Var(&keys, "key-file", "submitter's public key `file` (ssh-ed25519 or hex); repeat to accept several submitters (required)")
	policyFile := flags.String("policy", "", "trust policy `file`: logs, witnesses and the quorum to require (required)")
	rawHash := flags.Bool("raw-hash", false, "each input file holds the 32-byte message itself (raw, or 64 hex digits), not data to hash")
	proofFile := flags.String("proof", "", "proof `file` (default <file>.proof; only with one input file)")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: sigsumctl verify -key-file submitter.pub -policy policy [flags] file...")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	files := flags.Args()
	switch {
	case len(keys.keys) == 0:
		return errors.New("-key-file is required")
	case *policyFile == "":
		return errors.New("-policy is required")
	case len(files) == 0:
		return errors.New("no input files")
	case *proofFile != "" && len(files) > 1:
		return errors.New("-proof goes with a single input file")
	}
	pol, err := policy.ParseFile(*policyFile)
	if err != nil {
		return err
	}
	failed := 0
	var firstErr error
	for _, f := range files {
		pf := *proofFile
		if pf == "" {
			pf = f + proofSuffix
		}
		p, err := verifyOne(f, pf, *rawHash, keys.keys, pol)
		if err != nil {
			failed++
			err = fmt.Errorf("%s: %w", f, err)
			if firstErr == nil {
				firstErr = err
			}
			if len(files) > 1 {
				fmt.Fprintf(stderr, "sigsumctl verify: %v\n", err)
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: ok: leaf index %d in tree of size %d of log %s, %d cosignatures\n", f,
			p.Inclusion.LeafIndex, p.TreeHead.Size, p.LogKeyHash, len(p.TreeHead.Cosignatures))
	}
	switch {
	case failed == 0:
		return nil
	case len(files) == 1:
		return firstErr
	default:
		return fmt.Errorf("%d of %d proofs failed", failed, len(files))
	}
}

// verifyOne checks the proof in proofFile for the data (or raw message) in file.
func verifyOne(file, proofFile string, raw bool, keys []sigsum.PublicKey, pol *policy.Policy) (*proof.Proof, error) {
	msg, err := readMessage(file, raw)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(proofFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, proof.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", proofFile, err)
	}
	p, err := proof.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", proofFile, err)
	}
	if err := p.Verify(msg, keys, pol); err != nil {
		return nil, err
	}
	return p, nil
}

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestVerifyFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.write("f", "data")
	e.ok(e.submit(f)...)
	verify := func(args ...string) []string {
		return append([]string{"verify", "-key-file", e.key + ".pub", "-policy", e.pol}, args...)
	}
	e.ok(verify(f)...)
	e.ok(verify("-proof", f+".proof", f)...)

	other := e.write("other", "other data")
	e.fails(other+": leaf signature does not verify", verify("-proof", f+".proof", other)...)
	e.fails("no such file", verify(other)...)
	e.fails("-proof goes with a single input file", verify("-proof", f+".proof", f, other)...)
	e.fails("-key-file is required", "verify", "-policy", e.pol, f)
	e.fails("-policy is required", "verify", "-key-file", e.key+".pub", f)
	e.fails("no input files", verify()...)

	p, err := os.ReadFile(f + ".proof")
	if err != nil {
		t.Fatal(err)
	}
	trunc := e.write("trunc.proof", string(p[:len(p)-10]))
	e.fails("malformed proof", verify("-proof", trunc, f)...)
	strict := e.write("strict", fmt.Sprintf("log %s\nwitness w %s\nquorum w\n", e.log.key.Public(), strings.Repeat("cd", 32)))
	e.fails("do not satisfy the policy's quorum", "verify", "-key-file", e.key+".pub", "-policy", strict, f)

	// Every failure is one line.
	_, stderr, _ := e.run(verify("-proof", f+".proof", other)...)
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q is not one line", stderr)
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestMonitorOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := filepath.Join(e.dir, "other")
	if _, err := writeKeyPair(other, "other"); err != nil {
		t.Fatal(err)
	}
	a, b, c := e.write("a", "a"), e.write("b", "b"), e.write("c", "c")
	e.ok(e.submit(a, b)...)
	e.ok("submit", "-key-file", other, "-policy", e.pol, "-poll", "10ms", c)
	state := filepath.Join(e.dir, "state")
	args := []string{"monitor", "-policy", e.pol, "-watch-key", e.key + ".pub", "-state", state, "-once", "-batch", "1"}
	out := e.ok(args...)
	if n := strings.Count(out, "signature=ok\n"); n != 2 || strings.Count(out, "leaf index=") != 2 {
		t.Errorf("monitor output:\n%s", out)
	}
	// Resumed: nothing new, nothing reported.
	if out := e.ok(args...); out != "" {
		t.Errorf("resumed monitor reported again:\n%s", out)
	}
	d := e.write("d", "d")
	e.ok(e.submit(d)...)
	if out := e.ok(args...); strings.Count(out, "leaf index=3 ") != 1 {
		t.Errorf("monitor after one more leaf:\n%s", out)
	}
	e.fails("-policy is required", "monitor", "-once")
	e.fails("-interval and -batch must be positive", "monitor", "-policy", e.pol, "-batch", "0")
	e.fails("unexpected argument", "monitor", "-policy", e.pol, "x")
	// A head the log key did not sign is a fatal alert.
	wrong := e.write("policy-wrong", "log "+strings.Repeat("ab", 32)+" "+e.log.srv.URL+"\nquorum none\n")
	e.fails("alert bad-signature", "monitor", "-policy", wrong, "-once")
}

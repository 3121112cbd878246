package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-version"}, "sigsumd "},
		{[]string{"--version"}, "sigsumd "},
		{[]string{"-h"}, "-role"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), tc.want) || stderr.Len() != 0 {
			t.Errorf("sigsumd %s: exit %d, stdout %q, stderr %q", strings.Join(tc.args, " "), code, stdout.String(), stderr.String())
		}
	}
}

// Without GOGC in the environment sigsumd collects at defaultGCPercent; with it, the environment's value stands.
func TestGCDefault(t *testing.T) {
	restore := debug.SetGCPercent(100)
	defer debug.SetGCPercent(restore)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		applied bool
		want    int
	}{
		{"unset", nil, true, defaultGCPercent},
		{"set", map[string]string{"GOGC": "100"}, false, 100},
		{"set off", map[string]string{"GOGC": "off"}, false, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100) // as the runtime starts without GOGC, or as the environment set it here
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			if got := setGCDefault(lookup); got != tc.applied {
				t.Errorf("applied %v, want %v", got, tc.applied)
			}
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}

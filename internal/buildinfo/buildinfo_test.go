package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-04T17:00:00Z"}}},
			"sigsumd v1.2.3 (0123456789ab 2026-12-04T17:00:00Z, go1.26.8)"},
		{"local change", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			"sigsumd (devel) (abc, modified, go1.26.8)"},
		{"no vcs", debug.BuildInfo{GoVersion: "go1.26.8"}, "sigsumd (devel) (go1.26.8)"},
	} {
		if got := format("sigsumd", &tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := String("sigsumctl"); got == "" {
		t.Error("no build information for the test binary")
	}
}

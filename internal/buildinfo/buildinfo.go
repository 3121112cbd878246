// Package buildinfo says which build of sigsumd is running: the module version and the VCS revision Go recorded in
// the binary (`sigsumd -version`, `sigsumctl version`).
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// String returns "<program> <module version> (<revision>[, modified] <commit time>, <go version>)" for the running
// binary; parts Go did not record are left out (a test binary, or a build outside a VCS checkout).
func String(program string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	return format(program, bi)
}

func format(program string, bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	var parts []string
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if settings["vcs.modified"] == "true" {
			rev += ", modified"
		}
		if t := settings["vcs.time"]; t != "" {
			rev += " " + t
		}
		parts = append(parts, rev)
	}
	parts = append(parts, bi.GoVersion)
	return fmt.Sprintf("%s %s (%s)", program, version, strings.Join(parts, ", "))
}

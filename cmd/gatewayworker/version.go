package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// versionLine is what `version` prints: the module version and the VCS
// commit the binary was built from, as the Go toolchain recorded them.
// A build from a checkout has module version "(devel)"; one built with
// -buildvcs=false (as .ci/run does) records no commit: "unknown".
func versionLine() string {
	version, commit, modified := "unknown", "unknown", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	return fmt.Sprintf("gatewayworker %s, commit %s%s, %s", version, commit, modified, runtime.Version())
}

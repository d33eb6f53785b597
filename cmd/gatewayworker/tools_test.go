package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestToolsStayOutOfTheModule: go-task's ~120 modules are required by
// tools/go.mod, which go.work joins in this repository, never by the
// go.mod that programs importing gatewayworker read (docs/tools.md;
// scripts/split-tools.sh moves them back out).
func TestToolsStayOutOfTheModule(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../" + name)
		require.NoError(t, err)
		return string(b)
	}
	gomod := read("go.mod")
	require.NotContains(t, gomod, "\ntool ", "go.mod has a tool directive: run scripts/split-tools.sh")
	require.NotContains(t, gomod, "github.com/go-task/", "go.mod requires go-task: run scripts/split-tools.sh")
	require.Contains(t, read("tools/go.mod"), "tool github.com/go-task/task/v3/cmd/task")
	work := read("go.work")
	require.Contains(t, work, "./tools")
	require.True(t, strings.Contains(work, "\t.\n") || strings.Contains(work, "use ."), "go.work uses the main module")
}

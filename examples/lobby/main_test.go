package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeSnippetIsThisCode: the README's worker snippet is this
// program's code between the README markers, so it compiles and is what
// cmd/gatewayworker's TestLobbyBesideRunAppNone runs.
func TestReadmeSnippetIsThisCode(t *testing.T) {
	src, err := os.ReadFile("main.go")
	require.NoError(t, err)
	_, region, ok := strings.Cut(string(src), "\t// README begin\n")
	require.True(t, ok, "no README begin marker")
	region, _, ok = strings.Cut(region, "\t// README end\n")
	require.True(t, ok, "no README end marker")
	lines := strings.Split(region, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "```go\n"+strings.Join(lines, "\n")+"```\n",
		"README's worker snippet differs from examples/lobby/main.go")
}

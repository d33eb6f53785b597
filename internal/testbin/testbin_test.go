package testbin

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBuildOncePerSources: the binary is built once, found again under the
// same key by a later call (another package's tests, another run), and runs.
func TestBuildOncePerSources(t *testing.T) {
	const pkg = "github.com/gatewayworker/gatewayworker/cmd/gatewayworker"
	path := Build(t, pkg)
	require.Equal(t, "gatewayworker", binaryName(pkg))
	require.Equal(t, "nats-server", binaryName("github.com/nats-io/nats-server/v2"))
	info, err := os.Stat(path)
	require.NoError(t, err)

	again, err := buildOnce(pkg) // what a second test binary does
	require.NoError(t, err)
	require.Equal(t, path, again)
	info2, err := os.Stat(again)
	require.NoError(t, err)
	require.Equal(t, info.ModTime(), info2.ModTime(), "found, not built again")

	out, err := exec.Command(path, "version").CombinedOutput()
	require.NoError(t, err, "%s", out)
}

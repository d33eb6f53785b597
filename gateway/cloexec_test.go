package gateway_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestChildProcessesInheritNoClientSocket starts a process while a
// WebSocket and a raw TCP client are connected: it must not inherit their
// sockets (nbio's dup of each accepted socket dropped close-on-exec; a
// socket a child held kept a stale epoll registration that later closed
// another client).
func TestChildProcessesInheritNoClientSocket(t *testing.T) {
	ls, err := exec.LookPath("ls")
	if err != nil {
		t.Skip("no ls")
	}
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	gw := gatewaytest.Start(t, e, gateway.Config{TCP: []gateway.TCPListener{{Addr: "127.0.0.1:0"}}})
	gatewaytest.DialWS(t, gw, "/", nil)
	tcp, err := net.Dial("tcp", gw.TCPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tcp.Close() })
	require.Eventually(t, func() bool { return gw.Stats().Connections == 2 }, wait, 10*time.Millisecond)

	out, err := exec.Command(ls, "-l", "/proc/self/fd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var sockets []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "socket:") {
			sockets = append(sockets, line)
		}
	}
	require.Empty(t, sockets, "sockets a child process inherited:\n%s", out)
}

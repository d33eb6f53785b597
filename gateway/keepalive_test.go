package gateway_test

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// TestClientSocketKeepAlive reads the TCP keepalive of the sockets the
// gateway accepted, WebSocket and raw TCP: off while the heartbeat runs
// (Go's default, a probe after 15 s of silence on every socket, overflowed
// loopback's backlog at a million connections), Go's 15 s without a
// heartbeat, and TCPKeepAlive's period when it is set.
func TestClientSocketKeepAlive(t *testing.T) {
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	for _, tc := range []struct {
		name string
		cfg  gateway.Config
		idle int // seconds; 0: keepalive off
	}{
		{name: "heartbeat on, default", idle: 0},
		{name: "heartbeat off, default", cfg: gateway.Config{PingInterval: -1}, idle: 15},
		{name: "set", cfg: gateway.Config{TCPKeepAlive: 40 * time.Second}, idle: 40},
		{name: "off", cfg: gateway.Config{PingInterval: -1, TCPKeepAlive: -1}, idle: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.TCP = []gateway.TCPListener{{Addr: "127.0.0.1:0"}}
			gw := gatewaytest.Start(t, e, tc.cfg)
			ws := gatewaytest.DialWS(t, gw, "/", nil)
			tcp, err := net.Dial("tcp", gw.TCPAddr())
			require.NoError(t, err)
			t.Cleanup(func() { _ = tcp.Close() })
			require.Eventually(t, func() bool { return gw.Stats().Connections == 2 }, wait, 10*time.Millisecond)
			for _, client := range []net.Conn{ws.Conn.NetConn(), tcp} {
				on, idle := acceptedKeepAlive(t, client.LocalAddr().(*net.TCPAddr).Port)
				if tc.idle == 0 {
					require.Zero(t, on, "SO_KEEPALIVE of the socket accepted from %v", client.LocalAddr())
					continue
				}
				require.Equal(t, 1, on, "SO_KEEPALIVE of the socket accepted from %v", client.LocalAddr())
				require.Equal(t, tc.idle, idle, "TCP_KEEPIDLE of the socket accepted from %v", client.LocalAddr())
			}
		})
	}
}

// acceptedKeepAlive finds, among this process's sockets, the one whose peer
// is the local port peerPort, and returns its SO_KEEPALIVE and TCP_KEEPIDLE.
func acceptedKeepAlive(t *testing.T, peerPort int) (on, idle int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	for _, entry := range entries {
		fd, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		peer, err := syscall.Getpeername(fd)
		if sa, ok := peer.(*syscall.SockaddrInet4); err != nil || !ok || sa.Port != peerPort {
			continue
		}
		on, err = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		require.NoError(t, err)
		idle, err = syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		require.NoError(t, err)
		return on, idle
	}
	t.Fatalf("no socket of this process has the peer port %d", peerPort)
	return 0, 0
}

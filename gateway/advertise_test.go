package gateway_test

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/pkg/protocol"
)

// infoAddrs is what the gateway's info query answers as its addresses.
func infoAddrs(t *testing.T, s *edge) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	infos, err := s.api.GetGatewayInfos(ctx)
	require.NoError(t, err)
	require.Len(t, infos, 1)
	return infos[0].Addrs
}

// A wildcard listener is advertised as the host's addresses, each one a
// URL with a literal IP a client can dial, never as 0.0.0.0 or [::].
func TestWildcardListenersAreAdvertisedAsHostAddresses(t *testing.T) {
	s := startEdge(t, gateway.Config{WebSocketAddr: "0.0.0.0:0", TCP: []gateway.TCPListener{{Addr: "[::]:0", Codec: protocol.Text{}}}})
	bound := s.gw.Addrs()
	require.Len(t, bound, 2)
	wsHost, wsPort, err := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(bound[0], "ws://"), "/"))
	require.NoError(t, err)
	require.True(t, netip.MustParseAddr(wsHost).IsUnspecified(), "Addrs are the bound addresses: %v", bound)
	_, tcpPort, err := net.SplitHostPort(strings.TrimPrefix(bound[1], "text://"))
	require.NoError(t, err)

	addrs := infoAddrs(t, s)
	require.Equal(t, s.gw.AdvertisedAddrs(), addrs)
	require.Contains(t, addrs, "ws://127.0.0.1:"+wsPort+"/")
	require.Contains(t, addrs, "text://127.0.0.1:"+tcpPort)
	for _, a := range addrs {
		u, err := url.Parse(a)
		require.NoError(t, err, a)
		ip, err := netip.ParseAddr(u.Hostname())
		require.NoError(t, err, "%s: not a literal IP (IPv6 in brackets)", a)
		require.False(t, ip.IsUnspecified(), a)
	}
	// What is advertised is reachable.
	c, err := net.Dial("tcp", "127.0.0.1:"+wsPort)
	require.NoError(t, err)
	c.Close()
}

func TestAdvertiseAddrsReplaceTheBoundAddresses(t *testing.T) {
	want := []string{"wss://chat.example.com/ws", "text://10.1.2.3:7273"}
	s := startEdge(t, gateway.Config{AdvertiseAddrs: want})
	require.Equal(t, want, infoAddrs(t, s))
	require.True(t, strings.HasPrefix(s.gw.Addrs()[0], "ws://127.0.0.1:"), s.gw.Addrs())
}

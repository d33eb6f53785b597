package phptest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway"
	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/worker"
	"github.com/gatewayworker/gatewayworker/worker/workertest"
)

// TestLibGateway runs every GatewayWorker\Lib\Gateway method against two
// real gateways (php/tests/gateway_api.php checks the return values).
func TestLibGateway(t *testing.T) { testStaticGateway(t, "lib") }

// TestGatewayClient does the same with GatewayClient\Gateway, the class
// web apps use, in a PHP process of its own, on a NATS server that gives
// each role only its permissions (docs/security.md): the PHP client gets
// its replies under the api role's inbox.
func TestGatewayClient(t *testing.T) { testStaticGateway(t, "client") }

func testStaticGateway(t *testing.T, class string) {
	phpBin(t)
	var subj bus.Subjects
	var users []bus.EmbeddedUser
	for _, r := range []bus.Role{bus.RoleGateway, bus.RoleWorker, bus.RoleAPI} {
		pub, sub := subj.Permissions(r)
		users = append(users, bus.EmbeddedUser{Name: string(r), Password: string(r) + "-pw", Publish: pub, Subscribe: sub})
	}
	cfg := bus.EmbeddedConfig{}
	env := map[string]string{}
	as := func(r bus.Role) bus.Config { return bus.Config{} }
	if class == "client" {
		cfg.Users = users
		env["NATS_USER"], env["NATS_PASS"] = "api", "api-pw"
		as = func(r bus.Role) bus.Config {
			return bus.Config{User: string(r), Password: string(r) + "-pw", InboxPrefix: subj.Inbox(r)}
		}
	}
	e := bustest.RunServer(t, cfg)
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter, Bus: bustest.Connect(t, e, as(bus.RoleWorker))})
	g1 := gatewaytest.Start(t, e, gateway.Config{ID: "g1", Bus: bustest.Connect(t, e, as(bus.RoleGateway))})
	g2 := gatewaytest.Start(t, e, gateway.Config{ID: "g2", Bus: bustest.Connect(t, e, as(bus.RoleGateway))})
	conns, ids := gatewaytest.DialGreeted(t, g1, g1, g1, g2, g2)

	env["NATS_URL"], env["CLIENT_IDS"] = e.URL(), strings.Join(ids, ",")
	s := runScript(t, env, "gateway_api.php", class)
	s.waitFor("sent")
	want := [][]string{
		{"binary:to-all", "binary:to-ann-42", "binary:to-c0", "binary:to-list", "binary:to-red"}, // setWebSocketType
		{"binary:\xff\x00bin", "to-all", "to-bob"},
		{"to-blue-room", "to-current", "to-current-2"},
		{"to-all", "to-blue-room", "to-bob", "to-red"},
		{"to-all", "to-ann-42", "to-list"},
	}
	for i, c := range conns {
		got := make([]string, 0, len(want[i]))
		for range want[i] {
			msg, binary, err := c.TryReadMessage(5 * time.Second)
			require.NoError(t, err, "client %d after %q", i, got)
			if binary {
				msg = "binary:" + msg
			}
			got = append(got, msg)
		}
		// Sends to a client, a uid, a group and everyone travel on different
		// subjects, handled concurrently by a gateway: only the set is certain.
		slices.Sort(got)
		require.Equal(t, want[i], got, "client %d", i)
	}
	for _, c := range conns {
		c.ExpectSilence(200 * time.Millisecond) // nothing twice, nothing excluded
	}
	s.resume()
	s.pass()

	require.Equal(t, "bye", conns[4].Read(5*time.Second))
	require.Equal(t, "bye-current", conns[2].Read(5*time.Second))
	for _, i := range []int{1, 2, 3, 4} {
		require.Error(t, conns[i].Closed(5*time.Second), "client %d closed", i)
	}
}

// TestPartialAnswers: a gateway that vanished without a goodbye makes PHP
// queries return in bounded time with what the others said, naming it
// (a warning, or PartialAnswerException in strict mode).
func TestPartialAnswers(t *testing.T) {
	phpBin(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{})
	workertest.Start(t, e, worker.Config{Handlers: workertest.Greeter})
	gatewaytest.Start(t, e, gateway.Config{ID: "alive"})
	doomedBus := bustest.Connect(t, e, bus.Config{})
	doomed := gatewaytest.Start(t, e, gateway.Config{ID: "doomed", Bus: doomedBus})
	gatewaytest.DialWS(t, doomed, "/", nil).Read(5 * time.Second)

	s := runScript(t, map[string]string{"NATS_URL": e.URL()}, "partial.php")
	s.waitFor("discovered")
	doomedBus.Close()
	s.resume()
	s.pass()
}

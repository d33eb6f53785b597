package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/testbin"
)

// built is a main package that tests run as a process; testbin builds it
// once for every package's tests (cmd/gatewayworker's too) and every run
// of the same sources.
type built struct{ pkg string }

func (b *built) get(t *testing.T) string { return testbin.Build(t, b.pkg) }

var (
	gatewayworkerBin = &built{pkg: "github.com/gatewayworker/gatewayworker/cmd/gatewayworker"}
	// natsServerBin is nats-server at the version go.mod pins.
	natsServerBin = &built{pkg: "github.com/nats-io/nats-server/v2"}
)

// binary returns the gatewayworker binary.
func binary(t *testing.T) string { return gatewayworkerBin.get(t) }

// proc is a running tier process whose stderr is scanned for lines.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, args...)
}

// startEnv is start with variables added to the environment.
func startEnv(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return startProgram(t, name, binary(t), env, args...)
}

// startProgram starts any program as a tier process.
func startProgram(t *testing.T, name, program string, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // no process outlives a hung test
	cmd := exec.CommandContext(ctx, program, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	p := &proc{name: name, cmd: cmd, lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			select {
			case p.lines <- s.Text():
			default: // nobody waits for this line
			}
		}
		p.done <- cmd.Wait()
		cancel()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitLine returns the first submatch of re in the process's output.
func (p *proc) waitLine(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if m := rx.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		case err := <-p.done:
			t.Fatalf("%s exited (%v) before printing %q", p.name, err, re)
		case <-deadline:
			t.Fatalf("%s did not print %q", p.name, re)
		}
	}
}

// stop sends SIGTERM and returns the exit error.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
		return nil
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type chatClient struct {
	t *testing.T
	c *websocket.Conn
}

func dialChat(t *testing.T, url string) *chatClient {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &chatClient{t: t, c: c}
}

func (c *chatClient) send(m map[string]any) { require.NoError(c.t, c.c.WriteJSON(m)) }

// next returns the next message of one of the types, skipping pings and others.
func (c *chatClient) next(types ...string) map[string]any {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.c.ReadMessage()
		require.NoError(c.t, err)
		var m map[string]any
		require.NoError(c.t, json.Unmarshal(b, &m))
		for _, typ := range types {
			if m["type"] == typ {
				return m
			}
		}
	}
}

// TestTiersAsSeparateProcesses runs `run` (embedded NATS, a gateway and a
// worker), a second gateway and a second worker as three processes, and
// chats across the two gateways; then stops the extra worker and gateway
// with SIGTERM, which must exit cleanly while the chat goes on. run's own
// tiers hand messages to each other in memory only while nothing else is
// connected to its NATS.
func TestTiersAsSeparateProcesses(t *testing.T) {
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	all := start(t, "run", "run", "--nats-port", fmt.Sprint(natsPort), "--nats-store-dir", t.TempDir(), "--ws", "127.0.0.1:0", "--tcp", "", "--http", "", "--metrics", metrics, "--log-level", "warn")
	ws1 := all.waitLine(t, `^\s+websocket\s+(\S+)`)
	gw2 := start(t, "gateway", "gateway", "--nats", natsURL, "--ws", "127.0.0.1:0", "--tcp", "", "--ping-data", `{"type":"ping"}`)
	ws2 := "ws://" + gw2.waitLine(t, `gateway listening.*websocket=(\S+)`) + "/"
	wk2 := start(t, "worker", "worker", "--nats", natsURL, "--app", "chat")
	wk2.waitLine(t, `(worker taking events)`)

	ann, bob := dialChat(t, ws1), dialChat(t, ws2)
	ann.send(map[string]any{"type": "login", "client_name": "Ann", "room_id": 7})
	require.Equal(t, "Ann", ann.next("login")["client_name"])
	bob.send(map[string]any{"type": "login", "client_name": "Bob", "room_id": "7"})
	require.Equal(t, "Bob", ann.next("login")["client_name"], "Ann, on the other gateway, sees Bob arrive")
	list := bob.next("login")
	for list["client_list"] == nil {
		list = bob.next("login")
	}
	require.Len(t, list["client_list"], 2, "the room spans both gateways: %v", list)

	handedOver := metric(t, metrics, "gatewayworker_nats_handed_over_total")
	for i := range 20 {
		ann.send(map[string]any{"type": "say", "to_client_id": "all", "content": fmt.Sprint("m", i)})
	}
	for i := range 20 {
		require.Equal(t, fmt.Sprint("m", i), bob.next("say")["content"], "in order, across processes")
	}
	require.Equal(t, handedOver, metric(t, metrics, "gatewayworker_nats_handed_over_total"),
		"with other processes on its NATS, run hands nothing over in memory")

	require.NoError(t, wk2.stop(t), "a worker stops cleanly on SIGTERM")
	ann.send(map[string]any{"type": "say", "to_client_id": "all", "content": "after worker stop"})
	require.Equal(t, "after worker stop", bob.next("say")["content"])

	require.NoError(t, gw2.stop(t), "a gateway stops cleanly on SIGTERM")
	m := ann.next("logout")
	require.Equal(t, "Bob", m["from_client_name"])
	// run's tiers are the only clients of its NATS again: they hand their
	// messages to each other in memory, behind a fence, and lose none.
	for i := range 20 {
		ann.send(map[string]any{"type": "say", "to_client_id": "all", "content": fmt.Sprint("alone ", i)})
	}
	for i := range 20 {
		require.Equal(t, fmt.Sprint("alone ", i), ann.next("say")["content"], "in order")
	}
	// Those may all have gone through the server while the fence ran.
	require.Eventually(t, func() bool {
		ann.send(map[string]any{"type": "say", "to_client_id": "all", "content": "alone again"})
		require.Equal(t, "alone again", ann.next("say")["content"])
		return metric(t, metrics, "gatewayworker_nats_handed_over_total") > handedOver
	}, 10*time.Second, 20*time.Millisecond, "in memory")
	require.True(t, strings.HasPrefix(ws1, "ws://127.0.0.1:"))
	require.NoError(t, all.stop(t))
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }

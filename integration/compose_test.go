//go:build compose

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// The compose test runs compose.yaml for real: a 3-node NATS cluster, two
// gateways and two workers in containers built FROM scratch, driven by
// clients on the host, with faults injected across container boundaries.
// `go tool task test:compose` runs it; .ci/run runs it when Docker works.

const project = "gwcompose"

func sh(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

func compose(t *testing.T, args ...string) string {
	t.Helper()
	return sh(t, 3*time.Minute, "docker-compose", append([]string{"-p", project, "-f", "../compose.yaml"}, args...)...)
}

// waitEcho waits until a gateway answers an echo through a worker.
func waitEcho(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			err = c.WriteMessage(websocket.TextMessage, []byte("ready?"))
			if err == nil {
				var b []byte
				_, b, err = c.ReadMessage()
				if err == nil && string(b) != "ready?" {
					err = fmt.Errorf("echo %q", b)
				}
			}
			_ = c.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never echoed: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCompose(t *testing.T) {
	bustest.Tool(t, "apt-get install -y docker-compose", "docker-compose")
	if exec.Command("docker", "info").Run() != nil {
		bustest.Missing(t, "no working Docker engine (docker info failed): apt-get install -y docker.io && service docker start")
	}
	// Not compose.yaml's defaults: a stack left up from docs/operations.md's
	// `docker-compose up -d` keeps its ports and network, and so does this one.
	const gwNet = "172.28.6"
	t.Setenv("GWSTACK_NET", gwNet)
	t.Setenv("GWSTACK_GW1_PORT", "27272")
	t.Setenv("GWSTACK_GW2_PORT", "27273")
	sh(t, 5*time.Minute, "bash", "compose/build.sh")
	_ = exec.Command("docker-compose", "-p", project, "-f", "../compose.yaml", "down", "-v", "--remove-orphans").Run()
	compose(t, "up", "-d")
	t.Cleanup(func() {
		if t.Failed() {
			// The gateways and workers say what happened; the NATS nodes
			// mostly repeat that nats1 is gone.
			out, _ := exec.Command("docker-compose", "-p", project, "-f", "../compose.yaml", "logs", "--no-color", "--tail", "60",
				"gw1", "gw2", "worker1", "worker2").CombinedOutput()
			t.Logf("container logs:\n%s", out)
		}
		_ = exec.Command("docker-compose", "-p", project, "-f", "../compose.yaml", "down", "-v", "--remove-orphans").Run()
	})
	gw1, gw2 := "ws://127.0.0.1:27272/", "ws://127.0.0.1:27273/"
	waitEcho(t, gw1)
	waitEcho(t, gw2)

	l1 := startLoad(t, gw1, 10, 10*time.Millisecond)
	l2 := startLoad(t, gw2, 10, 10*time.Millisecond)
	// Recoverable pushes, stored in compose.yaml's R3 stream, must all
	// arrive through the same faults (the echoes above are at most once).
	rg := startRecoverableGroup(t, "rec-1", []string{gw1, gw2}, 5, 20*time.Millisecond)
	time.Sleep(2 * time.Second)

	t.Log("fault: NATS node nats1 SIGKILLed")
	sh(t, time.Minute, "docker", "kill", "-s", "KILL", project+"_nats1_1")
	time.Sleep(4 * time.Second)

	t.Log("fault: gw1 cut off from NATS for 0.5 s, then healed (its clients stay connected)")
	sh(t, time.Minute, "docker", "network", "disconnect", project+"_nats", project+"_gw1_1")
	// Well below the gateway's NATSLossTimeout (2.5 s): TCP needs a moment
	// more to retransmit what the cut swallowed.
	time.Sleep(500 * time.Millisecond)
	sh(t, time.Minute, "docker", "network", "connect", "--ip", gwNet+".11", project+"_nats", project+"_gw1_1")
	time.Sleep(5 * time.Second)

	t.Log("rolling restart of the workers, one by one (SIGTERM drains)")
	compose(t, "restart", "-t", "30", "worker1")
	time.Sleep(2 * time.Second)
	compose(t, "restart", "-t", "30", "worker2")
	time.Sleep(3 * time.Second)

	// A NATS node's death and the partition can make a gateway resend a
	// batch whose ack was lost (at-least-once allows duplicates), and echoes
	// pushed while a gateway was between nodes are lost (pushes are at most
	// once): the echoes of each client's batch in flight then, as in
	// TestG4NATSNodeKilled.
	l1.finishAllowingLoss("compose gw1 (node kill, partition, rolling restart)", true, 0.02)
	l2.finishAllowingLoss("compose gw2 (node kill, rolling restart)", true, 0.02)
	rg.finish("compose recoverable group (node kill, partition, rolling restart)")
}

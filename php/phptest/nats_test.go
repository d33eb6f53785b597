// Package phptest runs the PHP package's test scripts (php/tests) against
// real NATS servers and real gateways started here, so that `go test ./...`
// covers the PHP code. Without a php binary the tests skip, except under
// CI=true, where they fail.
package phptest

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/internal/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// phpBin returns the php binary with the msgpack extension, or skips
// (fails under CI=true).
func phpBin(t *testing.T) string { return bustest.PHP(t, "msgpack") }

// script is a running PHP test script. It talks on stdout: "WAIT <tag>"
// when it needs the test to act (answered by Go with a line on stdin),
// "PASS" at the end; failures go to stderr and the exit status.
type script struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *strings.Builder
	done   chan error
}

func runScript(t *testing.T, env map[string]string, args ...string) *script {
	t.Helper()
	bin := phpBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, append([]string{"-d", "display_errors=stderr"}, args...)...)
	cmd.Dir = filepath.Join("..", "tests")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	s := &script{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 100), stderr: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.done <- cmd.Wait()
	}()
	return s
}

// waitFor reads stdout until the script says "WAIT tag".
func (s *script) waitFor(tag string) {
	s.t.Helper()
	for line := range s.lines {
		if line == "WAIT "+tag {
			return
		}
		s.t.Logf("php: %s", line)
	}
	s.t.Fatalf("php ended before %q: %v\n%s", tag, <-s.done, s.stderr)
}

func (s *script) resume() {
	s.t.Helper()
	_, err := io.WriteString(s.stdin, "go\n")
	require.NoError(s.t, err)
}

// pass waits for the end of the script and fails the test unless it passed.
func (s *script) pass() {
	s.t.Helper()
	var passed bool
	for line := range s.lines {
		if line == "PASS" {
			passed = true
		} else {
			s.t.Logf("php: %s", line)
		}
	}
	err := <-s.done
	if err != nil || !passed {
		s.t.Fatalf("php script failed (%v):\n%s", err, s.stderr)
	}
}

func TestNATSClientPlain(t *testing.T) {
	phpBin(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{MaxPayload: 4096})
	runScript(t, map[string]string{"NATS_URL": e.URL()}, "nats_client.php", "plain").pass()
}

func TestNATSClientToken(t *testing.T) {
	phpBin(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{Token: "s3cret"})
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_TOKEN": "s3cret"}, "nats_client.php", "token").pass()
}

func TestNATSClientUserPassword(t *testing.T) {
	phpBin(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{User: "ann", Password: "p@ss word"})
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_USER": "ann", "NATS_PASS": "p@ss word"}, "nats_client.php", "userpass").pass()
}

func TestNATSClientTLS(t *testing.T) {
	phpBin(t)
	cert, key, _ := bustest.SelfSignedCert(t)
	e := bustest.RunServer(t, bus.EmbeddedConfig{CertFile: cert, KeyFile: key})
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_CA": cert}, "nats_client.php", "tls").pass()
}

func TestNATSClientNKey(t *testing.T) {
	phpBin(t)
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	e := bustest.RunServer(t, bus.EmbeddedConfig{Users: []bus.EmbeddedUser{{NKey: pub}}})
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_SEED": string(seed)}, "nats_client.php", "nkey").pass()
}

// TestNATSClientRoleInbox: under the api role's permissions, replies reach
// a client only under the role's inbox prefix, as bus.Subjects.Inbox says.
func TestNATSClientRoleInbox(t *testing.T) {
	phpBin(t)
	var subj bus.Subjects
	pub, sub := subj.Permissions(bus.RoleAPI)
	e := bustest.RunServer(t, bus.EmbeddedConfig{Users: []bus.EmbeddedUser{
		{Name: "api", Password: "api", Publish: pub, Subscribe: sub},
		{Name: "svc", Password: "svc"},
	}})
	responder := bustest.Connect(t, e, bus.Config{User: "svc", Password: "svc"})
	_, err := responder.Subscribe("gw.q.ping", func(m bus.Msg) { _ = responder.Publish(m.Reply, []byte("pong")) })
	require.NoError(t, err)
	require.NoError(t, responder.Flush(context.Background()))
	runScript(t, map[string]string{"NATS_URL": e.URL(), "NATS_INBOX": subj.Inbox(bus.RoleAPI)}, "nats_client.php", "inbox").pass()
}

// TestNATSClientReconnect: when its server goes away, the client moves to
// the next URL and renews its subscriptions there.
func TestNATSClientReconnect(t *testing.T) {
	phpBin(t)
	first, err := bus.StartEmbedded(bus.EmbeddedConfig{})
	require.NoError(t, err)
	t.Cleanup(first.Shutdown)
	second := bustest.RunServer(t, bus.EmbeddedConfig{})
	responder := bustest.Connect(t, second, bus.Config{})
	_, err = responder.Subscribe("svc.second", func(m bus.Msg) {
		_ = responder.Publish("note", []byte("after"))
		_ = responder.Publish(m.Reply, append([]byte("second:"), m.Data...))
	})
	require.NoError(t, err)
	require.NoError(t, responder.Flush(context.Background()))

	s := runScript(t, map[string]string{"NATS_URL": first.URL(), "NATS_URL2": second.URL()}, "nats_client.php", "reconnect")
	s.waitFor("connected")
	first.Shutdown()
	s.resume()
	s.pass()
}

// TestEnvelopesMatchProtocolDoc: the PHP encoder writes the hex dumps and
// tokens of docs/protocol.md byte for byte (internal/bus/spec_test.go checks the Go
// encoder against the same dumps), and decodes the Go side's.
func TestEnvelopesMatchProtocolDoc(t *testing.T) {
	runScript(t, nil, "envelope.php").pass()
}

// TestNATSClientPings: the client answers the server's PINGs while it
// waits, and a connection the server dropped as stale (a process that did
// not read for a while) is replaced before the next write.
func TestNATSClientPings(t *testing.T) {
	phpBin(t)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		PingInterval: 100 * time.Millisecond, MaxPingsOut: 3})
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))
	runScript(t, map[string]string{"NATS_URL": s.ClientURL()}, "nats_client.php", "ping").pass()
}

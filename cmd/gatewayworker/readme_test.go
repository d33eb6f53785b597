package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// README.md and docs/*.md mark the blocks a test runs with
// <!-- doc-test: NAME --> on the line before the block: the tests here run
// them verbatim, so the documents cannot drift from what the binary does.

// docBlock returns the lines of the fenced block after the marker NAME,
// which exactly one of README.md and docs/*.md holds.
func docBlock(t *testing.T, name string) []string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	require.NoError(t, err)
	var found []string
	var block string
	for _, path := range append([]string{"../../README.md"}, docs...) {
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		_, rest, ok := strings.Cut(string(text), "<!-- doc-test: "+name+" -->\n```")
		if !ok {
			continue
		}
		found = append(found, path)
		_, rest, _ = strings.Cut(rest, "\n") // the fence's language
		block, _, ok = strings.Cut(rest, "\n```\n")
		require.True(t, ok, "%s: block %q is not closed", path, name)
	}
	require.Len(t, found, 1, "README.md and docs/*.md must hold one block marked %q", name)
	return strings.Split(block, "\n")
}

// readmeCommand is one `go run ./cmd/gatewayworker ...` line of the README.
type readmeCommand struct {
	env  []string // NAME=VALUE given before the command
	args []string
}

func parseReadmeCommand(t *testing.T, line string) readmeCommand {
	t.Helper()
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimSuffix(strings.TrimSpace(line), "&")
	words := strings.Fields(line)
	var c readmeCommand
	for len(words) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(words[0]) {
		c.env, words = append(c.env, words[0]), words[1:]
	}
	const goRun = "go run ./cmd/gatewayworker"
	require.True(t, strings.HasPrefix(strings.Join(words, " "), goRun), "not a %s command: %s", goRun, line)
	c.args = words[3:]
	return c
}

// startReadmeCommand runs c in this process, with the environment it
// names plus harness (free ports instead of the README's fixed ones, quiet
// logs), until the test ends; it returns once the command says it serves.
// The README's fixed ports are the defaults, which the harness overrides:
// lines that name a port get the live one from the caller.
func startReadmeCommand(t *testing.T, c readmeCommand, harness map[string]string) {
	t.Helper()
	for _, kv := range c.env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for k, v := range harness {
		t.Setenv(k, v)
	}
	// What each command prints once it serves; gateway and worker print
	// nothing then (the caller waits for what it needs).
	ready, known := map[string]string{"run": "Press Ctrl-C", "nats": "Press Ctrl-C", "api": "gatewayworker api: http://",
		"gateway": "", "worker": ""}[c.args[0]]
	require.True(t, known, "no readiness line known for %q", c.args[0])
	ctx, cancel := context.WithCancel(context.Background())
	var out bustest.LogBuffer
	done := make(chan error, 1)
	go func() { done <- dispatch(ctx, c.args, &out, &out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("%v did not stop", c.args)
		}
	})
	if ready == "" {
		return
	}
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
			return strings.Contains(out.String(), ready)
		}
	}, 15*time.Second, 10*time.Millisecond)
	require.Contains(t, out.String(), ready, "%v stopped:\n%s", c.args, out.String())
}

// readmeHarness gives the README's commands a token directory of the
// test's own and free ports in place of the fixed ones: the embedded NATS
// port, the gateway's WebSocket address, and the environment for them.
func readmeHarness(t *testing.T) (natsPort, ws string, env map[string]string) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	natsPort, ws = freeAddr(t)[len("127.0.0.1:"):], freeAddr(t)
	return natsPort, ws, map[string]string{"GW_NATS_PORT": natsPort, "GW_WS": ws, "GW_TCP": "127.0.0.1:0", "GW_LOG_LEVEL": "error"}
}

// TestReadmeHTTPAPISession starts what docs/http-api.md's "The same with
// the binary" starts, connects two WebSocket clients, and runs its session
// with bash and the real curl: each command's output and status must be
// the document's (client ids with the live boot; error bodies by code).
func TestReadmeHTTPAPISession(t *testing.T) {
	bustest.Tool(t, "apt-get install -y curl", "curl")
	natsPort, ws, harness := readmeHarness(t)
	api := freeAddr(t)
	start := docBlock(t, "http-api start")
	require.Len(t, start, 2)
	startReadmeCommand(t, parseReadmeCommand(t, start[0]), harness)
	startReadmeCommand(t, parseReadmeCommand(t, start[1]), map[string]string{
		"GW_NATS": "nats://127.0.0.1:" + natsPort, "GW_LISTEN": api})

	var clients []*websocket.Conn
	for range 2 {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+ws+"/", nil)
		require.NoError(t, err)
		defer c.Close()
		clients = append(clients, c)
	}

	// The session's lines: exports and the gw function make the preamble
	// of every command; $GW is then pointed at the live API.
	var preamble []string
	type step struct {
		command string
		output  []string
	}
	var steps []step
	for _, line := range docBlock(t, "http-api session") {
		switch {
		case strings.HasPrefix(line, "$ export "), strings.HasPrefix(line, "$ gw() "):
			preamble = append(preamble, line[2:])
		case strings.HasPrefix(line, "$ "):
			steps = append(steps, step{command: line[2:]})
		default:
			require.NotEmpty(t, steps, "output before any command: %s", line)
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, line)
		}
	}
	require.GreaterOrEqual(t, len(steps), 5)
	preamble = append(preamble, "GW=http://"+api)
	bash := func(command string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "bash", "-c", strings.Join(append(preamble, command), "\n")).CombinedOutput()
		return string(out), err
	}

	// The clients' ids, to put the live boot in the README's.
	var ids struct {
		ClientIDs []string `json:"client_ids"`
	}
	var out string
	for deadline := time.Now().Add(10 * time.Second); len(ids.ClientIDs) != 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ = bash("gw $GW/v1/clients")
		_ = json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ids)
	}
	require.Len(t, ids.ClientIDs, 2, "gw $GW/v1/clients with the README's key and set-up:\n%s", out)
	live := strings.NewReplacer("mihyrchs", strings.Split(ids.ClientIDs[0], "-")[1])

	for _, st := range steps {
		out, err := bash(live.Replace(st.command))
		require.NoError(t, err, "%s\n%s", st.command, out)
		got := strings.Split(strings.TrimRight(out, "\n"), "\n")
		want := strings.Split(live.Replace(strings.Join(st.output, "\n")), "\n")
		require.Len(t, got, len(want), "%s\ngot: %q", st.command, got)
		for i := range want {
			require.NoError(t, sameLine(want[i], got[i]), st.command)
		}
	}

	read := func(c *websocket.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ReadMessage()
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "hi room", read(clients[0]))
	require.Equal(t, "you have mail", read(clients[1]))
}

// sameLine compares a line of output with the README's: JSON as JSON,
// error bodies by their code (messages are for people), the rest exactly.
func sameLine(want, got string) error {
	if !strings.HasPrefix(want, "{") {
		if want != got {
			return fmt.Errorf("got %q, README shows %q", got, want)
		}
		return nil
	}
	var w, g map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return fmt.Errorf("README's output %s: %w", want, err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Errorf("output %s: %w", got, err)
	}
	if we, ok := w["error"].(map[string]any); ok {
		ge, _ := g["error"].(map[string]any)
		if ge == nil || ge["code"] != we["code"] {
			return fmt.Errorf("got %s, README shows error code %v", got, we["code"])
		}
		return nil
	}
	wj, _ := json.Marshal(w)
	gj, _ := json.Marshal(g)
	if string(wj) != string(gj) {
		return fmt.Errorf("got %s, README shows %s", got, want)
	}
	return nil
}

// TestReadmeListsEveryTask: the README's `go tool task --list` line names
// every task of Taskfile.yml, in its order, and its Go version is go.mod's.
// Taskfile.yml must also parse as YAML, each task with a description: a ": "
// in an unquoted one broke every `go tool task` for a day while the tests
// passed.
func TestReadmeListsEveryTask(t *testing.T) {
	taskfile, err := os.ReadFile("../../Taskfile.yml")
	require.NoError(t, err)
	var parsed struct {
		Tasks map[string]struct{ Desc string }
	}
	require.NoError(t, yaml.Unmarshal(taskfile, &parsed), "Taskfile.yml is not valid YAML: go tool task would refuse it")
	var tasks []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z:]+):$`).FindAllStringSubmatch(string(taskfile), -1) {
		tasks = append(tasks, m[1])
		require.NotEmpty(t, parsed.Tasks[m[1]].Desc, "task %s has no desc", m[1])
	}
	require.Len(t, parsed.Tasks, len(tasks))
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile(`go tool task --list +# (.*)`).FindStringSubmatch(string(readme))
	require.NotNil(t, m, "README has no task list")
	require.Equal(t, strings.Join(tasks, ", "), m[1])

	gomod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(gomod))
	require.NotNil(t, goLine)
	require.Contains(t, string(readme), "Go "+goLine[1]+" or newer is needed")
}

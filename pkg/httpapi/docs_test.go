package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/gateway/gatewaytest"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
	"github.com/gatewayworker/gatewayworker/pkg/httpapi"
)

// docBoot is the boot part of the client ids the curl session of
// docs/http-api.md shows; the test puts the live gateway's in its place.
const docBoot = "mihyrchs"

// TestDocsCurlSession runs the curl session of docs/http-api.md, command by
// command, with the real curl against a real stack, and compares each
// output and status with the one the document shows. Error bodies are
// compared by code: their messages are for people and may change.
func TestDocsCurlSession(t *testing.T) {
	c1, c2 := runCurlSession(t, "../../docs/http-api.md", 15)
	// What the WebSocket clients received. Pushes to a group and to a uid
	// travel on different subjects: only their set is certain, not their order.
	var got []string
	for range 4 {
		got = append(got, c1.Read(wait))
	}
	require.ElementsMatch(t, []string{"hello", "hi room", "you have mail", "1 of 2"}, got)
	require.Equal(t, "bye", c2.Read(wait))
	require.Error(t, c2.Closed(wait))
}

// The document's shorter session ("The same with the binary") runs against
// the real binary: cmd/gatewayworker's TestReadmeHTTPAPISession.

// runCurlSession runs the first console block of a document, command by
// command, with the real curl against a real stack holding two WebSocket
// clients, and returns the clients.
func runCurlSession(t *testing.T, doc string, minSteps int) (c1, c2 *gatewaytest.WS) {
	t.Helper()
	curl := bustest.Tool(t, "apt-get install -y curl", "curl")
	steps, fn := readCurlSession(t, doc)
	require.GreaterOrEqual(t, len(steps), minSteps)

	const key = "secret-key"
	s := newStack(t, stackConfig{http: httpapi.Config{Keys: []string{key}}})
	c1, id1 := s.dial()
	c2, id2 := s.dial()
	boot := strings.Split(id1, "-")[1]
	require.Equal(t, "gw1-"+boot+"-1", id1, "client ids as the document shows them")
	require.Equal(t, "gw1-"+boot+"-2", id2)
	live := strings.NewReplacer(docBoot, boot)
	vars := map[string]string{"GW": s.srv.URL, "KEY": key}

	for _, st := range steps {
		args := shellWords(t, live.Replace(st.command), vars)
		require.NotEmpty(t, args)
		switch args[0] {
		case "gw":
			args = append(shellWords(t, fn, vars), args[1:]...)
		case "curl":
		default:
			t.Fatalf("not a curl command: %s", st.command)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, curl, args[1:]...).CombinedOutput()
		cancel()
		require.NoError(t, err, "%s\n%s", st.command, out)
		got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		want := strings.Split(live.Replace(strings.Join(st.output, "\n")), "\n")
		require.Len(t, got, len(want), "%s\ngot:\n%s", st.command, out)
		for i := range want {
			sameOutputLine(t, st.command, want[i], got[i])
		}
	}
	return c1, c2
}

type curlStep struct {
	command string
	output  []string
}

// readCurlSession returns the commands of the first console block of the
// document, with the output each shows, and the curl arguments of the gw
// shell function it defines.
func readCurlSession(t *testing.T, path string) (steps []curlStep, fn string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	define := regexp.MustCompile(`^gw\(\) \{ (curl .*) "\$@"; \}$`)
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == "```console":
			in = true
		case !in:
		case line == "```":
			require.NotEmpty(t, fn, "the gw function is defined")
			return steps, fn
		case strings.HasPrefix(line, "$ export "):
		case strings.HasPrefix(line, "$ gw() "):
			m := define.FindStringSubmatch(line[2:])
			require.NotNil(t, m, line)
			fn = m[1]
		case strings.HasPrefix(line, "$ "):
			steps = append(steps, curlStep{command: line[2:]})
		default:
			require.NotEmpty(t, steps, "output before any command: %s", line)
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, line)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("no console block")
	return nil, ""
}

// sameOutputLine compares one line of output: JSON as JSON (error bodies
// by code), anything else exactly.
func sameOutputLine(t *testing.T, command, want, got string) {
	t.Helper()
	var w, g map[string]any
	if !strings.HasPrefix(want, "{") {
		require.Equal(t, want, got, command)
		return
	}
	require.NoError(t, json.Unmarshal([]byte(want), &w), "%s: the document's output: %s", command, want)
	require.NoError(t, json.Unmarshal([]byte(got), &g), "%s: %s", command, got)
	if we, ok := w["error"].(map[string]any); ok {
		ge, ok := g["error"].(map[string]any)
		require.True(t, ok, "%s: want an error, got %s", command, got)
		require.Equal(t, we["code"], ge["code"], command)
		require.NotEmpty(t, ge["message"], command)
		return
	}
	require.Equal(t, w, g, command)
}

// shellWords splits a command line as sh would, for the quoting the
// document uses: single quotes, double quotes with $VAR, bare words with
// $VAR.
func shellWords(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	expand := func(s string) string {
		return os.Expand(s, func(name string) string {
			v, ok := vars[name]
			require.True(t, ok, "unknown variable $%s in %s", name, line)
			return v
		})
	}
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; ch {
		case ' ', '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			require.GreaterOrEqual(t, end, 0, "unclosed ' in %s", line)
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case '"':
			end := strings.IndexByte(line[i+1:], '"')
			require.GreaterOrEqual(t, end, 0, "unclosed \" in %s", line)
			cur.WriteString(expand(line[i+1 : i+1+end]))
			i += end + 1
			inWord = true
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t'\"", rune(line[j])) {
				j++
			}
			cur.WriteString(expand(line[i:j]))
			i = j - 1
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

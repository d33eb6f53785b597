package chat_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gatewayworker/gatewayworker/bus"
	"github.com/gatewayworker/gatewayworker/internal/bus/bustest"
)

// startPHPChatWorker runs workerman-chat's Events.php (php/examples/chat)
// in a PHP BusinessWorker of two processes on natsURL, through the PHP
// integration tests' start script, and waits until both take events. It
// stops (SIGTERM, the drain) when the test ends.
func startPHPChatWorker(t *testing.T, php, natsURL string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", "php"))
	require.NoError(t, err)
	cmd := exec.Command(php, "-d", "display_errors=stderr", filepath.Join(root, "tests", "workers", "start.php"))
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "WORKERS=2", "EVENTS_PHP="+filepath.Join(root, "examples", "chat", "Events.php"))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	ready := make(chan struct{}, 2)
	go func() {
		defer close(exited)
		taking := regexp.MustCompile(`worker \d+ taking events`)
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			t.Log("php: " + sc.Text()) // the test is still running: the worker stops in its cleanup
			if taking.MatchString(sc.Text()) {
				ready <- struct{}{}
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("the PHP worker did not stop on SIGTERM")
		}
	})
	for range 2 {
		select {
		case <-ready:
		case <-exited:
			t.Fatal("the PHP worker exited before it took events")
		case <-time.After(startTimeout):
			t.Fatal("the PHP worker did not take events in time")
		}
	}
}

// TestBrowserChatPHPWorker drives the chat page in two headless Chromiums
// against workerman-chat's unchanged Events.php, run by the PHP
// BusinessWorker behind a real gateway: both log in, see each other, say
// something to the room and to each other in private.
func TestBrowserChatPHPWorker(t *testing.T) {
	exe := chromiumPath(t)
	php := bustest.PHP(t, "msgpack", "pcntl")
	deadline := time.Now().Add(browserBudget)
	pageURL := startChatServerWith(t, func(e *bus.Embedded) { startPHPChatWorker(t, php, e.URL()) })

	ann := newTab(t, exe, "Ann", deadline)
	bob := newTab(t, exe, "Bob", deadline)
	saveOnFailure(t, ann, bob)

	bothJoinRoom1(ann, bob, pageURL)

	ann.say("Hi Bob, from PHP!")
	bob.waitFor("Ann's public message", hasLine("msg", "Ann", "Hi Bob, from PHP!"))
	ann.waitFor("Ann's own copy", hasLine("msg self", "Ann", "Hi Bob, from PHP!"))

	bob.choose("Ann")
	bob.say("psst, Ann")
	ann.waitFor("Bob's private message", hasLine("msg private", "Bob → you", "psst, Ann"))
	bob.waitFor("Bob's private copy", hasLine("msg self private", "you → Ann", "psst, Ann"))
	bob.everyone()
	bob.say("lines & <b>markup</b>")
	ann.waitFor("Bob's public message", hasLine("msg", "Bob", "lines & <b>markup</b>"))

	ann.choose("Bob")
	ann.say("psst, Bob")
	bob.waitFor("Ann's private message", hasLine("msg private", "Ann → you", "psst, Bob"))

	for _, tb := range []*tab{ann, bob} {
		require.Empty(t, tb.dialogsSeen(), "%s: the page opened a dialog", tb.name)
		require.Empty(t, tb.problemsSeen(), "%s: exceptions or errors in the console", tb.name)
		require.Equal(t, "online", tb.state(), tb.name)
	}
}

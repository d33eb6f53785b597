package gateway

import (
	"syscall"

	"github.com/lesismal/nbio"
)

// closeOnExec marks a client's socket close-on-exec. nbio v1.6.8 polls a
// syscall.Dup of each accepted socket, and dup(2) drops the flag Go's
// accept set: every process started while the client was connected (a
// program embedding the gateway that runs os/exec, the tests' php and
// chromium) inherited the socket. The kernel then kept it, and its epoll
// registration, after the gateway closed it, and a later connection given
// the same descriptor number was closed by that stale registration (1006
// for the client). A fork between nbio's Dup and this call can still
// inherit one socket; only nbio can close that window (dup3 with
// O_CLOEXEC).
func closeOnExec(c *nbio.Conn) {
	if c != nil {
		syscall.CloseOnExec(c.Hash())
	}
}

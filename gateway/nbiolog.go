package gateway

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/lesismal/nbio/logging"

	"github.com/gatewayworker/gatewayworker/internal/ratelog"
)

// nbio's logger is process-wide and logs at INFO to stderr by default. The
// first gateway routes it, once, to slog.Default() at warning level and
// above, so nbio's few messages land where ours do, in the format the
// process chose. Nearly all of them are about one client's connection (a
// failed accept, a peer that went away): they are rate-limited like our
// own client-caused lines, so a flood of connections is not a flood of logs.
var nbioLogOnce sync.Once

func routeNbioLogs() {
	nbioLogOnce.Do(func() { logging.SetLogger(&nbioLogger{lim: ratelog.Limiter{Burst: 10}}) })
}

type nbioLogger struct{ lim ratelog.Limiter }

func (*nbioLogger) Debug(string, ...any) {}
func (*nbioLogger) Info(string, ...any)  {}
func (l *nbioLogger) Warn(format string, v ...any) {
	l.lim.Log(slog.Default(), slog.LevelWarn, fmt.Sprintf(format, v...), "component", "nbio")
}

func (l *nbioLogger) Error(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelError
	if strings.Contains(msg, "addConn") {
		// A connection the gateway refused in its open handler (over
		// MaxConnections, already logged as such) is closed before nbio
		// polls it, and nbio reports that as a failed addConn: expected.
		level = slog.LevelDebug
	}
	l.lim.Log(slog.Default(), level, msg, "component", "nbio")
}

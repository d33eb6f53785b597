package gateway

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/lesismal/nbio/logging"
)

// nbio's logger is process-wide and logs at INFO to stderr by default. The
// first gateway routes it, once, to slog.Default() at warning level and
// above, so nbio's few messages land where ours do.
var nbioLogOnce sync.Once

func routeNbioLogs() {
	nbioLogOnce.Do(func() { logging.SetLogger(nbioLogger{}) })
}

type nbioLogger struct{}

func (nbioLogger) Debug(string, ...any) {}
func (nbioLogger) Info(string, ...any)  {}
func (nbioLogger) Warn(format string, v ...any) {
	slog.Default().Warn(fmt.Sprintf(format, v...), "component", "nbio")
}
func (nbioLogger) Error(format string, v ...any) {
	slog.Default().Error(fmt.Sprintf(format, v...), "component", "nbio")
}

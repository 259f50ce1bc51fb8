package bus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// newWatermillLogger adapts slog for watermill. Watermill logs lifecycle
// and per-message steps at Info and Debug; they move down a level (Info to
// Debug, Debug to Trace) so that a production log at Info shows only
// errors and what the bus itself reports.
func newWatermillLogger(l *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(l, map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelDebug: watermill.LevelTrace,
	})
}

// serverLogger adapts slog for the embedded nats-server. Its notices (the
// start-up banner, JetStream recovery) are debug here: the bus logs one
// line when it is open.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) log(level slog.Level, format string, v ...any) {
	if s.l.Enabled(context.Background(), level) {
		s.l.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

func (s serverLogger) Noticef(format string, v ...any) { s.log(slog.LevelDebug, format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.log(slog.LevelWarn, format, v...) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.log(slog.LevelError, format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.log(slog.LevelError, format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.log(slog.LevelDebug, format, v...) }
func (s serverLogger) Tracef(format string, v ...any)  { s.log(watermill.LevelTrace, format, v...) }

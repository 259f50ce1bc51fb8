package bus

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/ThreeDotsLabs/watermill"
)

// newWatermillLogger adapts slog for watermill. Watermill logs lifecycle
// and per-message steps at Info and Debug; they move down a level (Info to
// Debug, Debug to Trace) so that a production log at Info shows only
// errors and what the bus itself reports.
//
// Watermill's own slog adapter turns every call's fields into attributes
// before slog checks the level: for the per-message Trace lines that nobody
// reads that was 3 % of a busy node's CPU. This one asks first.
func newWatermillLogger(l *slog.Logger) watermill.LoggerAdapter {
	return wmLogger{l: l}
}

type wmLogger struct{ l *slog.Logger }

func (w wmLogger) log(level slog.Level, msg string, fields watermill.LogFields, extra ...any) {
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return
	}
	w.l.Log(ctx, level, msg, args(fields, extra...)...)
}

// args renders watermill's fields as slog's key-value pairs, sorted by key
// (a map has no order, a log line should), then extra.
func args(fields watermill.LogFields, extra ...any) []any {
	out := make([]any, 0, 2*len(fields)+len(extra))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		out = append(out, k, fields[k])
	}
	return append(out, extra...)
}

func (w wmLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.log(slog.LevelError, msg, fields, "err", err)
}
func (w wmLogger) Info(msg string, fields watermill.LogFields) {
	w.log(slog.LevelDebug, msg, fields)
}
func (w wmLogger) Debug(msg string, fields watermill.LogFields) {
	w.log(watermill.LevelTrace, msg, fields)
}
func (w wmLogger) Trace(msg string, fields watermill.LogFields) {
	w.log(watermill.LevelTrace, msg, fields)
}
func (w wmLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return wmLogger{l: w.l.With(args(fields)...)}
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

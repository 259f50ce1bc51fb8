package bus

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
)

func TestWatermillLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newWatermillLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	fields := watermill.LogFields{"topic": "inbound", "handler": "ingest"}
	l.Info("subscribed", fields)
	l.Debug("message received", fields)
	l.Trace("message acked", fields)
	if buf.Len() != 0 {
		t.Fatalf("at Info, watermill's Info/Debug/Trace are below the level; logged %q", buf.String())
	}
	l.With(watermill.LogFields{"router": "core"}).Error("handler failed", errors.New("boom"), fields)
	want := `level=ERROR msg="handler failed" router=core handler=ingest topic=inbound err=boom`
	if got := strings.TrimSpace(buf.String()); !strings.HasSuffix(got, want) {
		t.Errorf("error line = %q, want it to end with %q (fields sorted, err last)", got, want)
	}

	buf.Reset()
	l = newWatermillLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: watermill.LevelTrace})))
	l.Info("subscribed", nil)
	l.Debug("message received", nil)
	l.Trace("message acked", nil)
	for _, want := range []string{`level=DEBUG msg=subscribed`, `level=DEBUG-4 msg="message received"`, `level=DEBUG-4 msg="message acked"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log %q lacks %q", buf.String(), want)
		}
	}
}

// A disabled level costs nothing: the per-message Trace lines are most of
// what watermill logs.
func TestWatermillLoggerDisabledDoesNotAllocate(t *testing.T) {
	l := newWatermillLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	fields := watermill.LogFields{"message_uuid": "x", "topic": "events", "handler": "inbox"}
	if n := testing.AllocsPerRun(100, func() { l.Trace("message acked", fields) }); n != 0 {
		t.Errorf("Trace below the level allocates %v times per call", n)
	}
}

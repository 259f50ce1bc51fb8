// Package wsframe is what the two websockets (agent console, web chat
// visitor) share: the client frame decoder, a JSON writer safe for
// concurrent use, a per-socket flood limiter and the close codes.
package wsframe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// MaxFrame bounds one client frame; a larger one closes the socket with
// 1009 (message too big).
const MaxFrame = 64 << 10

// CloseUnauthorized closes a socket whose token was revoked or expired.
const CloseUnauthorized websocket.StatusCode = 4401

// Frame is any client frame; Type says which fields matter.
type Frame struct {
	Type           string              `json:"type"`
	ClientID       string              `json:"client_id,omitempty"`
	Text           string              `json:"text,omitempty"`
	Parts          []conv.Part         `json:"parts,omitempty"`
	AfterSeq       int64               `json:"after_seq,omitempty"`
	Cursor         int64               `json:"cursor,omitempty"`
	ConversationID conv.ConversationID `json:"conversation_id,omitempty"`
	Typing         bool                `json:"typing,omitempty"`
	Status         string              `json:"status,omitempty"`
}

// ErrBadFrame wraps every reason Decode refuses a frame.
var ErrBadFrame = errors.New("bad frame")

// Decode parses one client frame. It never panics; anything but a JSON
// object with a known-shaped "type" is ErrBadFrame with the reason.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if len(b) > MaxFrame {
		return f, fmt.Errorf("%w: %d bytes, at most %d", ErrBadFrame, len(b), MaxFrame)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Frame{}, fmt.Errorf("%w: not a valid frame: %v", ErrBadFrame, err)
	}
	if dec.More() {
		return Frame{}, fmt.Errorf("%w: trailing data after the frame", ErrBadFrame)
	}
	switch {
	case f.Type == "":
		return Frame{}, fmt.Errorf("%w: missing type", ErrBadFrame)
	case len(f.Type) > 32:
		return Frame{}, fmt.Errorf("%w: type too long", ErrBadFrame)
	case len(f.ClientID) > 128:
		return Frame{}, fmt.Errorf("%w: client_id longer than 128 bytes", ErrBadFrame)
	case f.AfterSeq < 0 || f.Cursor < 0:
		return Frame{}, fmt.Errorf("%w: negative after_seq or cursor", ErrBadFrame)
	}
	return f, nil
}

// Conn is a websocket with a write lock: several goroutines send on it.
type Conn struct {
	ws *websocket.Conn
	mu sync.Mutex
}

// New wraps ws and sets the read limit.
func New(ws *websocket.Conn) *Conn {
	ws.SetReadLimit(MaxFrame)
	return &Conn{ws: ws}
}

// WS is the underlying socket.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// Send writes v as one JSON text frame, within 10 seconds.
func (c *Conn) Send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// SendRaw writes b, already encoded JSON, as one text frame within 10
// seconds.
func (c *Conn) SendRaw(ctx context.Context, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// EventFrame encodes {"type":"event","cursor":cursor,"event":event} around
// event, an encoded JSON object, without decoding it again (json.Marshal
// would re-validate and compact it, a large share of a busy console's
// CPU). cursor 0 is left out.
func EventFrame(cursor int64, event []byte) []byte {
	b := make([]byte, 0, len(event)+48)
	b = append(b, `{"type":"event",`...)
	if cursor != 0 {
		b = append(b, `"cursor":`...)
		b = strconv.AppendInt(b, cursor, 10)
		b = append(b, ',')
	}
	b = append(b, `"event":`...)
	b = append(b, event...)
	return append(b, '}')
}

// Error sends an error frame; the socket stays open.
func (c *Conn) Error(ctx context.Context, code, msg string) error {
	return c.Send(ctx, map[string]string{"type": "error", "code": code, "message": msg})
}

// Limiter is a token bucket: Rate frames a second sustained, Burst at once.
type Limiter struct {
	Rate   float64
	Burst  float64
	tokens float64
	last   time.Time
}

// Allow takes a token at now, reporting whether there was one.
func (l *Limiter) Allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens, l.last = l.Burst, now
	}
	l.tokens = min(l.Burst, l.tokens+now.Sub(l.last).Seconds()*l.Rate)
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

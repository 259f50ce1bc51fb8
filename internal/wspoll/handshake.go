package wspoll

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Options shape one connection.
type Options struct {
	// MaxMessage bounds a message, fragments summed; a larger one closes
	// the connection with 1009. Default 64 KiB, at most 64 MiB.
	MaxMessage int
	// WriteTimeout bounds a write whose context has no deadline, and the
	// handshake response. Default 10 s.
	WriteTimeout time.Duration
	// CloseTimeout is how long a served connection waits for the peer's
	// close frame after sending its own. Default 5 s.
	CloseTimeout time.Duration
}

const (
	defaultMaxMessage = 64 << 10
	maxMaxMessage     = 64 << 20
)

func (o *Options) setDefaults() {
	if o.MaxMessage == 0 {
		o.MaxMessage = defaultMaxMessage
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 5 * time.Second
	}
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	switch {
	case o.MaxMessage < 0 || o.MaxMessage > maxMaxMessage:
		return fmt.Errorf("wspoll: MaxMessage %d not in 0..%d: %w", o.MaxMessage, maxMaxMessage, conv.ErrInvalid)
	case o.WriteTimeout < 0 || o.CloseTimeout < 0:
		return fmt.Errorf("wspoll: negative timeout: %w", conv.ErrInvalid)
	}
	return nil
}

// acceptGUID is the key suffix of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Upgrade answers a websocket handshake (RFC 6455 section 4.2) and takes
// the connection over from net/http. A request that is not a version-13
// websocket GET gets 405, 426 or 400 with the reason, and the error wraps
// conv.ErrInvalid. It checks no Origin and negotiates no subprotocol or
// extension: the caller checks the origin before calling.
//
// Bytes the client sent right behind its request (a pipelined first
// frame) are kept for the parser; nothing of net/http's buffers is kept.
// The Conn is inert until Poller.Serve; close it if Serve is not called.
// The request's context ends when the handler returns: do not use it for
// the connection's lifetime.
func Upgrade(w http.ResponseWriter, r *http.Request, opts Options) (*Conn, error) {
	if err := opts.Validate(); err != nil {
		http.Error(w, "websocket: server misconfigured", http.StatusInternalServerError)
		return nil, fmt.Errorf("wspoll.Upgrade: %w", err)
	}
	opts.setDefaults()
	if code, msg := checkRequest(w.Header(), r); code != 0 {
		http.Error(w, msg, code)
		return nil, fmt.Errorf("wspoll.Upgrade: %s: %w", msg, conv.ErrInvalid)
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket: cannot take over the connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("wspoll.Upgrade: hijack: %v: %w", err, conv.ErrUnavailable)
	}
	var leftover []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		leftover = bytes.Clone(b)
	}
	// From here on only nc is kept: net/http's 4 KiB reader and writer
	// become garbage when this function returns.
	if err := nc.SetDeadline(time.Time{}); err != nil { // the server's ReadTimeout/WriteTimeout
		_ = nc.Close()
		return nil, fmt.Errorf("wspoll.Upgrade: %w", err)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
	_ = nc.SetWriteDeadline(time.Now().Add(opts.WriteTimeout))
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("wspoll.Upgrade: write response: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return newConn(nc, opts, leftover), nil
}

// checkRequest returns the status and reason refusing r, or 0. It sets
// the response headers RFC 6455 asks for alongside a refusal.
func checkRequest(h http.Header, r *http.Request) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		h.Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, "websocket: the handshake must be a GET"
	case !r.ProtoAtLeast(1, 1):
		return http.StatusUpgradeRequired, "websocket: the handshake needs HTTP/1.1"
	case !hasToken(r.Header, "Connection", "upgrade"):
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, `websocket: Connection header must contain "Upgrade"`
	case !hasToken(r.Header, "Upgrade", "websocket"):
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, `websocket: Upgrade header must contain "websocket"`
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		h.Set("Sec-WebSocket-Version", "13")
		return http.StatusUpgradeRequired, "websocket: only Sec-WebSocket-Version 13 is supported"
	}
	key := r.Header.Values("Sec-WebSocket-Key")
	if len(key) != 1 {
		return http.StatusBadRequest, "websocket: exactly one Sec-WebSocket-Key is required"
	}
	if b, err := base64.StdEncoding.DecodeString(key[0]); err != nil || len(b) != 16 {
		return http.StatusBadRequest, "websocket: Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return 0, ""
}

// hasToken reports whether a comma-separated header lists token, in any case.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

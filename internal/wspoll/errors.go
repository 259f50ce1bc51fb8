package wspoll

import (
	"errors"
	"fmt"
)

// ErrClosed is wrapped by every error of an operation on a connection that
// this side closed (Close, CloseNow, a failed write), and by the OnClose
// reason when this side ended the connection.
var ErrClosed = errors.New("wspoll: connection closed")

// ErrPollerClosed is returned by Serve after Poller.Close, and wrapped by
// the OnClose reason of the connections Poller.Close ended.
var ErrPollerClosed = errors.New("wspoll: poller closed")

// CloseError is a close status: the one the peer sent (the OnClose reason
// is then a bare CloseError), or the one this side sent (then wrapped with
// ErrClosed, or with conv.ErrInvalid for a protocol violation by the peer).
type CloseError struct {
	Code   int
	Reason string
}

func (e CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("websocket closed with status %d", e.Code)
	}
	return fmt.Sprintf("websocket closed with status %d: %s", e.Code, e.Reason)
}

// CloseStatus is the close code err carries, or -1 when it carries none.
func CloseStatus(err error) int {
	var ce CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

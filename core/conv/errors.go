package conv

import "errors"

// Error kinds. Every layer wraps one of these with its operation,
// fmt.Errorf("ingest.Accept %s: %w", id, conv.ErrNotFound), and each edge
// (HTTP, websocket, CLI, bus) translates the kind in one place.
var (
	// ErrNotFound: the thing does not exist for this tenant. An id that belongs
	// to another tenant is also ErrNotFound, never ErrForbidden.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with existing state (a duplicate key).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the input is malformed; retrying the same input cannot help.
	ErrInvalid = errors.New("invalid")
	// ErrForbidden: the caller is known but may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: the caller could not be authenticated.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: a dependency is down; retrying later can help.
	ErrUnavailable = errors.New("unavailable")
	// ErrRateLimited: the caller is over a limit; retrying later can help.
	ErrRateLimited = errors.New("rate limited")
)

// Permanent reports whether retrying the operation that returned err cannot
// succeed: the input itself is wrong. The bus sends such messages to the
// poison queue at once instead of retrying them.
func Permanent(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden)
}

package mail

import (
	"errors"
	"fmt"
	"io"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Limits bound what Parse reads and keeps. A zero field takes its value from
// DefaultLimits, so Limits{} is usable.
type Limits struct {
	// MaxBytes caps the raw message as read from the reader (RFC822.SIZE
	// should be checked against it before fetching).
	MaxBytes int64
	// MaxParts caps the number of MIME entities, the root and every
	// multipart container included.
	MaxParts int
	// MaxDepth caps multipart nesting; the root is depth 0.
	MaxDepth int
	// MaxHeaderBytes caps each header block (the message's and every
	// part's, a multipart preamble counted with its first part).
	MaxHeaderBytes int
	// MaxAttachmentBytes caps one decoded attachment or body part.
	MaxAttachmentBytes int64
}

// DefaultLimits are the limits of the email connector: 25 MiB like most
// providers' sending limit, 100 parts, 10 levels, 64 KiB of header.
var DefaultLimits = Limits{
	MaxBytes:           25 << 20,
	MaxParts:           100,
	MaxDepth:           10,
	MaxHeaderBytes:     64 << 10,
	MaxAttachmentBytes: 25 << 20,
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultLimits.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultLimits.MaxHeaderBytes
	}
	if l.MaxAttachmentBytes <= 0 {
		l.MaxAttachmentBytes = DefaultLimits.MaxAttachmentBytes
	}
	return l
}

// Validate reports a negative limit; zero means "default".
func (l Limits) Validate() error {
	if l.MaxBytes < 0 || l.MaxParts < 0 || l.MaxDepth < 0 || l.MaxHeaderBytes < 0 || l.MaxAttachmentBytes < 0 {
		return fmt.Errorf("mail.Limits: %w: negative limit", conv.ErrInvalid)
	}
	return nil
}

// Errors returned by Parse when a limit is passed. Both wrap conv.ErrInvalid:
// retrying the same bytes cannot help.
var (
	// ErrTooLarge: the message, a header block or one part is over its size limit.
	ErrTooLarge = fmt.Errorf("%w: mail too large", conv.ErrInvalid)
	// ErrTooComplex: too many parts or too deep a nesting.
	ErrTooComplex = fmt.Errorf("%w: mail too complex", conv.ErrInvalid)
)

// errTripped is what a limit reader returns; the parser replaces it with the
// specific error it recorded, because go-message stringifies some read errors.
var errTripped = errors.New("mail: limit reached")

// sizeLimit is the reader under everything: it fails once more than max
// bytes have come from the source, so nothing past the limit is read.
type sizeLimit struct {
	r       io.Reader
	left    int64
	tripped bool
}

func (s *sizeLimit) Read(p []byte) (int, error) {
	if s.tripped {
		return 0, errTripped
	}
	if s.left <= 0 {
		// One byte more tells a message of exactly max bytes from a longer one.
		var one [1]byte
		n, err := s.r.Read(one[:])
		if n > 0 {
			s.tripped = true
			return 0, errTripped
		}
		return 0, err
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

// headerGate sits under each header parser. Armed, it lets through at most
// budget bytes and then fails; disarmed it passes everything (the body is
// bounded by sizeLimit and MaxAttachmentBytes instead).
type headerGate struct {
	r       io.Reader
	armed   bool
	left    int64
	tripped bool
}

func (g *headerGate) arm(n int64) { g.armed, g.left = true, n }
func (g *headerGate) disarm()     { g.armed = false }

func (g *headerGate) Read(p []byte) (int, error) {
	if !g.armed {
		return g.r.Read(p)
	}
	if g.left <= 0 {
		g.tripped = true
		return 0, errTripped
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}

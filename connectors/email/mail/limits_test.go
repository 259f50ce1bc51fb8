package mail

import (
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// streamReader produces a message piece by piece without holding it, and
// counts what the parser pulled: a bomb must be rejected without being read.
type streamReader struct {
	head  string
	part  func(i int) string // the i-th repeated piece
	n     int                // pieces
	tail  string
	i     int
	buf   []byte
	read  int64
	state int
}

func (s *streamReader) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		switch {
		case s.state == 0:
			s.buf, s.state = []byte(s.head), 1
		case s.state == 1 && s.i < s.n:
			s.buf = []byte(s.part(s.i))
			s.i++
		case s.state == 1:
			s.buf, s.state = []byte(s.tail), 2
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	s.read += int64(n)
	return n, nil
}

func manyParts(n int) *streamReader {
	return &streamReader{
		head: "From: bomb@example.net\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=BOUND\r\n\r\n",
		part: func(i int) string {
			return "--BOUND\r\nContent-Type: text/plain\r\n\r\npart " + strconv.Itoa(i) + "\r\n"
		},
		n:    n,
		tail: "--BOUND--\r\n",
	}
}

func deepNesting(levels int) *streamReader {
	return &streamReader{
		head: "From: bomb@example.net\r\nSubject: deep\r\n",
		part: func(i int) string {
			b := "L" + strconv.Itoa(i)
			return "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n"
		},
		n:    levels,
		tail: "Content-Type: text/plain\r\n\r\nbottom\r\n",
	}
}

// bigHeader is a header of total bytes, in folded lines of 998 bytes, in the
// message header or, with inPart, in the header of the first part.
func bigHeader(total int, inPart bool) *streamReader {
	head := "From: bomb@example.net\r\nX-Filler: start\r\n"
	tail := "\r\nbody\r\n"
	if inPart {
		head = "From: bomb@example.net\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nX-Filler: start\r\n"
		tail = "\r\nbody\r\n--B--\r\n"
	}
	line := "\t" + strings.Repeat("a", 995) + "\r\n"
	return &streamReader{head: head, part: func(int) string { return line }, n: total / len(line), tail: tail}
}

// hugeBody is a single-part message of total bytes.
func hugeBody(total int) *streamReader {
	line := strings.Repeat("x", 78) + "\r\n"
	return &streamReader{head: "From: a@example.net\r\n\r\n", part: func(int) string { return line }, n: total / len(line)}
}

// TestBombs: each hostile shape is rejected with its error, having read a
// bounded prefix of the input and allocated a bounded amount of memory.
// Memory is asserted, time never is.
func TestBombs(t *testing.T) {
	cases := []struct {
		name     string
		r        func() *streamReader
		l        Limits
		want     error
		maxRead  int64 // bytes the parser may pull from the input
		maxAlloc uint64
	}{
		{"10000 parts", func() *streamReader { return manyParts(10000) }, DefaultLimits, ErrTooComplex, 64 << 10, 4 << 20},
		{"100 levels", func() *streamReader { return deepNesting(100) }, DefaultLimits, ErrTooComplex, 64 << 10, 4 << 20},
		{"2 MiB message header", func() *streamReader { return bigHeader(2<<20, false) }, DefaultLimits, ErrTooLarge, 128 << 10, 4 << 20},
		{"2 MiB header line", func() *streamReader {
			return &streamReader{head: "From: bomb@example.net\r\nX-Long: ", part: func(int) string { return strings.Repeat("a", 1024) }, n: 2048}
		}, DefaultLimits, ErrTooLarge, 128 << 10, 4 << 20},
		{"2 MiB part header", func() *streamReader { return bigHeader(2<<20, true) }, DefaultLimits, ErrTooLarge, 128 << 10, 4 << 20},
		{"100 MiB body, 1 MiB limit", func() *streamReader { return hugeBody(100 << 20) }, Limits{MaxBytes: 1 << 20}, ErrTooLarge, 1<<20 + 1, 8 << 20},
		{"part over attachment limit", func() *streamReader { return hugeBody(2 << 20) }, Limits{MaxAttachmentBytes: 1 << 20}, ErrTooLarge, 2 << 20, 8 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m, err := Parse(r, tc.l, nil)
			runtime.ReadMemStats(&after)
			if m != nil || !errors.Is(err, tc.want) || !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("Parse = %v, %v; want %v wrapping conv.ErrInvalid", m, err, tc.want)
			}
			if r.read > tc.maxRead {
				t.Errorf("read %d bytes of input, want at most %d", r.read, tc.maxRead)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tc.maxAlloc {
				t.Errorf("allocated %d bytes, want at most %d", alloc, tc.maxAlloc)
			} else {
				t.Logf("read %d bytes, allocated %d bytes: %v", r.read, alloc, err)
			}
		})
	}
}

// TestWithinLimits: shapes just inside every limit parse.
func TestWithinLimits(t *testing.T) {
	l := Limits{MaxParts: 10, MaxDepth: 3, MaxHeaderBytes: 4 << 10}
	cases := []struct {
		name string
		r    io.Reader
	}{
		{"9 parts under a root", manyParts(9)}, // root + 9 = 10
		{"3 levels", deepNesting(3)},
		{"header near the limit", bigHeader(3<<10, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.r, l, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := Parse(manyParts(10), l, nil); !errors.Is(err, ErrTooComplex) {
		t.Errorf("11 entities: %v, want ErrTooComplex", err)
	}
	if _, err := Parse(deepNesting(4), l, nil); !errors.Is(err, ErrTooComplex) {
		t.Errorf("4 levels: %v, want ErrTooComplex", err)
	}
	if _, err := Parse(strings.NewReader("x"), Limits{MaxParts: -1}, nil); !errors.Is(err, conv.ErrInvalid) {
		t.Errorf("negative limit: %v, want conv.ErrInvalid", err)
	}
}

package wspoll

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// frameSpec describes a client frame for tests; build encodes it.
type frameSpec struct {
	fin      bool
	rsv      byte // bits 4-6 of the first byte, already shifted
	op       byte
	unmasked bool
	payload  []byte
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func (f frameSpec) build() []byte {
	b := f.rsv | f.op
	if f.fin {
		b |= 0x80
	}
	out := []byte{b}
	maskBit := byte(0x80)
	if f.unmasked {
		maskBit = 0
	}
	switch n := len(f.payload); {
	case n <= 125:
		out = append(out, maskBit|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, maskBit|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, maskBit|127), uint64(n))
	}
	p := bytes.Clone(f.payload)
	if !f.unmasked {
		out = append(out, testKey[:]...)
		mask(p, testKey)
	}
	return append(out, p...)
}

func text(s string) []byte { return frameSpec{fin: true, op: opText, payload: []byte(s)}.build() }

func frames(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

func closeFrameBytes(code int, reason string) []byte {
	return frameSpec{fin: true, op: opClose, payload: closePayload(code, reason)}.build()
}

// recSink records what the parser reports; it starts discarding after a
// failure or a close frame, as a Conn does.
type recSink struct {
	events  []string
	closing bool
	max     int
	t       testing.TB
}

func (s *recSink) discarding() bool { return s.closing }

func (s *recSink) message(text bool, p []byte) {
	if s.closing {
		s.t.Errorf("message delivered while discarding")
	}
	if len(p) > s.max {
		s.t.Errorf("message of %d bytes, max %d", len(p), s.max)
	}
	if text && !utf8.Valid(p) {
		s.t.Errorf("text message not UTF-8: %q", p)
	}
	kind := "binary"
	if text {
		kind = "text"
	}
	s.events = append(s.events, fmt.Sprintf("%s %q", kind, p))
}

func (s *recSink) ping(p []byte) { s.events = append(s.events, fmt.Sprintf("ping %q", p)) }

func (s *recSink) closeFrame(code int, reason string) {
	s.closing = true
	s.events = append(s.events, fmt.Sprintf("close %d %q", code, reason))
}

func (s *recSink) fail(e CloseError) {
	s.closing = true
	s.events = append(s.events, fmt.Sprintf("fail %d", e.Code))
}

// parseChunks feeds in to a fresh parser in chunks of the given sizes
// (cycled) and returns the events and the parser.
func parseChunks(t testing.TB, in []byte, max int, sizes func() int) ([]string, *parser) {
	t.Helper()
	p := &parser{max: max}
	s := &recSink{max: max, t: t}
	in = bytes.Clone(in) // the parser unmasks in place
	for len(in) > 0 {
		n := min(sizes(), len(in))
		chunk := bytes.Clone(in[:n]) // each read is a fresh buffer
		in = in[n:]
		p.feed(chunk, s)
		if cap(p.part) > max+maxHeader {
			t.Fatalf("partial frame buffer of %d bytes, max %d", cap(p.part), max+maxHeader)
		}
		if len(p.msg) > max {
			t.Fatalf("message buffer of %d bytes, max %d", len(p.msg), max)
		}
	}
	return s.events, p
}

func TestParser(t *testing.T) {
	big := strings.Repeat("x", 70000)
	tests := []struct {
		name string
		in   []byte
		max  int
		want []string
	}{
		{"text", text("hello"), 0, []string{`text "hello"`}},
		{"empty text", text(""), 0, []string{`text ""`}},
		{"binary not UTF-8", frameSpec{fin: true, op: opBinary, payload: []byte{0xff, 0}}.build(), 0,
			[]string{`binary "\xff\x00"`}},
		{"two messages", frames(text("a"), text("b")), 0, []string{`text "a"`, `text "b"`}},
		{"16-bit length", text(strings.Repeat("y", 300)), 0, []string{fmt.Sprintf("text %q", strings.Repeat("y", 300))}},
		{"64-bit length", text(big), 100000, []string{fmt.Sprintf("text %q", big)}},
		{"fragmented", frames(
			frameSpec{op: opText, payload: []byte("he")}.build(),
			frameSpec{op: opContinuation, payload: []byte("ll")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("o")}.build()), 0,
			[]string{`text "hello"`}},
		{"rune split across fragments", frames(
			frameSpec{op: opText, payload: []byte("caf\xc3")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("\xa9")}.build()), 0,
			[]string{`text "café"`}},
		{"ping inside a fragmented message", frames(
			frameSpec{op: opBinary, payload: []byte("ab")}.build(),
			frameSpec{fin: true, op: opPing, payload: []byte("p")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("cd")}.build()), 0,
			[]string{`ping "p"`, `binary "abcd"`}},
		{"empty fragments", frames(
			frameSpec{op: opText}.build(),
			frameSpec{fin: true, op: opContinuation}.build()), 0,
			[]string{`text ""`}},
		{"pong ignored", frames(frameSpec{fin: true, op: opPong, payload: []byte("x")}.build(), text("a")), 0,
			[]string{`text "a"`}},
		{"close with code", closeFrameBytes(1000, "bye"), 0, []string{`close 1000 "bye"`}},
		{"close 4999", closeFrameBytes(4999, ""), 0, []string{`close 4999 ""`}},
		{"close without code", frameSpec{fin: true, op: opClose}.build(), 0, []string{`close 1005 ""`}},
		{"nothing after close", frames(closeFrameBytes(1001, ""), text("late")), 0, []string{`close 1001 ""`}},
		{"unmasked", frameSpec{fin: true, op: opText, unmasked: true, payload: []byte("a")}.build(), 0,
			[]string{"fail 1002"}},
		{"nothing after a protocol error", frames(
			frameSpec{fin: true, op: opText, unmasked: true, payload: []byte("a")}.build(), text("b")), 0,
			[]string{"fail 1002"}},
		{"rsv1", frameSpec{fin: true, rsv: 0x40, op: opText, payload: []byte("a")}.build(), 0, []string{"fail 1002"}},
		{"rsv3", frameSpec{fin: true, rsv: 0x10, op: opText}.build(), 0, []string{"fail 1002"}},
		{"opcode 3", frameSpec{fin: true, op: 0x3}.build(), 0, []string{"fail 1002"}},
		{"opcode 0xB", frameSpec{fin: true, op: 0xB}.build(), 0, []string{"fail 1002"}},
		{"control payload 126", frameSpec{fin: true, op: opPing, payload: make([]byte, 126)}.build(), 0,
			[]string{"fail 1002"}},
		{"control payload 125", frameSpec{fin: true, op: opPing, payload: bytes.Repeat([]byte{'a'}, 125)}.build(), 0,
			[]string{fmt.Sprintf("ping %q", strings.Repeat("a", 125))}},
		{"fragmented ping", frameSpec{op: opPing}.build(), 0, []string{"fail 1002"}},
		{"continuation first", frameSpec{fin: true, op: opContinuation, payload: []byte("a")}.build(), 0,
			[]string{"fail 1002"}},
		{"text inside a fragmented message", frames(
			frameSpec{op: opText, payload: []byte("a")}.build(), text("b")), 0, []string{"fail 1002"}},
		{"invalid UTF-8", text("\xff"), 0, []string{"fail 1007"}},
		{"invalid UTF-8 across fragments", frames(
			frameSpec{op: opText, payload: []byte("a\xc3")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("b")}.build()), 0, []string{"fail 1007"}},
		{"close 1-byte payload", frameSpec{fin: true, op: opClose, payload: []byte{3}}.build(), 0,
			[]string{"fail 1002"}},
		{"close code 1005", frameSpec{fin: true, op: opClose, payload: []byte{0x03, 0xed}}.build(), 0,
			[]string{"fail 1002"}},
		{"close code 999", frameSpec{fin: true, op: opClose, payload: []byte{0x03, 0xe7}}.build(), 0,
			[]string{"fail 1002"}},
		{"close code 5000", frameSpec{fin: true, op: opClose, payload: []byte{0x13, 0x88}}.build(), 0,
			[]string{"fail 1002"}},
		{"close reason not UTF-8", frameSpec{fin: true, op: opClose, payload: []byte{0x03, 0xe8, 0xff}}.build(), 0,
			[]string{"fail 1007"}},
		{"length top bit", []byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 0, []string{"fail 1002"}},
		{"too big, then ping and close still seen", frames(
			text(strings.Repeat("z", 11)),
			frameSpec{fin: true, op: opPing, payload: []byte("p")}.build(),
			text("ignored while closing"),
			closeFrameBytes(1000, "")), 10,
			[]string{"fail 1009", `ping "p"`, `close 1000 ""`}},
		{"exactly max", text(strings.Repeat("z", 10)), 10, []string{fmt.Sprintf("text %q", strings.Repeat("z", 10))}},
		{"fragments over max", frames(
			frameSpec{op: opText, payload: []byte("123456")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("78901")}.build()), 10,
			[]string{"fail 1009"}},
	}
	chunkings := []struct {
		name  string
		sizes func() int
	}{
		{"whole", func() int { return 1 << 30 }},
		{"bytewise", func() int { return 1 }},
		{"random", func() func() int {
			r := rand.New(rand.NewPCG(1, 2))
			return func() int { return 1 + r.IntN(20) }
		}()},
	}
	for _, tt := range tests {
		for _, ch := range chunkings {
			t.Run(tt.name+"/"+ch.name, func(t *testing.T) {
				max := tt.max
				if max == 0 {
					max = defaultMaxMessage
				}
				got, p := parseChunks(t, tt.in, max, ch.sizes)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events\n got %q\nwant %q", got, tt.want)
				}
				if p.part != nil || p.msg != nil {
					t.Errorf("parser holds %d+%d bytes after whole frames", cap(p.part), cap(p.msg))
				}
			})
		}
	}
}

func TestParserHoldsOnlyIncomplete(t *testing.T) {
	p := &parser{max: defaultMaxMessage}
	s := &recSink{max: p.max, t: t}
	f := text("hello")
	p.feed(bytes.Clone(f[:4]), s)
	if p.part == nil {
		t.Fatal("incomplete frame not kept")
	}
	p.feed(bytes.Clone(f[4:]), s)
	if p.part != nil {
		t.Fatal("frame buffer kept after the frame completed")
	}
	p.feed(frameSpec{op: opText, payload: []byte("he")}.build(), s)
	if p.msg == nil || p.part != nil {
		t.Fatalf("open fragmented message: msg %v part %v", p.msg, p.part)
	}
	p.feed(frameSpec{fin: true, op: opContinuation, payload: []byte("y")}.build(), s)
	if p.msg != nil || p.msgOp != 0 {
		t.Fatal("message buffer kept after the message ended")
	}
	if want := []string{`text "hello"`, `text "hey"`}; !reflect.DeepEqual(s.events, want) {
		t.Errorf("events %q, want %q", s.events, want)
	}
}

func TestClosePayload(t *testing.T) {
	tests := []struct {
		name   string
		code   int
		reason string
		want   []byte
	}{
		{"code only", 1000, "", []byte{0x03, 0xe8}},
		{"code and reason", 4000, "bye", []byte{0x0f, 0xa0, 'b', 'y', 'e'}},
		{"no status sends nothing", StatusNoStatusRcvd, "x", nil},
		{"long reason cut on a rune", 1000, strings.Repeat("é", 100), append([]byte{0x03, 0xe8}, strings.Repeat("é", 61)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := closePayload(tt.code, tt.reason)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("closePayload = %q, want %q", got, tt.want)
			}
			if len(got) > maxControl || !utf8.Valid(got[min(2, len(got)):]) {
				t.Errorf("payload of %d bytes, valid UTF-8 %v", len(got), utf8.Valid(got))
			}
		})
	}
}

func TestMask(t *testing.T) {
	for n := range 40 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		want := bytes.Clone(b)
		for i := range want {
			want[i] ^= testKey[i%4]
		}
		mask(b, testKey)
		if !bytes.Equal(b, want) {
			t.Fatalf("mask of %d bytes = %x, want %x", n, b, want)
		}
	}
}

// fuzzMax is small so the fuzzer reaches the size limit.
const fuzzMax = 200

// FuzzParse checks that any byte stream, cut anywhere, gives the same
// events as when fed whole, within the limits, without panicking.
func FuzzParse(f *testing.F) {
	for _, seed := range [][]byte{
		text("hello"),
		frames(frameSpec{op: opText, payload: []byte("a")}.build(),
			frameSpec{fin: true, op: opPing, payload: []byte("p")}.build(),
			frameSpec{fin: true, op: opContinuation, payload: []byte("b")}.build()),
		closeFrameBytes(1000, "bye"),
		text(strings.Repeat("x", 300)),
		frameSpec{fin: true, op: opText, unmasked: true}.build(),
		text("\xff"),
	} {
		f.Add(seed, uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		whole, _ := parseChunks(t, in, fuzzMax, func() int { return 1 << 30 })
		size := int(cut)%17 + 1
		split, p := parseChunks(t, in, fuzzMax, func() int { return size })
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("events differ when cut every %d bytes:\nwhole %q\nsplit %q", size, whole, split)
		}
		for i, e := range whole {
			stop := strings.HasPrefix(e, "close") || (strings.HasPrefix(e, "fail") && e != "fail 1009")
			if stop && i != len(whole)-1 {
				t.Fatalf("events after %q: %q", e, whole[i+1:])
			}
		}
		if p.drain && (p.part != nil || p.msg != nil) {
			t.Fatal("a drained parser holds buffers")
		}
	})
}

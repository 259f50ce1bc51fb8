package wspoll

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

const (
	// maxHeader is the longest frame header: 2 bytes, 8 of extended length,
	// 4 of masking key.
	maxHeader = 14
	// maxControl bounds a control frame's payload (section 5.5).
	maxControl = 125
)

// Close status codes used by this package; any code in 3000–4999 may be
// sent as well.
const (
	StatusNormalClosure   = 1000
	StatusGoingAway       = 1001
	StatusProtocolError   = 1002
	StatusUnsupportedData = 1003
	// StatusNoStatusRcvd is what OnClose reports for a peer close frame
	// without a code; it is never sent.
	StatusNoStatusRcvd            = 1005
	StatusInvalidFramePayloadData = 1007
	StatusPolicyViolation         = 1008
	StatusMessageTooBig           = 1009
	StatusInternalError           = 1011
	StatusTryAgainLater           = 1013
)

// validCloseCode reports whether code may appear in a close frame on the
// wire (section 7.4: 1005, 1006 and 1015 are for reporting only).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// sink receives what the parser finds. Its methods run on the goroutine
// that calls feed.
type sink interface {
	// discarding reports that data frames are no longer wanted (the
	// connection is closing): their payloads are skipped, never buffered.
	discarding() bool
	// message is one complete text or binary message; text is valid UTF-8.
	message(text bool, payload []byte)
	// ping is a ping frame's payload.
	ping(payload []byte)
	// closeFrame is the peer's close frame, validated; code is
	// StatusNoStatusRcvd when it carried none. Nothing is parsed after it.
	closeFrame(code int, reason string)
	// fail is a protocol violation. After StatusMessageTooBig the parser
	// skips the offending payload and keeps reading frames (so the peer's
	// close frame is still seen); after any other code it reads nothing more.
	fail(e CloseError)
}

// parser turns the bytes of client frames into sink calls. It is fed
// arbitrary slices of the stream and holds memory only while a frame or a
// fragmented message is incomplete: part is nil between frames, msg is nil
// between messages. It is not safe for concurrent use.
type parser struct {
	max   int    // largest message (sum of its fragments)
	part  []byte // bytes of an incomplete frame
	msg   []byte // fragments of a message not yet finished
	msgOp byte   // opText or opBinary while a fragmented message is open
	skip  int64  // payload bytes still to drop
	drain bool   // the stream is unusable: drop everything
}

// verdict is what measure learned about the frame at the start of a buffer.
type verdict int

const (
	vMore  verdict = iota // the header is incomplete: hl bytes are needed
	vFrame                // the frame is hl+plen bytes
	vSkip                 // drop the frame: hl header bytes, then plen payload bytes
	vStop                 // protocol error, reported; the parser drains
)

// feed parses in, which the parser may modify (payloads are unmasked in
// place). Payloads given to the sink alias in or the parser's own buffers
// and are valid only during the call.
func (p *parser) feed(in []byte, s sink) {
	for len(in) > 0 && !p.drain {
		if p.skip > 0 {
			k := int(min(p.skip, int64(len(in))))
			p.skip -= int64(k)
			in = in[k:]
			continue
		}
		if len(p.part) == 0 {
			v, hl, plen := p.measure(in, s)
			switch v {
			case vStop:
				return
			case vSkip:
				in = in[hl:]
				p.skip = plen
			case vMore:
				p.keep(in, maxHeader)
				return
			case vFrame:
				total := hl + int(plen)
				if len(in) < total {
					p.keep(in, total)
					return
				}
				p.frame(in[:total], hl, s)
				in = in[total:]
			}
			continue
		}
		// Complete the frame in part, taking only the bytes it needs.
		for {
			v, hl, plen := p.measure(p.part, s)
			if v == vStop {
				return
			}
			if v == vSkip {
				p.skip = int64(hl) + plen - int64(len(p.part))
				p.part = nil
				break
			}
			want := hl
			if v == vFrame {
				want = hl + int(plen)
				if len(p.part) == want {
					fr := p.part
					p.part = nil
					p.frame(fr, hl, s)
					break
				}
			}
			if len(in) == 0 {
				return
			}
			k := min(want-len(p.part), len(in))
			if cap(p.part)-len(p.part) < k {
				grown := make([]byte, len(p.part), min(want, max(2*cap(p.part), len(p.part)+k)))
				copy(grown, p.part)
				p.part = grown
			}
			p.part = append(p.part, in[:k]...)
			in = in[k:]
		}
	}
}

// keep copies the start of an incomplete frame of want bytes into part.
// The buffer grows as bytes arrive, never past want: a header announcing
// a large frame costs no more than the bytes actually sent.
func (p *parser) keep(b []byte, want int) {
	p.part = make([]byte, len(b), min(want, max(2*len(b), 512)))
	copy(p.part, b)
}

// measure validates the header at the start of b as far as b reaches.
func (p *parser) measure(b []byte, s sink) (v verdict, hl int, plen int64) {
	if len(b) < 2 {
		return vMore, 2, 0
	}
	b0, b1 := b[0], b[1]
	op := b0 & 0x0f
	if reason := p.check(b0, b1, s); reason != "" {
		p.fail(StatusProtocolError, reason, s)
		return vStop, 0, 0
	}
	hl = 6
	switch b1 & 0x7f {
	case 126:
		hl = 8
	case 127:
		hl = 14
	}
	if len(b) < hl {
		return vMore, hl, 0
	}
	var n uint64
	switch b1 & 0x7f {
	case 126:
		n = uint64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		n = binary.BigEndian.Uint64(b[2:])
		if n>>63 != 0 {
			p.fail(StatusProtocolError, "payload length has its most significant bit set", s)
			return vStop, 0, 0
		}
	default:
		n = uint64(b1 & 0x7f)
	}
	if op >= opClose {
		return vFrame, hl, int64(n)
	}
	if s.discarding() {
		p.msg, p.msgOp = nil, 0
		return vSkip, hl, int64(n)
	}
	if n > uint64(p.max-len(p.msg)) {
		p.msg, p.msgOp = nil, 0
		s.fail(CloseError{Code: StatusMessageTooBig,
			Reason: fmt.Sprintf("message larger than %d bytes", p.max)})
		return vSkip, hl, int64(n)
	}
	return vFrame, hl, int64(n)
}

// check validates the first two header bytes; it returns why they are
// wrong, or "".
func (p *parser) check(b0, b1 byte, s sink) string {
	op := b0 & 0x0f
	switch {
	case b0&0x70 != 0:
		return "reserved bits set without a negotiated extension"
	case op > opBinary && op < opClose, op > opPong:
		return fmt.Sprintf("unknown opcode %#x", op)
	case b1&0x80 == 0:
		return "client frame not masked"
	case op >= opClose && b0&0x80 == 0:
		return "fragmented control frame"
	case op >= opClose && b1&0x7f > maxControl:
		return "control frame payload longer than 125 bytes"
	case op >= opClose || s.discarding():
		return ""
	case op == opContinuation && p.msgOp == 0:
		return "continuation frame without a message to continue"
	case op != opContinuation && p.msgOp != 0:
		return "new message before the fragmented one ended"
	}
	return ""
}

// frame handles one complete frame of hl header bytes.
func (p *parser) frame(fr []byte, hl int, s sink) {
	b0 := fr[0]
	op, fin := b0&0x0f, b0&0x80 != 0
	payload := fr[hl:]
	mask(payload, [4]byte(fr[hl-4:hl]))
	switch op {
	case opPing:
		s.ping(payload)
		return
	case opPong:
		return
	case opClose:
		p.closeFrame(payload, s)
		return
	}
	if s.discarding() {
		p.msg, p.msgOp = nil, 0
		return
	}
	if fin && op != opContinuation {
		p.deliver(op == opText, payload, s)
		return
	}
	if op != opContinuation {
		p.msgOp = op
	}
	p.msg = append(p.msg, payload...)
	if fin {
		m, text := p.msg, p.msgOp == opText
		p.msg, p.msgOp = nil, 0
		p.deliver(text, m, s)
	}
}

func (p *parser) deliver(text bool, payload []byte, s sink) {
	if text && !utf8.Valid(payload) {
		p.fail(StatusInvalidFramePayloadData, "text message is not valid UTF-8", s)
		return
	}
	s.message(text, payload)
}

func (p *parser) closeFrame(payload []byte, s sink) {
	code, reason := StatusNoStatusRcvd, ""
	switch {
	case len(payload) == 1:
		p.fail(StatusProtocolError, "close frame with a 1-byte payload", s)
		return
	case len(payload) >= 2:
		code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			p.fail(StatusProtocolError, fmt.Sprintf("invalid close code %d", code), s)
			return
		}
		if !utf8.Valid(payload[2:]) {
			p.fail(StatusInvalidFramePayloadData, "close reason is not valid UTF-8", s)
			return
		}
		reason = string(payload[2:])
	}
	p.release()
	p.drain = true
	s.closeFrame(code, reason)
}

// fail reports a violation after which the stream cannot be parsed.
func (p *parser) fail(code int, reason string, s sink) {
	p.release()
	p.drain = true
	s.fail(CloseError{Code: code, Reason: reason})
}

// release drops every buffer the parser holds.
func (p *parser) release() {
	p.part, p.msg, p.msgOp = nil, nil, 0
}

// retained is how many bytes of buffer the parser holds.
func (p *parser) retained() int { return cap(p.part) + cap(p.msg) }

// mask XORs b with key, in place; masking and unmasking are the same.
// The key's phase restarts at b[0].
func mask(b []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
		b = b[8:]
	}
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// appendHeader appends an unmasked, final server frame header.
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// closePayload is a close frame's payload: the code, then the reason cut
// to fit 125 bytes on a UTF-8 boundary.
func closePayload(code int, reason string) []byte {
	if code == StatusNoStatusRcvd {
		return nil
	}
	const room = maxControl - 2
	if len(reason) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return append(b, reason...)
}

package mail

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// roleLocals are local parts of senders that are machines (RFC 3834 §2 and
// practice). Compared after lower-casing and dropping "+tag".
var roleLocals = map[string]bool{
	"mailer-daemon": true, "postmaster": true, "noreply": true, "no-reply": true,
	"no_reply": true, "donotreply": true, "do-not-reply": true, "do_not_reply": true,
}

// classify says why a mail is automatic, or "" when a person wrote it.
func classify(h textproto.Header, m *Message, own OwnDomains) AutoKind {
	// Ours by the shape MessageIDFor gives: a colleague writing from our
	// domain with an ordinary client is a person, not a loop (the connector
	// also recognizes its own From address).
	if own.Has(idDomain(m.MessageID)) && strings.HasPrefix(unbracket(m.MessageID), tokenPrefix) {
		return AutoOwnDomain
	}
	if v := strings.ToLower(cleanHeader(h.Get("Auto-Submitted"))); v != "" && !strings.HasPrefix(v, "no") {
		return AutoSubmitted
	}
	if h.Has("X-Autoreply") || h.Has("X-Autorespond") {
		return AutoSubmitted
	}
	switch strings.ToLower(cleanHeader(h.Get("Precedence"))) {
	case "bulk", "list", "junk", "auto_reply":
		return AutoPrecedence
	}
	if h.Has("List-Unsubscribe") || h.Has("List-Id") {
		return AutoList
	}
	if h.Has("X-Auto-Response-Suppress") {
		return AutoResponseSuppress
	}
	if h.Has("X-Loop") {
		return AutoXLoop
	}
	if h.Has("Return-Path") && strings.Trim(cleanHeader(h.Get("Return-Path")), "<> ") == "" {
		return AutoNullSender
	}
	for _, a := range []string{m.From.Email, firstAddr(h.Get("Sender")), firstAddr(h.Get("Return-Path"))} {
		if isRole(a) {
			return AutoRoleSender
		}
	}
	return AutoNone
}

func isRole(email string) bool {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return false
	}
	local := strings.ToLower(email[:at])
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return roleLocals[local]
}

func domainOf(email string) string {
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		return strings.ToLower(email[at+1:])
	}
	return ""
}

// firstAddr is the bare address in a Sender or Return-Path value.
func firstAddr(v string) string {
	v = cleanHeader(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return v
}

// maxStatusBlocks bounds the per-recipient blocks read from one report.
const maxStatusBlocks = 50

// report consumes a part of a multipart/report; delivery-status. It returns
// false for parts it does not own (the human-readable text, say), which are
// then handled as ordinary parts.
func (p *parser) report(mt string, data []byte) bool {
	b := p.msg.Bounce
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		// A per-message block, then one block per recipient, each shaped like
		// a header. The first failed recipient wins, else the first one.
		br := bufio.NewReader(bytes.NewReader(truncate(data, p.l.MaxHeaderBytes)))
		for i := 0; i < maxStatusBlocks; i++ {
			if _, err := br.Peek(1); err != nil {
				break
			}
			h, err := textproto.ReadHeader(br)
			if h.Has("Action") || h.Has("Final-Recipient") || h.Has("Original-Recipient") {
				action := strings.ToLower(cleanHeader(h.Get("Action")))
				if b.Action == "" || (b.Action != "failed" && action == "failed") {
					rcpt := h.Get("Final-Recipient")
					if rcpt == "" {
						rcpt = h.Get("Original-Recipient")
					}
					b.Recipient = cleanHeader(typed(rcpt))
					b.Action = action
					b.Status = cleanHeader(h.Get("Status"))
					b.Diagnostic = cleanHeader(typed(decodeHeaderText(h.Get("Diagnostic-Code"), "")))
				}
			}
			if err != nil {
				break
			}
			// Skip blank lines between blocks.
			for {
				c, err := br.Peek(1)
				if err != nil || (c[0] != '\r' && c[0] != '\n') {
					break
				}
				br.ReadByte()
			}
		}
		return true
	case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
		if h, err := p.headerOf(data); err == nil && b.OriginalMessageID == "" {
			b.OriginalMessageID = firstID(h.Get("Message-Id"))
		}
		return true
	}
	return false
}

// typed drops the type prefix of a DSN field: "rfc822; a@b" → "a@b",
// "smtp; 550 5.1.1 …" → "550 5.1.1 …".
func typed(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 && i < 20 {
		return strings.TrimSpace(v[i+1:])
	}
	return strings.TrimSpace(v)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

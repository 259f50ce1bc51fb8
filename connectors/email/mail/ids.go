package mail

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
	"unicode"

	"github.com/switchboard-hq/switchboard/core/conv"
)

const (
	maxIDLen       = 500 // one message id, brackets included; RFC 5322 lines stop at 998
	maxInboundRefs = 100 // References kept from an inbound mail
	maxOutRefs     = 20  // References written on an outgoing mail
)

// parseIDs extracts message ids from a msg-id list header, leniently: every
// "<…>" token, or the bare value when a client left the brackets out. Each
// id is returned cleaned and bracketed; ids with spaces or over maxIDLen are
// dropped.
func parseIDs(raw string) []string {
	raw = cleanHeader(raw)
	var out []string
	for {
		i := strings.IndexByte(raw, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(raw[i:], '>')
		if j < 0 {
			break
		}
		if id := bracket(raw[i+1 : i+j]); id != "" {
			out = append(out, id)
		}
		raw = raw[i+j+1:]
	}
	if out == nil && raw != "" && !strings.ContainsAny(raw, " <>") {
		if id := bracket(raw); id != "" {
			out = append(out, id)
		}
	}
	return out
}

func firstID(raw string) string {
	ids := parseIDs(raw)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// bracket returns "<id>" for a bare id, or "" when it cannot be one.
func bracket(id string) string {
	id = strings.TrimSpace(id)
	if id == "" || len(id)+2 > maxIDLen || strings.IndexFunc(id, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '<' || r == '>'
	}) >= 0 {
		return ""
	}
	return "<" + id + ">"
}

// unbracket strips one pair of angle brackets.
func unbracket(id string) string {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") {
		return id[1 : len(id)-1]
	}
	return id
}

// idDomain returns the part after the last @ of a message id, lower case.
func idDomain(id string) string {
	id = unbracket(id)
	if i := strings.LastIndexByte(id, '@'); i >= 0 {
		return strings.ToLower(id[i+1:])
	}
	return ""
}

// trimIDs keeps at most n ids: the first (the thread root) and the last n-1,
// the middle of a long chain being the least useful for threading.
func trimIDs(ids []string, n int) []string {
	if len(ids) <= n {
		return ids
	}
	out := make([]string, 0, n)
	out = append(out, ids[0])
	return append(out, ids[len(ids)-(n-1):]...)
}

// Token layout: "<sb.CONV.MSG.MAC@domain>", CONV and MSG decimal ids, MAC the
// first 80 bits of HMAC-SHA256(key, "sb1\x00domain\x00CONV\x00MSG") in
// lower-case unpadded base32: 16 characters.
const (
	tokenPrefix = "sb."
	macBytes    = 10
	// MinKeyLen is the shortest key ParseToken accepts.
	MinKeyLen = 16
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func tokenMAC(domain string, c conv.ConversationID, m conv.MessageID, key []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("sb1\x00" + strings.ToLower(domain) + "\x00" + c.String() + "\x00" + m.String()))
	return strings.ToLower(b32.EncodeToString(h.Sum(nil)[:macBytes]))
}

// MessageIDFor returns the Message-ID of one of our outgoing mails,
// "<sb.CONV.MSG.MAC@domain>": the conversation travels in every reply's
// In-Reply-To/References, and the MAC (keyed per channel, at least MinKeyLen
// bytes) lets ParseToken reject a token a sender made up to land a mail in
// someone else's conversation. domain is the channel's; the caller validates it.
func MessageIDFor(domain string, conversation conv.ConversationID, message conv.MessageID, key []byte) string {
	return "<" + tokenPrefix + conversation.String() + "." + message.String() + "." +
		tokenMAC(domain, conversation, message, key) + "@" + strings.ToLower(domain) + ">"
}

// ParseToken returns the conversation encoded in one of our Message-IDs (with
// or without brackets) if it is under domain and its MAC checks with key.
func ParseToken(id string, domain string, key []byte) (conv.ConversationID, bool) {
	c, _, ok := ParseTokenMessage(id, domain, key)
	return c, ok
}

// ParseTokenMessage is ParseToken that also returns the message the id was
// made for: a delivery status notification names our Message-ID, and the
// message it reports on is the one to mark failed.
func ParseTokenMessage(id string, domain string, key []byte) (conv.ConversationID, conv.MessageID, bool) {
	if len(key) < MinKeyLen || len(id) > maxIDLen {
		return 0, 0, false
	}
	id = unbracket(id)
	at := strings.LastIndexByte(id, '@')
	if at < 0 || !strings.EqualFold(id[at+1:], domain) {
		return 0, 0, false
	}
	local := id[:at]
	if len(local) < len(tokenPrefix) || !strings.EqualFold(local[:len(tokenPrefix)], tokenPrefix) {
		return 0, 0, false
	}
	local = local[len(tokenPrefix):]
	f := strings.Split(local, ".")
	if len(f) != 3 || !decimal(f[0]) || !decimal(f[1]) {
		return 0, 0, false
	}
	c, err1 := conv.ParseID[conv.ConversationID](f[0])
	m, err2 := conv.ParseID[conv.MessageID](f[1])
	if err1 != nil || err2 != nil || c.IsZero() {
		return 0, 0, false
	}
	want := tokenMAC(domain, c, m, key)
	if !hmac.Equal([]byte(strings.ToLower(f[2])), []byte(want)) {
		return 0, 0, false
	}
	return c, m, true
}

// decimal: digits only, no sign, no leading zero, so one id has one spelling.
func decimal(s string) bool {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// subjectPrefixes are the reply and forward markers clients put in front of
// a subject; matched case-insensitively, followed by ":" or "：".
var subjectPrefixes = []string{
	"re", "fw", "fwd", "aw", "wg", "sv", "vs", "antw", "rif", "tr",
	"回复", "答复", "转发", "回覆", "答覆", "轉寄", "轉發", "回復",
}

// NormalizeSubject strips reply and forward prefixes (Re:, RE:, Fwd:, FW:,
// 回复:, 答复:, 转发: and their variants, "Re[2]:", full-width colons)
// repeatedly, collapses spaces and trims: the subject used to match a reply
// to a conversation when no id matches.
func NormalizeSubject(s string) string {
	s = cleanHeader(s)
	for {
		next, ok := stripPrefix(strings.TrimLeft(s, " "))
		if !ok {
			return strings.TrimSpace(s)
		}
		s = next
	}
}

func stripPrefix(s string) (string, bool) {
	for _, p := range subjectPrefixes {
		if len(s) < len(p) || !strings.EqualFold(s[:len(p)], p) {
			continue
		}
		rest := s[len(p):]
		// Re[2]: / Re(2): counters.
		if len(rest) > 0 && (rest[0] == '[' || rest[0] == '(') {
			close := map[byte]byte{'[': ']', '(': ')'}[rest[0]]
			if j := strings.IndexByte(rest, close); j > 1 && decimalAny(rest[1:j]) {
				rest = rest[j+1:]
			}
		}
		rest = strings.TrimLeft(rest, " ")
		if r, ok := strings.CutPrefix(rest, ":"); ok {
			return r, true
		}
		if r, ok := strings.CutPrefix(rest, "："); ok {
			return r, true
		}
	}
	return s, false
}

func decimalAny(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

package email

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// IdentityEmail is the identity kind of a mail's sender; its external id
// is the address in lower case.
const IdentityEmail = "email"

// EmailIdentity is the identity of a mail address.
func EmailIdentity(address string) conv.Identity {
	return conv.Identity{Kind: IdentityEmail, ExternalID: strings.ToLower(address)}
}

// UnknownSender is the address a mail is filed under when its header
// cannot be read: the mail is still kept, never dropped.
const UnknownSender = "unknown@invalid"

// Bounds on what one mail puts in an envelope.
const (
	// maxRefs is how many ids of In-Reply-To and References become
	// Thread.Refs (conv.MaxThreadKeys bounds refs and keys together).
	maxRefs = 60
	// maxName bounds display names (a sender's, an attachment's).
	maxName = 200
	// maxSubject bounds the subject kept in the email part.
	maxSubject = 998
	// maxField is conv's bound on every email part field.
	maxField = 2048
)

// received is what one mail of the mailbox comes to.
type received struct {
	// in is the envelope to publish; nil for our own mail coming back.
	in *conv.Inbound
	// delivery reports one of our messages failed (a bounce).
	delivery *conv.Delivery
	// unreadable: the mail could not be parsed (it is still ingested).
	unreadable bool
}

// storedBefore reports whether the channel holds a message with extID.
func (c *Connector) storedBefore(ctx context.Context, ch *channel, extID string) (bool, error) {
	err := c.cfg.Store.Read(ctx, ch.TenantID, func(tx storage.Tx) error {
		_, err := tx.MessageByExternalID(ctx, ch.ID, extID)
		return err
	})
	switch {
	case err == nil:
		c.log.Debug("email: mail stored before; passed over", "channel", ch.ID, "external_id", extID)
		return true, nil
	case errors.Is(err, conv.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("dedup %s: %w", extID, err)
	}
}

// receive turns one mail into what to publish. Its only error is one of
// the media store (the mail's bytes must be kept before it is announced):
// a mail that cannot be parsed, is too large or too complex still makes an
// envelope, with what could be read and the reason.
func (c *Connector) receive(ctx context.Context, ch *channel, m imapwatch.Mail) (received, error) {
	now := c.cfg.Now()
	limits := mail.Limits{MaxBytes: ch.cfg.MaxSize, MaxAttachmentBytes: ch.cfg.MaxSize}
	own := ch.ownDomains()
	var (
		r       received
		msg     *mail.Message // nil when not even the header could be read
		problem string        // why the mail could not be read
		extID   string
	)
	if m.TooLarge {
		// Not downloaded, so no hash: the mailbox position is the key.
		extID = fmt.Sprintf("uid:%d:%d", m.UIDValidity, m.UID)
	} else {
		// The content, not the mailbox position, so that the same mail
		// seen again after a crash or under a new UIDVALIDITY is one.
		sum := sha256.Sum256(m.Raw)
		extID = "sha256:" + hex.EncodeToString(sum[:])
	}
	// A mail stored before (a replay after a crash, a re-scan after a
	// UIDVALIDITY change) is passed over before anything is parsed or
	// written to media; one in flight on the bus is still deduplicated by
	// core.
	if seen, err := c.storedBefore(ctx, ch, extID); err != nil || seen {
		return r, err
	}
	if m.TooLarge {
		problem = fmt.Sprintf("it is %s, over the channel's limit of %s, so it was not downloaded; it is still in the mailbox",
			media.HumanBytes(m.Size), media.HumanBytes(ch.cfg.MaxSize))
		if m.Header != nil {
			msg, _ = mail.ParseHeader(bytes.NewReader(m.Header), limits, own)
		}
	} else {
		var err error
		if msg, err = mail.Parse(bytes.NewReader(m.Raw), limits, own); err != nil {
			problem = parseProblem(err)
			msg, _ = mail.ParseHeader(bytes.NewReader(m.Raw), limits, own)
		}
	}
	if msg != nil && msg.Bounce == nil && ownMail(ch, msg) {
		c.log.Debug("email: our own mail came back; not ingested", "channel", ch.ID, "uid", m.UID, "message_id", msg.MessageID)
		return r, nil
	}
	r.unreadable = problem != ""

	in := &conv.Inbound{
		TenantID: ch.TenantID, ChannelID: ch.ID, ExternalID: extID,
		From: EmailIdentity(UnknownSender), SentAt: now,
		// Threaded always: a mail with nothing to thread on starts a
		// conversation of its own.
		Thread: &conv.Thread{},
	}
	em := &conv.Email{Error: problem}
	var (
		text string
		atts []mail.Attachment
	)
	if problem != "" {
		text = "This mail could not be read: " + problem + "."
	}
	if msg != nil {
		if msg.From.Email != "" {
			in.From = EmailIdentity(msg.From.Email)
			in.FromName = conv.Clip(msg.From.Name, maxName)
		}
		if !msg.Date.IsZero() && !msg.Date.After(now) {
			in.SentAt = msg.Date
		}
		fillEmail(em, msg)
		in.Thread = threadOf(ch, msg)
		if problem == "" {
			text, atts = msg.Text, msg.Attachments
			if strings.TrimSpace(text) == "" {
				text = "(no text)"
			}
			if msg.Truncated {
				text += "\n\n[Part of this mail is damaged; this is what could be read. The original is kept as it arrived.]"
			}
		}
		switch {
		case msg.Bounce != nil:
			in.System, in.Thread.Weak = true, ""
			em.Auto = cmp.Or(string(msg.Auto), "bounce")
			if conversation, message, ok := mail.ParseTokenMessage(msg.Bounce.OriginalMessageID, ch.cfg.MessageIDDomain, ch.threadKey); ok {
				// The report goes where the agent's reply is.
				in.Thread.Conversation = conversation
				if msg.Bounce.Failed() {
					r.delivery = &conv.Delivery{TenantID: ch.TenantID, MessageID: message, Status: conv.MsgFailed,
						Reason: bounceReason(msg.Bounce), At: now.UTC()}
				}
			}
		case msg.Auto != mail.AutoNone:
			// Recorded, never answered, asks nothing of an agent; and no
			// weak key, which would point the sender's next real mail at
			// wherever this one lands.
			in.System, in.Thread.Weak = true, ""
			em.Auto = string(msg.Auto)
		}
	}

	if m.Raw != nil {
		key, _, err := c.cfg.Media.Put(ch.TenantID, "message/rfc822", bytes.NewReader(m.Raw), int64(len(m.Raw)))
		if err != nil {
			return r, fmt.Errorf("store raw mail: %w", err)
		}
		em.Raw = c.cfg.Media.URL(key)
	}
	if msg != nil && msg.HTML != "" && problem == "" {
		key, _, err := c.cfg.Media.Put(ch.TenantID, "text/html", strings.NewReader(msg.HTML), int64(len(msg.HTML)))
		if err != nil {
			return r, fmt.Errorf("store html: %w", err)
		}
		em.HTML = c.cfg.Media.URL(key)
	}
	parts, err := c.bodyParts(ch, em, text, atts)
	if err != nil {
		return r, err
	}
	in.Parts = parts

	if err := in.Validate(); err != nil {
		// A mail must never block the mailbox: keep what is safe (the
		// raw bytes, the sender) and say why the rest is missing.
		c.log.Error("email: envelope refused; keeping the mail as unreadable", "channel", ch.ID, "uid", m.UID, "err", err)
		r.unreadable = true
		reason := "it could not be shown (" + oneLine(err.Error()) + ")"
		in.Parts = []conv.Part{
			{Type: conv.PartEmail, Email: &conv.Email{Raw: em.Raw, Error: conv.Clip(reason, 500)}},
			{Type: conv.PartText, Text: conv.Clip("This mail could not be read: "+reason+".", 1000)},
		}
		in.Thread = &conv.Thread{}
		in.FromName = ""
		if in.From.Validate() != nil {
			in.From = EmailIdentity(UnknownSender)
		}
		if err := in.Validate(); err != nil {
			return r, fmt.Errorf("unreadable mail envelope: %w", err)
		}
	}
	r.in = in
	return r, nil
}

// ownMail: mail we sent coming back (a copy kept by the server, a loop):
// from our address, or carrying one of our Message-IDs (its token checks
// with our key), or anything under a Message-ID domain of our own.
func ownMail(ch *channel, msg *mail.Message) bool {
	if msg.Auto == mail.AutoOwnDomain || strings.EqualFold(msg.From.Email, ch.cfg.FromAddress) {
		return true
	}
	_, ok := mail.ParseToken(msg.MessageID, ch.cfg.MessageIDDomain, ch.threadKey)
	return ok
}

// ownDomains are the domains all of whose mail is ours: message_id_domain
// when it is a domain of its own (mail.acme.example). When it is the
// from_address's domain (the default), people write from it too (a
// colleague, or a customer of a mailbox provider): then only our address
// and our Message-IDs mark our own mail.
func (ch *channel) ownDomains() mail.OwnDomains {
	from := ch.cfg.FromAddress[strings.LastIndexByte(ch.cfg.FromAddress, '@')+1:]
	if strings.EqualFold(from, ch.cfg.MessageIDDomain) {
		return nil
	}
	return mail.OwnDomains{ch.cfg.MessageIDDomain}
}

// parseProblem says, for an agent, why Parse refused a mail.
func parseProblem(err error) string {
	switch {
	case errors.Is(err, mail.ErrTooComplex):
		return "it has too many parts or is nested too deep"
	case errors.Is(err, mail.ErrTooLarge):
		return "it, its header or one of its parts is over the size limits"
	}
	return "it is malformed (" + conv.Clip(oneLine(strings.TrimPrefix(err.Error(), "mail.Parse: ")), 300) + ")"
}

func bounceReason(b *mail.Bounce) string {
	who := cmp.Or(b.Recipient, "the recipient's server")
	what := strings.TrimSpace(b.Status + " " + b.Diagnostic)
	if what == "" {
		what = "no reason given"
	}
	return conv.Clip("bounced by "+who+": "+what, 1000)
}

// fillEmail copies a parsed mail's headers into the email part, within
// conv's bounds.
func fillEmail(em *conv.Email, msg *mail.Message) {
	em.Subject = conv.Clip(msg.Subject, maxSubject)
	if msg.From.Email != "" {
		em.From = formatAddress(msg.From)
	}
	for _, list := range []struct {
		from []mail.Address
		to   *[]string
	}{{msg.ReplyTo, &em.ReplyTo}, {msg.To, &em.To}, {msg.Cc, &em.Cc}} {
		for _, a := range list.from {
			if len(em.To)+len(em.Cc)+len(em.ReplyTo) >= conv.MaxRecipients {
				break
			}
			*list.to = append(*list.to, formatAddress(a))
		}
	}
	em.MessageID, em.InReplyTo = msg.MessageID, msg.InReplyTo
	em.References = msg.References
	if len(em.References) > conv.MaxRecipients {
		em.References = em.References[len(em.References)-conv.MaxRecipients:]
	}
	em.Quoted = clipRunes(msg.Quoted, conv.MaxTextRune)
}

// threadOf says where a mail belongs: the conversation our own token
// names (checked with the channel's key), else any stored message its
// In-Reply-To or References name (newest first), else the same sender
// and subject.
func threadOf(ch *channel, msg *mail.Message) *conv.Thread {
	th := &conv.Thread{WeakWindow: ch.cfg.ReopenWindow}
	seen := make(map[string]bool)
	add := func(id string) {
		if id == "" || seen[id] || len(th.Refs) >= maxRefs || len(id) > conv.MaxThreadKeyLen {
			return
		}
		seen[id] = true
		th.Refs = append(th.Refs, id)
	}
	add(msg.InReplyTo)
	for i := len(msg.References) - 1; i >= 0; i-- {
		add(msg.References[i])
	}
	for _, id := range th.Refs {
		if c, ok := mail.ParseToken(id, ch.cfg.MessageIDDomain, ch.threadKey); ok {
			th.Conversation = c
			break
		}
	}
	if id := msg.MessageID; id != "" && len(id) <= conv.MaxThreadKeyLen {
		th.Keys = []string{id}
	}
	if subject := mail.NormalizeSubject(msg.Subject); subject != "" && msg.From.Email != "" {
		// Room for the prefix core stores it under.
		th.Weak = conv.Clip(strings.ToLower(msg.From.Email)+"\n"+subject, conv.MaxThreadKeyLen-16)
	}
	return th
}

// bodyParts builds the parts after the email part: the text, then the
// attachments stored in media, within conv.MaxParts and conv.MaxTextRune.
// What does not fit is named in the text and kept in the raw mail.
func (c *Connector) bodyParts(ch *channel, em *conv.Email, text string, atts []mail.Attachment) ([]conv.Part, error) {
	room := conv.MaxParts - 2 // the email and text parts
	var notes []string
	full := ""
	if utf8.RuneCountInString(text) > conv.MaxTextRune {
		full = text
		room--
		notes = append(notes, fmt.Sprintf("[The text is longer than %d characters; all of it is in the attached %s.]", conv.MaxTextRune, fullTextName))
	}
	if extra := len(atts) - room; extra > 0 {
		atts = atts[:room]
		notes = append(notes, fmt.Sprintf("[%d more attachments are in the original mail.]", extra))
	}
	parts := []conv.Part{
		{Type: conv.PartEmail, Email: em},
		{Type: conv.PartText, Text: fitText(text, notes)},
	}
	if full != "" {
		p, err := c.storeFile(ch, "text/plain", fullTextName, "text/plain", []byte(full))
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	for _, a := range atts {
		p, err := c.storeFile(ch, storedType(a.ContentType), a.Filename, a.ContentType, a.Data)
		if err != nil {
			return nil, err
		}
		if a.Inline && a.ContentID != "" && len(a.ContentID)+4 <= maxField {
			// HTML names it by cid: URL; the console maps it to this part.
			p.MediaID = "cid:" + a.ContentID
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// fullTextName is the file holding the whole text of a mail too long for
// a text part.
const fullTextName = "message.txt"

// storeFile keeps one file in media and returns the part showing it.
func (c *Connector) storeFile(ch *channel, storeAs, name, mimeType string, data []byte) (conv.Part, error) {
	key, n, err := c.cfg.Media.Put(ch.TenantID, storeAs, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return conv.Part{}, fmt.Errorf("store attachment: %w", err)
	}
	if len(mimeType) > maxName {
		mimeType = "application/octet-stream"
	}
	typ := conv.PartFile
	if shownImage(mimeType) {
		typ = conv.PartImage
	}
	return conv.Part{Type: typ, URL: c.cfg.Media.URL(key), Name: cmp.Or(conv.Clip(name, maxName), "attachment"), MIME: mimeType, Size: n}, nil
}

// shownImage: the image types the console shows inline; any other image
// (SVG with its scripts, TIFF) is a file to download.
func shownImage(mimeType string) bool {
	switch mimeType {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

// storedType is the type a sender's attachment is stored under: the
// sender chose the Content-Type, so only types that are safe to serve keep
// theirs (and their file extension); the rest are plain bytes.
func storedType(mimeType string) string {
	if shownImage(mimeType) || mimeType == "application/pdf" {
		return mimeType
	}
	return "application/octet-stream"
}

// fitText appends notes to text, cutting text so the whole stays within
// conv.MaxTextRune characters.
func fitText(text string, notes []string) string {
	suffix := ""
	if len(notes) > 0 {
		suffix = "\n\n" + strings.Join(notes, "\n")
	}
	limit := conv.MaxTextRune - utf8.RuneCountInString(suffix)
	if utf8.RuneCountInString(text) > limit {
		text = clipRunes(text, limit-1) + "…"
	}
	return text + suffix
}

// formatAddress renders a mailbox as "Name <addr>", quoting the name when
// it holds characters that are special in an address.
func formatAddress(a mail.Address) string {
	name := conv.Clip(a.Name, maxName)
	if name == "" {
		return a.Email
	}
	if strings.ContainsAny(name, `()<>[]:;@\,."`) {
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
	}
	return name + " <" + a.Email + ">"
}

// clipRunes cuts s to at most n runes.
func clipRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// oneLine makes an error text fit a status or a reason: one line, bounded.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return conv.Clip(s, 500)
}

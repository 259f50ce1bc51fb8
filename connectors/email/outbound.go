package email

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	netmail "net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// Outbound sends an agent's reply (the handler of
// hub.OutboundTopic(conv.KindEmail)) and reports its delivery: sent with
// the mail's Message-ID as external id, failed with the server's reply
// when it refuses for good, or pending ("Retrying — …") with an error
// returned, so that the bus delivers it again later, when the server
// cannot take it now. A message already sent or failed is not sent again.
func (c *Connector) Outbound(ctx context.Context, out conv.Outbound) error {
	if d, ok := c.sent.get(out.Message.ID); ok {
		// Sent by this node, but the report did not get through.
		return c.cfg.Bus.PublishDelivery(ctx, d)
	}
	d := conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID}
	res, err := c.send(ctx, out)
	switch {
	case errors.Is(err, errDone):
		return nil
	case err == nil:
		d.Status, d.ExternalID, d.Reason = conv.MsgSent, res.messageID, res.warning
		c.sent.add(out.Message.ID, d, time.Now())
	case ctx.Err() != nil:
		// Our own deadline or shutdown, not the server's answer.
		return fmt.Errorf("email send %s: %w", out.Message.ID, err)
	case retryable(err):
		reason := "Retrying — " + explain(err)
		c.log.WarnContext(ctx, "email: send will be retried", "message", out.Message.ID, "reason", reason)
		still := conv.Delivery{TenantID: out.TenantID, MessageID: out.Message.ID, Status: conv.MsgPending,
			Reason: conv.Clip(reason, 1000), At: c.cfg.Now().UTC()}
		if perr := c.cfg.Bus.PublishDelivery(ctx, still); perr != nil {
			c.log.WarnContext(ctx, "email: retry report lost", "message", out.Message.ID, "err", perr)
		}
		return fmt.Errorf("email send %s: %w", out.Message.ID, err)
	default:
		d.Status, d.Reason = conv.MsgFailed, conv.Clip(explain(err), 1000)
		c.log.WarnContext(ctx, "email: send failed", "message", out.Message.ID, "reason", d.Reason)
	}
	d.At = c.cfg.Now().UTC()
	return c.cfg.Bus.PublishDelivery(ctx, d)
}

// errDone: the message was sent or failed before; nothing to do.
var errDone = errors.New("already delivered")

// retryable: the channel may take the mail later (the store, the server or
// the network are down), as opposed to refusing it.
func retryable(err error) bool {
	var se *smtpsend.SendError
	if errors.As(err, &se) {
		return se.Temporary
	}
	return !conv.Permanent(err) && !errors.Is(err, conv.ErrUnauthorized)
}

// explain is the reason an agent reads.
func explain(err error) string {
	var se *smtpsend.SendError
	switch {
	case errors.As(err, &se) && errors.Is(err, conv.ErrUnauthorized):
		return "the mail server refused the channel's SMTP credentials: " + se.Reason()
	case errors.As(err, &se):
		return se.Reason()
	}
	return oneLine(err.Error())
}

type sendResult struct {
	messageID string
	warning   string // recipients the server refused while it took the mail
}

func (c *Connector) send(ctx context.Context, out conv.Outbound) (sendResult, error) {
	ch, err := c.loadChannel(ctx, out.TenantID, out.ChannelID)
	if errors.Is(err, conv.ErrNotFound) {
		return sendResult{}, fmt.Errorf("%w: the email channel is disabled or was removed", conv.ErrNotFound)
	}
	if err != nil {
		return sendResult{}, err
	}
	prev, err := c.threadContext(ctx, out)
	if err != nil {
		return sendResult{}, err
	}
	o, err := c.outgoing(ch, out, prev)
	if err != nil {
		return sendResult{}, err
	}
	raw, err := o.Bytes()
	if err != nil {
		return sendResult{}, err
	}
	var rcpts []string
	for _, a := range append(append([]mail.Address(nil), o.To...), o.Cc...) {
		rcpts = append(rcpts, a.Email)
	}
	_, err = smtpsend.Send(ctx, c.smtpConfig(ch), ch.cfg.FromAddress, rcpts, raw)
	var se *smtpsend.SendError
	if errors.As(err, &se) && se.Sent {
		return sendResult{messageID: o.MessageID, warning: "Not delivered to every recipient: " + se.Reason()}, nil
	}
	if err != nil {
		return sendResult{}, err
	}
	return sendResult{messageID: o.MessageID}, nil
}

func (c *Connector) smtpConfig(ch *channel) smtpsend.Config {
	return smtpsend.Config{
		Addr: ch.cfg.SMTPAddr, Security: ch.cfg.SMTPSecurity,
		Username: ch.cfg.SMTPUsername, Password: ch.smtpPassword,
		TLSConfig: c.cfg.TLSConfig, Dial: c.cfg.Dial, Logger: c.log.With("channel", ch.ID),
	}
}

// maxThreadScan bounds how far back a reply looks for the mail it answers.
const maxThreadScan = 1000

// threadContext returns the email part of the newest mail a person sent in
// the reply's conversation (nil when there is none: the agent starts the
// thread). errDone when the reply is no longer pending.
func (c *Connector) threadContext(ctx context.Context, out conv.Outbound) (*conv.Email, error) {
	var prev *conv.Email
	err := c.cfg.Store.Read(ctx, out.TenantID, func(tx storage.Tx) error {
		prev = nil
		m, err := tx.Message(ctx, out.Message.ID)
		switch {
		case errors.Is(err, conv.ErrNotFound):
			m = out.Message
		case err != nil:
			return err
		case m.Status != conv.MsgPending:
			return errDone
		}
		before := m.Seq
		for scanned := 0; before > 1 && scanned < maxThreadScan; {
			msgs, err := tx.MessagesBefore(ctx, m.ConversationID, before, 100)
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				return nil
			}
			for i := len(msgs) - 1; i >= 0; i-- {
				if e := customerMail(msgs[i]); e != nil {
					prev = e
					return nil
				}
			}
			before = msgs[0].Seq
			scanned += len(msgs)
		}
		return nil
	})
	return prev, err
}

// customerMail is m's email part if m is a mail a person sent us that can
// be answered: not a system record (bounce, auto-reply), not one whose
// sender is unknown.
func customerMail(m conv.Message) *conv.Email {
	if m.Direction != conv.In || m.Sender.Type != conv.SenderContact || len(m.Parts) == 0 {
		return nil
	}
	e := m.Parts[0].Email
	if m.Parts[0].Type != conv.PartEmail || e == nil || e.Auto != "" || e.From == "" {
		return nil
	}
	if a, err := netmail.ParseAddress(e.From); err != nil || strings.EqualFold(a.Address, UnknownSender) {
		return nil
	}
	return e
}

// outgoing builds the mail for a reply: headers from the thread (prev),
// overridden by an email part the agent set, and the body from the parts.
func (c *Connector) outgoing(ch *channel, out conv.Outbound, prev *conv.Email) (mail.Outgoing, error) {
	o := mail.Outgoing{
		From:      mail.Address{Name: ch.cfg.FromName, Email: ch.cfg.FromAddress},
		MessageID: mail.MessageIDFor(ch.cfg.MessageIDDomain, out.Message.ConversationID, out.Message.ID, ch.threadKey),
		Subject:   "(no subject)",
		Date:      c.cfg.Now(),
	}
	us := func(addr string) bool {
		return strings.EqualFold(addr, ch.cfg.FromAddress) || strings.EqualFold(addr, ch.cfg.Username)
	}
	if prev != nil {
		o.Subject = "Re: " + cmp.Or(mail.NormalizeSubject(prev.Subject), "(no subject)")
		o.InReplyTo = prev.MessageID
		if prev.MessageID != "" {
			o.References = append(append([]string(nil), prev.References...), prev.MessageID)
		}
		// Where the customer asked replies to go, else to who wrote.
		var (
			to  []mail.Address
			err = errNoReplyTo
		)
		if len(prev.ReplyTo) > 0 {
			to, err = parseAddresses(prev.ReplyTo)
		}
		if err != nil {
			to, err = parseAddresses([]string{prev.From})
		}
		if err != nil {
			return o, err
		}
		o.To = to
		others, err := parseAddresses(append(append([]string(nil), prev.To...), prev.Cc...))
		if err != nil {
			// A mangled Cc of the customer's must not stop the reply.
			others = nil
		}
		for _, a := range others {
			if !us(a.Email) {
				o.Cc = append(o.Cc, a)
			}
		}
	} else {
		for _, id := range out.To {
			if id.Kind == IdentityEmail && id.ExternalID != "" {
				o.To = []mail.Address{{Email: id.ExternalID}}
				break
			}
		}
	}

	var texts []string
	for _, p := range out.Message.Parts {
		switch p.Type {
		case conv.PartEmail:
			if p.Email == nil {
				continue
			}
			if s := strings.TrimSpace(p.Email.Subject); s != "" {
				o.Subject = s
			}
			if len(p.Email.To) > 0 {
				to, err := parseAddresses(p.Email.To)
				if err != nil {
					return o, err
				}
				// Naming the recipients names all of them: Cc too.
				o.To, o.Cc = to, nil
			}
			if len(p.Email.Cc) > 0 {
				cc, err := parseAddresses(p.Email.Cc)
				if err != nil {
					return o, err
				}
				o.Cc = cc
			}
		case conv.PartText:
			texts = append(texts, p.Text)
		case conv.PartLocation:
			texts = append(texts, strings.TrimSpace(fmt.Sprintf("%s (%g, %g)", p.Label, p.Lat, p.Lng)))
		case conv.PartCard:
			texts = append(texts, strings.TrimSpace(strings.Join(nonEmpty(p.Title, p.Description, p.URL), "\n")))
		case conv.PartImage, conv.PartFile, conv.PartAudio, conv.PartVideo:
			a, err := c.attachment(out.TenantID, p, ch.cfg.MaxSize)
			if err != nil {
				return o, err
			}
			o.Attachments = append(o.Attachments, a)
		default:
			return o, fmt.Errorf("%w: a %s part cannot be sent by email", conv.ErrInvalid, p.Type)
		}
	}
	var total int
	for _, a := range o.Attachments {
		total += len(a.Data)
	}
	if int64(total) > ch.cfg.MaxSize {
		return o, fmt.Errorf("%w: the attachments (%s) are over the channel's limit of %s", conv.ErrInvalid,
			media.HumanBytes(int64(total)), media.HumanBytes(ch.cfg.MaxSize))
	}
	o.To = dedupAddresses(o.To, nil)
	o.Cc = dedupAddresses(o.Cc, o.To)
	if len(o.To) == 0 {
		return o, fmt.Errorf("%w: no address to send to: the customer has no email address and the reply names none", conv.ErrInvalid)
	}
	o.Text = strings.Join(texts, "\n\n")
	if strings.TrimSpace(o.Text) != "" {
		o.HTML = renderHTML(o.Text)
	}
	return o, nil
}

// attachment reads one of our media files for a reply. Only files of the
// reply's tenant are attached: the URL is the agent's input, and must
// never make us fetch anything else.
func (c *Connector) attachment(tenant conv.TenantID, p conv.Part, limit int64) (mail.Attachment, error) {
	if !media.Owned(p.URL, tenant) {
		return mail.Attachment{}, fmt.Errorf("%w: attachment %q is not a file uploaded to this workspace", conv.ErrInvalid, conv.Clip(p.Name, maxName))
	}
	u, _ := url.Parse(p.URL)
	key := strings.TrimPrefix(u.Path, media.URLPrefix)
	// The part's own link may have expired by a retry; we are the server,
	// so read it under a fresh signature.
	fresh, err := url.Parse(c.cfg.Media.URL(key))
	if err != nil {
		return mail.Attachment{}, err
	}
	f, err := c.cfg.Media.Open(key, fresh.Query())
	if err != nil {
		if errors.Is(err, conv.ErrNotFound) {
			return mail.Attachment{}, fmt.Errorf("%w: attachment %q is gone from the media store", conv.ErrInvalid, conv.Clip(p.Name, maxName))
		}
		return mail.Attachment{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return mail.Attachment{}, err
	}
	if int64(len(data)) > limit {
		return mail.Attachment{}, fmt.Errorf("%w: attachment %q is over the channel's limit of %s", conv.ErrInvalid,
			conv.Clip(p.Name, maxName), media.HumanBytes(limit))
	}
	mt := "application/octet-stream"
	if t, _, err := mime.ParseMediaType(p.MIME); err == nil && !strings.ContainsAny(p.MIME, "\r\n") {
		mt = t
	}
	name := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return -1
		}
		return r
	}, p.Name)
	if name == "" {
		name = "attachment"
	}
	return mail.Attachment{Filename: conv.Clip(name, maxName), ContentType: mt, Data: data}, nil
}

// parseAddresses reads "Name <addr>" or "addr" mailboxes.
func parseAddresses(list []string) ([]mail.Address, error) {
	var out []mail.Address
	for _, s := range list {
		a, err := netmail.ParseAddress(s)
		if err != nil || strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("%w: %q is not an email address", conv.ErrInvalid, conv.Clip(s, maxName))
		}
		out = append(out, mail.Address{Name: a.Name, Email: a.Address})
	}
	return out, nil
}

// dedupAddresses drops repeats (and anyone in skip), comparing addresses
// without case.
func dedupAddresses(list, skip []mail.Address) []mail.Address {
	seen := make(map[string]bool)
	for _, a := range skip {
		seen[strings.ToLower(a.Email)] = true
	}
	var out []mail.Address
	for _, a := range list {
		k := strings.ToLower(a.Email)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

var blankLines = regexp.MustCompile(`\n[ \t]*\n+`)

// renderHTML renders plain text as HTML: escaped, blank-line separated
// paragraphs, single line breaks kept.
func renderHTML(text string) string {
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\r", "\n")
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n")
	for _, para := range blankLines.Split(strings.TrimSpace(text), -1) {
		b.WriteString("<p>")
		b.WriteString(strings.ReplaceAll(html.EscapeString(para), "\n", "<br>\n"))
		b.WriteString("</p>\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// sentCache remembers replies this node sent, so that a redelivered
// Outbound whose delivery report was lost reports again instead of sending
// the mail twice. It is per node and short-lived: the message's stored
// status is what stops a resend everywhere else.
type sentCache struct {
	mu   sync.Mutex
	at   map[conv.MessageID]sentEntry
	last time.Time
}

type sentEntry struct {
	d  conv.Delivery
	at time.Time
}

const sentTTL = time.Hour

func (s *sentCache) get(id conv.MessageID) (conv.Delivery, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.at[id]
	return e.d, ok
}

func (s *sentCache) add(id conv.MessageID, d conv.Delivery, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at == nil {
		s.at = make(map[conv.MessageID]sentEntry)
	}
	d.At = now.UTC()
	s.at[id] = sentEntry{d: d, at: now}
	if now.Sub(s.last) > time.Minute {
		s.last = now
		for k, e := range s.at {
			if now.Sub(e.at) > sentTTL {
				delete(s.at, k)
			}
		}
	}
}

// errNoReplyTo: the mail replied to names no Reply-To; reply to From.
var errNoReplyTo = errors.New("no reply-to")

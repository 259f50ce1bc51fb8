package conv

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Tenant is a business using Switchboard. All other records belong to one.
type Tenant struct {
	ID        TenantID  `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// ChannelKind names a connector. The set is open: a connector registers its
// kind with the hub; core never switches on it.
type ChannelKind string

// Channel kinds known today.
const (
	KindWebchat  ChannelKind = "webchat"
	KindWeChatOA ChannelKind = "wechat_oa"
	KindWeChatMP ChannelKind = "wechat_mp"
	KindEmail    ChannelKind = "email"
	KindVoice    ChannelKind = "voice"
	// KindTest is the loopback channel the test suites use.
	KindTest ChannelKind = "test"
)

// Channel is one configured inbound/outbound endpoint of a tenant: a WeChat
// app, a mailbox, a widget. Config is non-secret JSON; Secrets hold
// credentials in plaintext in memory only — stores seal each one with
// AES-256-GCM before it touches disk, and Secrets is never serialized.
type Channel struct {
	ID       ChannelID         `json:"id"`
	TenantID TenantID          `json:"tenant_id"`
	Kind     ChannelKind       `json:"kind"`
	Name     string            `json:"name"`
	Config   json.RawMessage   `json:"config,omitempty"`
	Secrets  map[string]string `json:"-"`
	GroupID  GroupID           `json:"group_id,omitempty"`
	// Disabled channels take no customer input and send nothing; their
	// conversations stay readable.
	Disabled  bool      `json:"disabled,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SecretNames lists the names of the channel's secrets (never their values),
// sorted, for output that must show what is set without echoing it.
func (c Channel) SecretNames() []string {
	names := make([]string, 0, len(c.Secrets))
	for k := range c.Secrets {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Identity is how a channel knows a person: a visitor id, an openid, a
// unionid, an email address. (Kind, ExternalID) is unique within a tenant.
type Identity struct {
	Kind       string `json:"kind"`
	ExternalID string `json:"external_id"`
}

// Validate checks the identity is usable as a lookup key.
func (i Identity) Validate() error {
	if i.Kind == "" || i.ExternalID == "" {
		return fmt.Errorf("%w: identity needs kind and external_id", ErrInvalid)
	}
	if len(i.Kind) > 64 || len(i.ExternalID) > 512 {
		return fmt.Errorf("%w: identity too long", ErrInvalid)
	}
	return nil
}

// Contact is a customer. One contact may carry several identities (the same
// person on the Official Account and the Mini Program, joined by unionid).
type Contact struct {
	ID         ContactID  `json:"id"`
	TenantID   TenantID   `json:"tenant_id"`
	Name       string     `json:"name,omitempty"`
	Identities []Identity `json:"identities,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
}

// ConversationStatus moves open → resolved; a new inbound message on a
// resolved conversation opens a new conversation (ingest never reopens).
type ConversationStatus string

// Conversation statuses.
const (
	StatusOpen     ConversationStatus = "open"
	StatusResolved ConversationStatus = "resolved"
)

// Conversation is the thread between one contact and the business on one
// channel. At most one conversation per (channel, contact) is open.
type Conversation struct {
	ID        ConversationID     `json:"id"`
	TenantID  TenantID           `json:"tenant_id"`
	ChannelID ChannelID          `json:"channel_id"`
	ContactID ContactID          `json:"contact_id"`
	Status    ConversationStatus `json:"status"`
	// AssigneeID is the agent handling it; zero while queued.
	AssigneeID AgentID `json:"assignee_id,omitempty"`
	GroupID    GroupID `json:"group_id,omitempty"`
	Priority   int     `json:"priority"`
	// Scene is where the customer started (a page, a menu key, a QR scene).
	Scene string `json:"scene,omitempty"`
	// ReplyDeadline is the last moment the channel accepts a reply (WeChat's
	// 48-hour window); nil when the channel has none.
	ReplyDeadline *time.Time `json:"reply_deadline,omitempty"`
	// LastSeq is the seq of the newest message: messages are 1..LastSeq.
	LastSeq    int64      `json:"last_seq"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
}

// Direction of a message relative to the business.
type Direction string

// Directions.
const (
	In  Direction = "in"
	Out Direction = "out"
)

// SenderType says who wrote a message.
type SenderType string

// Sender types.
const (
	SenderContact SenderType = "contact"
	SenderAgent   SenderType = "agent"
	SenderBot     SenderType = "bot"
	SenderSystem  SenderType = "system"
)

// Sender identifies a message's author. ID is the contact or agent id as a
// decimal string, empty for system messages.
type Sender struct {
	Type SenderType `json:"type"`
	ID   string     `json:"id,omitempty"`
	Name string     `json:"name,omitempty"`
}

// MessageStatus is a message's delivery state. Inbound messages are
// received; outbound ones go pending → sent → delivered → read, or → failed.
// Status only moves forward (see Advances).
type MessageStatus string

// Message statuses.
const (
	MsgReceived  MessageStatus = "received"
	MsgPending   MessageStatus = "pending"
	MsgSent      MessageStatus = "sent"
	MsgDelivered MessageStatus = "delivered"
	MsgRead      MessageStatus = "read"
	MsgFailed    MessageStatus = "failed"
)

var statusRank = map[MessageStatus]int{
	MsgPending: 1, MsgSent: 2, MsgFailed: 2, MsgDelivered: 3, MsgRead: 4, MsgReceived: 5,
}

// Valid reports whether s is a known status.
func (s MessageStatus) Valid() bool { _, ok := statusRank[s]; return ok }

// Advances reports whether a message in status from may move to to.
// Redelivered or reordered delivery reports therefore never move a message
// backwards (a late "sent" cannot undo "read" or "failed"). The one move
// sideways is sent → failed: a mail server took the message and a bounce
// says later that it never arrived.
func Advances(from, to MessageStatus) bool {
	if from == MsgReceived || to == MsgReceived || !to.Valid() {
		return false
	}
	if from == MsgFailed {
		return false
	}
	if from == MsgSent && to == MsgFailed {
		return true
	}
	return statusRank[to] > statusRank[from]
}

// Updates reports whether a delivery report (status, reason) changes a
// message in (from, fromReason): the status advances, or a pending message
// gets a new reason (a connector saying it is still trying, and why).
func Updates(from MessageStatus, fromReason string, to MessageStatus, reason string) bool {
	return Advances(from, to) || (from == MsgPending && to == MsgPending && reason != fromReason)
}

// Message is one entry of a conversation. Seq is gapless per conversation and
// assigned in the transaction that stores the message.
type Message struct {
	ID             MessageID      `json:"id"`
	TenantID       TenantID       `json:"tenant_id"`
	ConversationID ConversationID `json:"conversation_id"`
	ChannelID      ChannelID      `json:"channel_id"`
	Seq            int64          `json:"seq"`
	Direction      Direction      `json:"direction"`
	Sender         Sender         `json:"sender"`
	Parts          []Part         `json:"parts"`
	// ExternalID is the channel's id for the message (WeChat MsgId, email
	// Message-ID): the dedup key, unique per channel.
	ExternalID string `json:"external_id,omitempty"`
	// ClientID is the sender's idempotency key for messages written through
	// our own APIs, unique per conversation.
	ClientID     string        `json:"client_id,omitempty"`
	Status       MessageStatus `json:"status"`
	StatusReason string        `json:"status_reason,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	RecalledAt   *time.Time    `json:"recalled_at,omitempty"`
}

// Redacted is m as clients may see it: a recalled message keeps its place
// in the conversation but not its content.
func (m Message) Redacted() Message {
	if m.RecalledAt != nil {
		m.Parts = []Part{}
	}
	return m
}

// PartType is the kind of content in a Part.
type PartType string

// Part types.
const (
	PartText     PartType = "text"
	PartImage    PartType = "image"
	PartFile     PartType = "file"
	PartAudio    PartType = "audio"
	PartVideo    PartType = "video"
	PartLocation PartType = "location"
	PartCard     PartType = "card"
	PartCall     PartType = "call"
	// PartEmail carries a mail's headers (Part.Email); it is the first part
	// of every message on an email channel, in and out.
	PartEmail PartType = "email"
)

// Part is one piece of a message. Which fields are meaningful depends on
// Type; Validate enforces the required ones.
type Part struct {
	Type PartType `json:"type"`
	// Text: the text of a text part; the transcript of audio when the channel
	// supplies one; the caption of media.
	Text string `json:"text,omitempty"`
	// Media (image, file, audio, video): where the bytes are, by our media
	// key (URL) or the channel's media id before download.
	URL      string `json:"url,omitempty"`
	MediaID  string `json:"media_id,omitempty"`
	Name     string `json:"name,omitempty"`
	MIME     string `json:"mime,omitempty"`
	Size     int64  `json:"size,omitempty"`
	Duration int64  `json:"duration_ms,omitempty"`
	// Location.
	Lat   float64 `json:"lat,omitempty"`
	Lng   float64 `json:"lng,omitempty"`
	Label string  `json:"label,omitempty"`
	// Card: a link or mini-program page shown as a card.
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Thumb       string `json:"thumb,omitempty"`
	AppID       string `json:"app_id,omitempty"`
	Page        string `json:"page,omitempty"`
	// Call event: ringing, answered, ended, missed.
	Event string `json:"event,omitempty"`
	// Email: the headers of a mail (type email).
	Email *Email `json:"email,omitempty"`
}

// Email is what an agent needs of a mail besides its body: who, what
// about, how it threads, and where its HTML and raw bytes are kept. On an
// agent's reply every field is optional: Subject, To and Cc override what
// the thread would use; the connector fills in the rest when it sends.
type Email struct {
	Subject string `json:"subject,omitempty"`
	// From, To and Cc are RFC 5322 mailboxes as "Name <addr>" or "addr".
	From string   `json:"from,omitempty"`
	To   []string `json:"to,omitempty"`
	Cc   []string `json:"cc,omitempty"`
	// ReplyTo is where the sender asked replies to go, when not to From.
	ReplyTo []string `json:"reply_to,omitempty"`
	// MessageID, InReplyTo and References with their angle brackets.
	MessageID  string   `json:"message_id,omitempty"`
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
	// HTML is the media URL of the sanitized HTML body, if the mail had
	// one; cid: URLs in it name image and file parts by MediaID "cid:…".
	HTML string `json:"html,omitempty"`
	// Raw is the media URL of the mail as received.
	Raw string `json:"raw,omitempty"`
	// Quoted is the history and signature folded out of the body text.
	Quoted string `json:"quoted,omitempty"`
	// Auto says why a mail is automatic (auto-reply, list, bounce…): it
	// asks nothing of an agent and is never answered automatically.
	Auto string `json:"auto,omitempty"`
	// Error says why the mail could not be read; Raw keeps it whole.
	Error string `json:"error,omitempty"`
}

// MaxRecipients bounds Email.To, Cc and ReplyTo together, and References.
const MaxRecipients = 100

func (e *Email) validate() error {
	if e == nil {
		return fmt.Errorf("%w: email part needs email", ErrInvalid)
	}
	if len(e.To)+len(e.Cc)+len(e.ReplyTo) > MaxRecipients || len(e.References) > MaxRecipients {
		return fmt.Errorf("%w: email part has more than %d recipients or references", ErrInvalid, MaxRecipients)
	}
	if utf8.RuneCountInString(e.Quoted) > MaxTextRune {
		return fmt.Errorf("%w: email quoted text longer than %d characters", ErrInvalid, MaxTextRune)
	}
	fields := append([]string{e.Subject, e.From, e.MessageID, e.InReplyTo, e.HTML, e.Raw, e.Auto, e.Error}, e.To...)
	fields = append(append(append(fields, e.Cc...), e.ReplyTo...), e.References...)
	for _, f := range fields {
		if len(f) > maxField {
			return fmt.Errorf("%w: email part field longer than %d bytes", ErrInvalid, maxField)
		}
		if strings.ContainsAny(f, "\r\n") {
			return fmt.Errorf("%w: email part field holds a line break", ErrInvalid)
		}
	}
	return nil
}

// Limits on message content, so a store row and a websocket frame stay bounded.
const (
	MaxParts    = 20
	MaxTextRune = 20000
	maxField    = 2048
)

// Validate checks a part has what its type needs and nothing unbounded.
func (p Part) Validate() error {
	if utf8.RuneCountInString(p.Text) > MaxTextRune {
		return fmt.Errorf("%w: text longer than %d characters", ErrInvalid, MaxTextRune)
	}
	for _, f := range []string{p.URL, p.MediaID, p.Name, p.MIME, p.Label, p.Title, p.Description, p.Thumb, p.AppID, p.Page, p.Event} {
		if len(f) > maxField {
			return fmt.Errorf("%w: %s part field longer than %d bytes", ErrInvalid, p.Type, maxField)
		}
	}
	if p.Email != nil && p.Type != PartEmail {
		return fmt.Errorf("%w: %s part carries email headers", ErrInvalid, p.Type)
	}
	switch p.Type {
	case PartText:
		if strings.TrimSpace(p.Text) == "" {
			return fmt.Errorf("%w: empty text part", ErrInvalid)
		}
	case PartImage, PartFile, PartAudio, PartVideo:
		if p.URL == "" && p.MediaID == "" {
			return fmt.Errorf("%w: %s part needs url or media_id", ErrInvalid, p.Type)
		}
	case PartLocation:
		if p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180 {
			return fmt.Errorf("%w: location out of range", ErrInvalid)
		}
	case PartCard:
		if p.Title == "" && p.URL == "" && p.Page == "" {
			return fmt.Errorf("%w: card part needs title, url or page", ErrInvalid)
		}
	case PartCall:
		if p.Event == "" {
			return fmt.Errorf("%w: call part needs event", ErrInvalid)
		}
	case PartEmail:
		if err := p.Email.validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown part type %q", ErrInvalid, p.Type)
	}
	return nil
}

// ValidateParts checks a message body.
func ValidateParts(parts []Part) error {
	if len(parts) == 0 {
		return fmt.Errorf("%w: message has no parts", ErrInvalid)
	}
	if len(parts) > MaxParts {
		return fmt.Errorf("%w: message has %d parts, at most %d", ErrInvalid, len(parts), MaxParts)
	}
	for i, p := range parts {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	return nil
}

// Agent is a person answering conversations in the console.
type Agent struct {
	ID           AgentID   `json:"id"`
	TenantID     TenantID  `json:"tenant_id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	Role         string    `json:"role"`
	PasswordHash string    `json:"-"`
	Capacity     int       `json:"capacity"`
	GroupIDs     []GroupID `json:"group_ids,omitempty"`
	Disabled     bool      `json:"disabled,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// Agent roles.
const (
	RoleAgent = "agent"
	RoleAdmin = "admin"
)

// DefaultCapacity is how many open conversations an agent takes at once.
const DefaultCapacity = 5

// Group is a team of agents with skills that dispatch matches on.
type Group struct {
	ID        GroupID   `json:"id"`
	TenantID  TenantID  `json:"tenant_id"`
	Name      string    `json:"name"`
	Skills    []string  `json:"skills,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Token is an agent's session. The bearer value is never stored: Hash is
// SHA-256 of its secret half.
type Token struct {
	ID        TokenID    `json:"id"`
	TenantID  TenantID   `json:"tenant_id"`
	AgentID   AgentID    `json:"agent_id"`
	Hash      []byte     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Visitor is a web chat visitor session: the browser holds a visitor
// token (only its SHA-256 Hash is stored) that names the contact it
// speaks as on one channel.
type Visitor struct {
	ID        VisitorID `json:"id"`
	TenantID  TenantID  `json:"tenant_id"`
	ChannelID ChannelID `json:"channel_id"`
	ContactID ContactID `json:"contact_id"`
	Hash      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// Active reports whether the token may authenticate at now.
func (t Token) Active(now time.Time) bool {
	return t.RevokedAt == nil && now.Before(t.ExpiresAt)
}

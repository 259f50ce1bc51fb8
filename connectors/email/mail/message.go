package mail

import (
	"strings"
	"time"
)

// Address is a display name and an address, both cleaned: no control
// characters, the domain in lower case.
type Address struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email"`
}

// Attachment is one stored part: a file, an inline image, a forwarded
// message. Filename is a base name (no directories) and may be empty.
type Attachment struct {
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type"`         // media type only, lower case: "image/png"
	ContentID   string `json:"content_id,omitempty"` // without angle brackets, as cid: URLs name it
	Inline      bool   `json:"inline,omitempty"`
	Data        []byte `json:"-"`
}

// AutoKind says why a mail is automatic; the empty kind means a person
// wrote it. No agent conversation is opened for, and nothing is ever sent
// back automatically to, a mail whose kind is not empty.
type AutoKind string

// Reasons for automatic mail, checked in this order.
const (
	AutoNone             AutoKind = ""
	AutoOwnDomain        AutoKind = "own-domain"             // a Message-ID of ours (MessageIDFor's shape under one of our domains): our own mail came back
	AutoSubmitted        AutoKind = "auto-submitted"         // Auto-Submitted other than "no" (RFC 3834), X-Autoreply, X-Autorespond
	AutoPrecedence       AutoKind = "precedence"             // Precedence: bulk, list, junk, auto_reply
	AutoList             AutoKind = "list"                   // List-Unsubscribe or List-Id
	AutoResponseSuppress AutoKind = "auto-response-suppress" // X-Auto-Response-Suppress (Exchange)
	AutoXLoop            AutoKind = "x-loop"                 // X-Loop
	AutoNullSender       AutoKind = "null-sender"            // Return-Path: <>
	AutoRoleSender       AutoKind = "role-sender"            // mailer-daemon@, postmaster@, noreply@, no-reply@, do-not-reply@ …
)

// Bounce is what a delivery status notification (RFC 3464) says about one
// recipient of one of our messages. Only Action "failed" means the mail is
// lost; "delayed" reports are set too so the caller can tell them apart.
type Bounce struct {
	OriginalMessageID string `json:"original_message_id,omitempty"` // with angle brackets, like Message.MessageID
	Recipient         string `json:"recipient,omitempty"`
	Action            string `json:"action,omitempty"` // failed, delayed, delivered, relayed, expanded (lower case)
	Status            string `json:"status,omitempty"` // e.g. 5.1.1
	Diagnostic        string `json:"diagnostic,omitempty"`
}

// Failed reports whether the bounce means the original message was not delivered.
func (b *Bounce) Failed() bool { return b != nil && b.Action == "failed" }

// Message is one parsed mail. Every string taken from a header is cleaned
// (no CR, LF or other control characters). Message ids keep their angle
// brackets, "<id@host>", the form MessageIDFor returns, so stored and
// received ids compare as plain strings.
type Message struct {
	MessageID  string    `json:"message_id,omitempty"`
	InReplyTo  string    `json:"in_reply_to,omitempty"`
	References []string  `json:"references,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	Date       time.Time `json:"date,omitzero"`

	From    Address   `json:"from"`
	ReplyTo []Address `json:"reply_to,omitempty"`
	To      []Address `json:"to,omitempty"`
	Cc      []Address `json:"cc,omitempty"`

	// Text is the new part of the body: text/plain when there is one, else
	// text derived from the HTML; quoted history and signature folded away.
	Text string `json:"text"`
	// Quoted is what was folded away from Text, kept for the agent to expand.
	Quoted string `json:"quoted,omitempty"`
	// HTML is the sanitized HTML body, empty when the mail has none. cid:
	// URLs are kept for the caller to map to stored attachments; remote
	// images are kept too and must be blocked by the renderer until asked.
	HTML string `json:"html,omitempty"`

	Attachments []Attachment `json:"attachments,omitempty"`

	Auto   AutoKind `json:"auto,omitempty"`
	Bounce *Bounce  `json:"bounce,omitempty"`

	// Truncated is set when a malformed multipart structure stopped the walk
	// early: what was read before is kept rather than losing the mail.
	Truncated bool `json:"truncated,omitempty"`
}

// OwnDomains are the domains we send from and put in our Message-IDs
// (MessageIDFor). Mail from them, or carrying a Message-ID under them, is our
// own coming back and is ignored. Compared case-insensitively, exact match.
type OwnDomains []string

// Has reports whether domain is one of d.
func (d OwnDomains) Has(domain string) bool {
	domain = strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if domain == "" {
		return false
	}
	for _, o := range d {
		if strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(o), "."), domain) {
			return true
		}
	}
	return false
}

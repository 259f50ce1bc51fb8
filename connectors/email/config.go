package email

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	netmail "net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/hub"
)

// Secret config fields.
const (
	// SecretPassword is the IMAP password (and the SMTP one unless
	// smtp_password is set).
	SecretPassword = "password"
	// SecretSMTPPassword is the SMTP password when it differs.
	SecretSMTPPassword = "smtp_password"
	// SecretThreadKey is the HMAC key of the conversation token in our
	// Message-IDs (mail.MessageIDFor); the admin CLI generates it.
	SecretThreadKey = "thread_key"
)

// Config defaults.
const (
	DefaultMaxSize      = 25 << 20
	DefaultReopenWindow = 7 * 24 * time.Hour
	// MaxMaxSize caps max_size: a mail is held in memory while it is read.
	MaxMaxSize = 100 << 20
)

// configFields are the non-secret config fields; anything else is refused,
// so that a misspelled secret ("smtp_pasword") is not stored in the clear.
var configFields = []string{
	"imap_addr", "imap_security", "username", "mailbox",
	"smtp_addr", "smtp_security", "smtp_username",
	"from_address", "from_name", "max_size", "message_id_domain", "reopen_window", "import_existing",
}

// Kind registers the email channel kind with the hub.
func Kind() hub.Kind {
	return hub.Kind{
		Name:         conv.KindEmail,
		Secrets:      []string{SecretPassword, SecretSMTPPassword, SecretThreadKey},
		Generated:    []string{SecretThreadKey},
		Required:     []string{"imap_addr", "username", SecretPassword, "smtp_addr", "from_address"},
		Check:        checkConfig,
		CheckSecrets: checkSecrets,
	}
}

func checkConfig(fields map[string]any) error {
	for name := range fields {
		if !slices.Contains(configFields, name) {
			return fmt.Errorf("unknown field %q (config fields: %s; secret fields: %s, %s, %s)", name,
				strings.Join(configFields, ", "), SecretPassword, SecretSMTPPassword, SecretThreadKey)
		}
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	_, err = ParseConfig(raw)
	return err
}

// checkSecrets checks the secrets' shapes; an error never echoes a value.
func checkSecrets(secrets map[string]string) error {
	for _, name := range []string{SecretPassword, SecretSMTPPassword} {
		if strings.ContainsAny(secrets[name], "\r\n\x00") {
			return fmt.Errorf("%s holds a line break or NUL", name)
		}
	}
	// Absent is fine here: the admin CLI generates it.
	if k, ok := secrets[SecretThreadKey]; ok && len(k) < mail.MinKeyLen {
		return fmt.Errorf("%s must be at least %d bytes", SecretThreadKey, mail.MinKeyLen)
	}
	return nil
}

// ChannelConfig is an email channel's non-secret configuration, defaults
// filled.
type ChannelConfig struct {
	// IMAPAddr is host:port of the mailbox's IMAP server.
	IMAPAddr string `json:"imap_addr"`
	// IMAPSecurity: tls (default), starttls, or none (loopback only).
	IMAPSecurity imapwatch.Security `json:"imap_security"`
	// Username logs in to IMAP (and SMTP unless SMTPUsername is set).
	Username string `json:"username"`
	// Mailbox is the folder watched (default INBOX).
	Mailbox string `json:"mailbox"`
	// SMTPAddr is host:port of the submission server.
	SMTPAddr string `json:"smtp_addr"`
	// SMTPSecurity: starttls (default; tls when the port is 465), tls, or
	// none.
	SMTPSecurity smtpsend.Security `json:"smtp_security"`
	// SMTPUsername defaults to Username; set to "" explicitly, it means
	// the SMTP server takes mail without AUTH (a relay on loopback).
	SMTPUsername string `json:"smtp_username"`
	// FromAddress is the address replies are sent from.
	FromAddress string `json:"from_address"`
	// FromName is the display name replies carry.
	FromName string `json:"from_name,omitempty"`
	// MaxSize caps one mail (default 25 MiB); larger ones are not
	// downloaded, only announced to the agent.
	MaxSize int64 `json:"max_size"`
	// MessageIDDomain is the domain of our Message-IDs (default
	// FromAddress's). When it is a domain of its own, any mail from it or
	// with a Message-ID under it is our own coming back (see the package
	// doc).
	MessageIDDomain string `json:"message_id_domain"`
	// ReopenWindow is how long after a conversation is resolved a mail
	// from the same sender with the same subject (and no usable
	// In-Reply-To or References) still reopens it (default 7 days).
	ReopenWindow time.Duration `json:"-"`
	// ImportExisting: a new channel ingests the mail already in the folder
	// (default). False starts it from the moment it first connects.
	ImportExisting bool `json:"import_existing"`
}

// rawConfig is ChannelConfig as JSON has it: optional fields as pointers,
// so that "absent" and "empty" differ.
type rawConfig struct {
	IMAPAddr        string  `json:"imap_addr"`
	IMAPSecurity    string  `json:"imap_security"`
	Username        string  `json:"username"`
	Mailbox         string  `json:"mailbox"`
	SMTPAddr        string  `json:"smtp_addr"`
	SMTPSecurity    string  `json:"smtp_security"`
	SMTPUsername    *string `json:"smtp_username"`
	FromAddress     string  `json:"from_address"`
	FromName        string  `json:"from_name"`
	MaxSize         *int64  `json:"max_size"`
	MessageIDDomain string  `json:"message_id_domain"`
	ReopenWindow    *string `json:"reopen_window"`
	ImportExisting  *bool   `json:"import_existing"`
}

// maxConfigField bounds every string of the config.
const maxConfigField = 255

// ParseConfig decodes and checks a channel's config (without its secrets),
// filling defaults. Errors wrap conv.ErrInvalid and say which field.
func ParseConfig(raw json.RawMessage) (ChannelConfig, error) {
	bad := func(format string, args ...any) (ChannelConfig, error) {
		return ChannelConfig{}, fmt.Errorf("email config: %w: %s", conv.ErrInvalid, fmt.Sprintf(format, args...))
	}
	var r rawConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if len(bytes.TrimSpace(raw)) == 0 {
		return bad("empty config")
	}
	if err := dec.Decode(&r); err != nil {
		return bad("%v", err)
	}
	for name, v := range map[string]string{
		"imap_addr": r.IMAPAddr, "imap_security": r.IMAPSecurity, "username": r.Username, "mailbox": r.Mailbox,
		"smtp_addr": r.SMTPAddr, "smtp_security": r.SMTPSecurity, "from_address": r.FromAddress,
		"from_name": r.FromName, "message_id_domain": r.MessageIDDomain,
	} {
		if err := checkText(v); err != nil {
			return bad("%s %v", name, err)
		}
	}
	c := ChannelConfig{
		IMAPAddr: r.IMAPAddr, Username: r.Username, Mailbox: r.Mailbox, SMTPAddr: r.SMTPAddr,
		FromAddress: r.FromAddress, FromName: r.FromName, MessageIDDomain: strings.ToLower(r.MessageIDDomain),
	}

	imapHost, _, err := hostPort(c.IMAPAddr)
	if err != nil {
		return bad("imap_addr %q: %v", c.IMAPAddr, err)
	}
	switch sec := imapwatch.Security(r.IMAPSecurity); sec {
	case "":
		c.IMAPSecurity = imapwatch.SecurityTLS
	case imapwatch.SecurityTLS, imapwatch.SecurityStartTLS:
		c.IMAPSecurity = sec
	case imapwatch.SecurityNone:
		// The password would cross the network in the clear.
		if !loopbackHost(imapHost) {
			return bad("imap_security none is only allowed for a server on loopback (127.0.0.1, ::1, localhost)")
		}
		c.IMAPSecurity = sec
	default:
		return bad("imap_security %q is not tls, starttls or none", r.IMAPSecurity)
	}
	if c.Username == "" {
		return bad("username is required")
	}
	if c.Mailbox == "" {
		c.Mailbox = imapwatch.DefaultMailbox
	}

	_, smtpPort, err := hostPort(c.SMTPAddr)
	if err != nil {
		return bad("smtp_addr %q: %v", c.SMTPAddr, err)
	}
	switch sec := smtpsend.Security(r.SMTPSecurity); sec {
	case "":
		c.SMTPSecurity = smtpsend.SecurityStartTLS
		if smtpPort == 465 {
			c.SMTPSecurity = smtpsend.SecurityTLS
		}
	case smtpsend.SecurityTLS, smtpsend.SecurityStartTLS, smtpsend.SecurityNone:
		// none: smtpsend itself refuses AUTH in the clear off loopback.
		c.SMTPSecurity = sec
	default:
		return bad("smtp_security %q is not tls, starttls or none", r.SMTPSecurity)
	}
	c.SMTPUsername = c.Username
	if r.SMTPUsername != nil {
		if err := checkText(*r.SMTPUsername); err != nil {
			return bad("smtp_username %v", err)
		}
		c.SMTPUsername = *r.SMTPUsername
	}

	if !plainAddress(c.FromAddress) {
		return bad("from_address %q is not a bare address like support@example.com", c.FromAddress)
	}
	if c.MessageIDDomain == "" {
		c.MessageIDDomain = strings.ToLower(c.FromAddress[strings.LastIndexByte(c.FromAddress, '@')+1:])
	}
	if !hostname(c.MessageIDDomain) {
		return bad("message_id_domain %q is not a domain name", c.MessageIDDomain)
	}

	c.MaxSize = DefaultMaxSize
	if r.MaxSize != nil {
		if *r.MaxSize <= 0 || *r.MaxSize > MaxMaxSize {
			return bad("max_size %d must be 1 to %d bytes", *r.MaxSize, MaxMaxSize)
		}
		c.MaxSize = *r.MaxSize
	}
	c.ImportExisting = r.ImportExisting == nil || *r.ImportExisting
	c.ReopenWindow = DefaultReopenWindow
	if r.ReopenWindow != nil {
		d, err := time.ParseDuration(*r.ReopenWindow)
		if err != nil || d < 0 || d > 366*24*time.Hour {
			return bad("reopen_window %q is not a duration from 0s to 8784h (a year), like \"168h\"", *r.ReopenWindow)
		}
		c.ReopenWindow = d
	}
	return c, nil
}

// checkText refuses control characters and overlong values.
func checkText(s string) error {
	if len(s) > maxConfigField {
		return fmt.Errorf("is longer than %d bytes", maxConfigField)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("holds a control character")
	}
	return nil
}

func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("not host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port is not 1 to 65535")
	}
	if host == "" || strings.ContainsAny(host, " /@") {
		return "", 0, fmt.Errorf("no host")
	}
	return host, n, nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// plainAddress: an addr-spec alone, ASCII, that net/mail reads back as is.
func plainAddress(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	a, err := netmail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Count(s, "@") == 1
}

// hostname: dot-separated labels of letters, digits and hyphens.
func hostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

package email_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email"
	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/connectors/email/smtpsend"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/hub"
)

const minimalConfig = `{"imap_addr":"imap.acme.example:993","username":"support@acme.example",` +
	`"smtp_addr":"smtp.acme.example:587","from_address":"support@acme.example"}`

func TestParseConfigDefaults(t *testing.T) {
	c, err := email.ParseConfig(json.RawMessage(minimalConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := email.ChannelConfig{
		IMAPAddr: "imap.acme.example:993", IMAPSecurity: imapwatch.SecurityTLS, Username: "support@acme.example",
		Mailbox: "INBOX", SMTPAddr: "smtp.acme.example:587", SMTPSecurity: smtpsend.SecurityStartTLS,
		SMTPUsername: "support@acme.example", FromAddress: "support@acme.example", MaxSize: 25 << 20,
		MessageIDDomain: "acme.example", ReopenWindow: 7 * 24 * time.Hour, ImportExisting: true,
	}
	if c != want {
		t.Fatalf("ParseConfig = %+v\nwant %+v", c, want)
	}

	cases := []struct {
		name  string
		patch string
		check func(c email.ChannelConfig) bool
	}{
		{"port 465 is implicit TLS", `"smtp_addr":"smtp.acme.example:465"`,
			func(c email.ChannelConfig) bool { return c.SMTPSecurity == smtpsend.SecurityTLS }},
		{"explicit smtp security wins", `"smtp_addr":"smtp.acme.example:465","smtp_security":"starttls"`,
			func(c email.ChannelConfig) bool { return c.SMTPSecurity == smtpsend.SecurityStartTLS }},
		{"empty smtp_username means no AUTH", `"smtp_username":""`,
			func(c email.ChannelConfig) bool { return c.SMTPUsername == "" }},
		{"own smtp_username", `"smtp_username":"relay-user"`,
			func(c email.ChannelConfig) bool { return c.SMTPUsername == "relay-user" }},
		{"plaintext imap on loopback", `"imap_addr":"127.0.0.1:143","imap_security":"none"`,
			func(c email.ChannelConfig) bool { return c.IMAPSecurity == imapwatch.SecurityNone }},
		{"reopen window zero", `"reopen_window":"0s"`,
			func(c email.ChannelConfig) bool { return c.ReopenWindow == 0 }},
		{"reopen window", `"reopen_window":"36h"`,
			func(c email.ChannelConfig) bool { return c.ReopenWindow == 36*time.Hour }},
		{"message id domain lower-cased", `"message_id_domain":"Mail.Acme.Example"`,
			func(c email.ChannelConfig) bool { return c.MessageIDDomain == "mail.acme.example" }},
		{"mailbox", `"mailbox":"Support/Inbound"`,
			func(c email.ChannelConfig) bool { return c.Mailbox == "Support/Inbound" }},
		{"max size", `"max_size":1048576`,
			func(c email.ChannelConfig) bool { return c.MaxSize == 1<<20 }},
		{"start from now", `"import_existing":false`,
			func(c email.ChannelConfig) bool { return !c.ImportExisting }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := email.ParseConfig(json.RawMessage(patch(tc.patch)))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("ParseConfig = %+v", c)
			}
		})
	}
}

// patch overrides fields of minimalConfig.
func patch(fields string) string {
	var base, over map[string]any
	json.Unmarshal([]byte(minimalConfig), &base)
	if err := json.Unmarshal([]byte("{"+fields+"}"), &over); err != nil {
		panic(err)
	}
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	b, _ := json.Marshal(base)
	return string(b)
}

func TestParseConfigRefuses(t *testing.T) {
	cases := []struct{ name, patch, want string }{
		{"no imap_addr", `"imap_addr":null`, "imap_addr"},
		{"imap_addr without port", `"imap_addr":"imap.acme.example"`, "imap_addr"},
		{"imap port zero", `"imap_addr":"imap.acme.example:0"`, "imap_addr"},
		{"bad imap security", `"imap_security":"ssl"`, "imap_security"},
		{"plaintext imap off loopback", `"imap_security":"none"`, "loopback"},
		{"no username", `"username":null`, "username"},
		{"no smtp_addr", `"smtp_addr":null`, "smtp_addr"},
		{"bad smtp security", `"smtp_security":"plain"`, "smtp_security"},
		{"no from_address", `"from_address":null`, "from_address"},
		{"from_address with a name", `"from_address":"Support <support@acme.example>"`, "from_address"},
		{"from_address without domain", `"from_address":"support"`, "from_address"},
		{"line break in from_name", `"from_name":"Acme\r\nBcc: x@evil.example"`, "from_name"},
		{"bad message id domain", `"message_id_domain":"acme_example"`, "message_id_domain"},
		{"negative max size", `"max_size":-1`, "max_size"},
		{"huge max size", `"max_size":1073741824`, "max_size"},
		{"bad reopen window", `"reopen_window":"a week"`, "reopen_window"},
		{"negative reopen window", `"reopen_window":"-1h"`, "reopen_window"},
		{"number as reopen window", `"reopen_window":3600`, "reopen_window"},
		{"long mailbox", `"mailbox":"` + strings.Repeat("m", 300) + `"`, "mailbox"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := email.ParseConfig(json.RawMessage(patch(tc.patch)))
			if !errors.Is(err, conv.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig = %v, want conv.ErrInvalid naming %s", err, tc.want)
			}
		})
	}
	for _, raw := range []string{"", "null", "[]", "{", `{"imap_addr":1}`} {
		if _, err := email.ParseConfig(json.RawMessage(raw)); !errors.Is(err, conv.ErrInvalid) {
			t.Errorf("ParseConfig(%q) = %v, want conv.ErrInvalid", raw, err)
		}
	}
}

// TestKind goes through the hub's registry as the admin CLI does.
func TestKind(t *testing.T) {
	reg := hub.NewRegistry(email.Kind())
	withSecrets := func(extra string) []byte {
		return []byte(patch(`"password":"imap-pw"` + extra))
	}

	cfg, secrets, err := reg.Split(conv.KindEmail, withSecrets(`,"smtp_password":"smtp-pw"`))
	if err != nil {
		t.Fatal(err)
	}
	if secrets["password"] != "imap-pw" || secrets["smtp_password"] != "smtp-pw" || len(secrets["thread_key"]) != 64 {
		t.Fatalf("secrets = %v; want both passwords and a generated 32-byte hex thread_key", secretNames(secrets))
	}
	if strings.Contains(string(cfg), "pw") {
		t.Fatalf("config %s keeps a secret", cfg)
	}
	_, again, err := reg.Split(conv.KindEmail, withSecrets(`,"thread_key":"`+secrets["thread_key"]+`"`))
	if err != nil || again["thread_key"] != secrets["thread_key"] {
		t.Fatalf("a given thread_key is not kept: %v", err)
	}

	for _, tc := range []struct{ name, raw, want string }{
		{"misspelled secret", string(withSecrets(`,"smtp_pasword":"x"`)), "unknown field"},
		{"no password", patch(``), "password"},
		{"short thread key", string(withSecrets(`,"thread_key":"short"`)), "thread_key"},
		{"line break in password", patch(`"password":"a\nb"`), "password"},
		{"bad config", string(withSecrets(`,"imap_security":"ssl"`)), "imap_security"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := reg.Split(conv.KindEmail, []byte(tc.raw))
			if !errors.Is(err, conv.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Split = %v, want conv.ErrInvalid naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "imap-pw") {
				t.Fatalf("error echoes the password: %v", err)
			}
		})
	}
}

func secretNames(s map[string]string) []string {
	return conv.Channel{Secrets: s}.SecretNames()
}

// FuzzParseConfig: any bytes give a checked config or conv.ErrInvalid,
// never a panic; an accepted config has every default filled, bounds kept,
// and reads back the same from its own JSON.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimalConfig))
	f.Add([]byte(patch(`"imap_addr":"127.0.0.1:143","imap_security":"none","smtp_username":"","reopen_window":"0s"`)))
	f.Add([]byte(patch(`"smtp_addr":"[::1]:465","max_size":1,"message_id_domain":"m.acme.example","mailbox":"收件箱"`)))
	f.Add([]byte(`{"imap_addr":"a:1","username":"u","smtp_addr":"b:2","from_address":"x@y","reopen_window":"1h1m"}`))
	f.Add([]byte(`{"imap_addr":"a:1","username":"\u0000","smtp_addr":"b:2","from_address":"x@y"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := email.ParseConfig(raw)
		if err != nil {
			if !errors.Is(err, conv.ErrInvalid) {
				t.Fatalf("error %v does not wrap conv.ErrInvalid", err)
			}
			return
		}
		if c.Mailbox == "" || c.Username == "" || c.MessageIDDomain == "" || c.MaxSize <= 0 || c.MaxSize > email.MaxMaxSize ||
			c.ReopenWindow < 0 || c.IMAPSecurity == "" || c.SMTPSecurity == "" {
			t.Fatalf("accepted config with a missing or out-of-bounds field: %+v", c)
		}
		for _, s := range []string{c.IMAPAddr, c.Username, c.Mailbox, c.SMTPAddr, c.SMTPUsername, c.FromAddress, c.FromName, c.MessageIDDomain} {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("accepted a control character: %+v", c)
			}
		}
		if c.IMAPSecurity == imapwatch.SecurityNone && !strings.HasPrefix(c.IMAPAddr, "127.") &&
			!strings.HasPrefix(strings.ToLower(c.IMAPAddr), "localhost:") && !strings.HasPrefix(c.IMAPAddr, "[::1]:") {
			t.Fatalf("plaintext IMAP off loopback accepted: %s", c.IMAPAddr)
		}
		again, err := email.ParseConfig(roundTrip(c))
		if err != nil || again != c {
			t.Fatalf("config does not read back: %+v\n%+v, %v", c, again, err)
		}
	})
}

// roundTrip writes c back as config JSON.
func roundTrip(c email.ChannelConfig) []byte {
	b, _ := json.Marshal(map[string]any{
		"imap_addr": c.IMAPAddr, "imap_security": c.IMAPSecurity, "username": c.Username, "mailbox": c.Mailbox,
		"smtp_addr": c.SMTPAddr, "smtp_security": c.SMTPSecurity, "smtp_username": c.SMTPUsername,
		"from_address": c.FromAddress, "from_name": c.FromName, "max_size": c.MaxSize,
		"message_id_domain": c.MessageIDDomain, "reopen_window": c.ReopenWindow.String(),
	})
	return b
}

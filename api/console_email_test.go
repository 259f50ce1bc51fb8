package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-hq/switchboard/api"
	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/outbound"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// recordReplies keeps the replies postMessage hands to core.
type recordReplies struct {
	mu  sync.Mutex
	got []outbound.Reply
}

func (r *recordReplies) Reply(_ context.Context, tenant conv.TenantID, rep outbound.Reply) (conv.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rep)
	return conv.Message{ID: conv.MessageID(len(r.got)), TenantID: tenant, ConversationID: rep.ConversationID, Direction: conv.Out,
		Sender: rep.Sender, Parts: rep.Parts, Status: conv.MsgPending}, nil
}

func (r *recordReplies) take() []outbound.Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

// TestPostEmailReply: the agent API takes an email part (subject, to, cc)
// only as the first part of a reply on an email conversation, refuses any
// other header and anything that is not one line or not an address, and
// passes core exactly the checked part, then the text.
func TestPostEmailReply(t *testing.T) {
	ctx := context.Background()
	a := newAcme(t, auth.Config{})
	st, ids, tenant, ann := a.st, a.ids, a.tenant, a.ann
	convOn := map[conv.ChannelKind]conv.ConversationID{}
	for _, kind := range []conv.ChannelKind{conv.KindEmail, conv.KindWebchat, conv.KindTest} {
		err := st.Tx(ctx, tenant, func(tx storage.Tx) error {
			ch := conv.Channel{ID: conv.NewID[conv.ChannelID](ids), TenantID: tenant, Kind: kind, Name: string(kind), CreatedAt: time.Now()}
			if err := tx.CreateChannel(ctx, ch); err != nil {
				return err
			}
			who, _, err := tx.EnsureContact(ctx, conv.Identity{Kind: "email", ExternalID: string(kind) + "@customer.example"}, "Cus Tomer")
			if err != nil {
				return err
			}
			c, _, err := tx.OpenConversation(ctx, ch.ID, who.ID, conv.Conversation{ID: conv.NewID[conv.ConversationID](ids), CreatedAt: time.Now()})
			convOn[kind] = c.ID
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	replies := &recordReplies{}
	srv, err := api.New(api.Config{Auth: a.auth, Console: a.console(t, replies)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	tok := loginAnn(t, hs.URL)

	email := func(fields string) string { return `{"type":"email","email":{` + fields + `}}` }
	text := `{"type":"text","text":"Sorry about that — a new kettle is on its way."}`
	many := make([]string, conv.MaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"c%d@x.example"`, i)
	}
	for _, tc := range []struct {
		name string
		kind conv.ChannelKind
		body string
		code int
		// want is the parts core gets, as JSON, when code is 201.
		want string
		// msg is in the error message when code is not 201.
		msg string
	}{
		{name: "email part then text", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"subject":"  Re: Kettle  ","to":["Cus Tomer <cus@customer.example>"],"cc":["bob@customer.example"," ","\"Doe, Jane\" <jane@customer.example>"]`) + `,` + text + `]}`,
			code: 201,
			want: `[{"type":"email","email":{"subject":"Re: Kettle","to":["Cus Tomer <cus@customer.example>"],"cc":["bob@customer.example","\"Doe, Jane\" <jane@customer.example>"]}},` + text + `]`},
		{name: "text field goes after the email part", kind: conv.KindEmail,
			body: `{"text":"See attached.","parts":[` + email(`"subject":"Invoice","to":["张三 <zhang@customer.example>"]`) + `]}`,
			code: 201,
			want: `[{"type":"email","email":{"subject":"Invoice","to":["张三 <zhang@customer.example>"]}},{"type":"text","text":"See attached."}]`},
		{name: "headers on the loopback test channel", kind: conv.KindTest,
			body: `{"parts":[` + email(`"subject":"Hi"`) + `,` + text + `]}`,
			code: 201, want: `[{"type":"email","email":{"subject":"Hi"}},` + text + `]`},
		{name: "plain text on email needs no email part", kind: conv.KindEmail,
			body: `{"text":"ok"}`, code: 201, want: `[{"type":"text","text":"ok"}]`},
		{name: "email part on web chat", kind: conv.KindWebchat,
			body: `{"parts":[` + email(`"subject":"Hi"`) + `,` + text + `]}`, code: 400, msg: "email conversation"},
		{name: "email part not first", kind: conv.KindEmail,
			body: `{"parts":[` + text + `,` + email(`"subject":"Hi"`) + `]}`, code: 400, msg: "first part"},
		{name: "from set by the agent", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"subject":"Hi","from":"ceo@acme.example"`) + `,` + text + `]}`, code: 400, msg: "only subject, to and cc"},
		{name: "threading set by the agent", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"in_reply_to":"<x@y>"`) + `,` + text + `]}`, code: 400, msg: "only subject, to and cc"},
		{name: "html set by the agent", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"html":"/v1/media/1/x.htm"`) + `,` + text + `]}`, code: 400, msg: "only subject, to and cc"},
		{name: "subject with a line break", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"subject":"Hi\r\nBcc: all@acme.example"`) + `,` + text + `]}`, code: 400, msg: "single line"},
		{name: "recipient with a line break", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"to":["cus@customer.example\nBcc: all@acme.example"]`) + `,` + text + `]}`, code: 400, msg: "single line"},
		{name: "recipient that is no address", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"cc":["Bob"]`) + `,` + text + `]}`, code: 400, msg: "not an email address"},
		{name: "too many recipients", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"cc":[`+strings.Join(many, ",")+`]`) + `,` + text + `]}`, code: 400, msg: "recipients"},
		{name: "email part without email", kind: conv.KindEmail,
			body: `{"parts":[{"type":"email"},` + text + `]}`, code: 400, msg: "needs email"},
		{name: "headers and nothing to send", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"subject":"Hi"`) + `]}`, code: 400, msg: "needs text or attachments"},
		{name: "empty text part", kind: conv.KindEmail,
			body: `{"parts":[` + email(`"subject":"Hi"`) + `,{"type":"text","text":"  "}]}`, code: 400, msg: "empty text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _ := do(t, "POST", hs.URL+"/v1/conversations/"+convOn[tc.kind].String()+"/messages", tok, tc.body)
			got := replies.take()
			if code != tc.code {
				t.Fatalf("POST = %d %v, want %d", code, out, tc.code)
			}
			if code != 201 {
				e, _ := out["error"].(map[string]any)
				if msg, _ := e["message"].(string); !strings.Contains(msg, tc.msg) {
					t.Errorf("error %v does not say %q", out, tc.msg)
				}
				if len(got) != 0 {
					t.Errorf("a refused reply reached core: %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].ConversationID != convOn[tc.kind] {
				t.Fatalf("core got %+v", got)
			}
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			enc.Encode(got[0].Parts)
			if strings.TrimSpace(b.String()) != tc.want {
				t.Errorf("parts = %s\nwant    %s", b.String(), tc.want)
			}
			if err := conv.ValidateParts(got[0].Parts); err != nil {
				t.Errorf("parts core got do not validate: %v", err)
			}
		})
	}

	// Another tenant's or an unknown conversation is not found, headers or
	// not.
	code, out, _ := do(t, "POST", hs.URL+"/v1/conversations/12345/messages", tok, `{"parts":[`+email(`"subject":"Hi"`)+`,`+text+`]}`)
	if code != 404 {
		t.Fatalf("email reply to an unknown conversation = %d %v", code, out)
	}

	// A sent mail cannot be taken back: recall is refused, a web chat
	// reply of the same agent is recalled.
	var sentMail, chatReply conv.Message
	err = st.Tx(ctx, tenant, func(tx storage.Tx) error {
		me := conv.Sender{Type: conv.SenderAgent, ID: ann.ID.String(), Name: "Ann"}
		var err error
		if sentMail, err = tx.AppendMessage(ctx, conv.Message{ConversationID: convOn[conv.KindEmail], Direction: conv.Out,
			Sender: me, Status: conv.MsgSent, CreatedAt: time.Now(),
			Parts: []conv.Part{{Type: conv.PartEmail, Email: &conv.Email{Subject: "Re: Kettle"}}, {Type: conv.PartText, Text: "On its way."}}}); err != nil {
			return err
		}
		chatReply, err = tx.AppendMessage(ctx, conv.Message{ConversationID: convOn[conv.KindWebchat], Direction: conv.Out,
			Sender: me, Status: conv.MsgSent, CreatedAt: time.Now(), Parts: []conv.Part{{Type: conv.PartText, Text: "oops"}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := do(t, "POST", hs.URL+"/v1/messages/"+sentMail.ID.String()+"/recall", tok, ``); code != 409 ||
		!strings.Contains(fmt.Sprint(out), "cannot be recalled") {
		t.Fatalf("recall of a sent mail = %d %v, want 409", code, out)
	}
	if code, out, _ := do(t, "POST", hs.URL+"/v1/messages/"+chatReply.ID.String()+"/recall", tok, ``); code != 200 {
		t.Fatalf("recall of a web chat reply = %d %v, want 200", code, out)
	}
}

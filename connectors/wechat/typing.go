package wechat

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// typingRepeat is how often WeChat's "typing" may be sent to one customer:
// it shows for 15 seconds, and a second one sooner is refused (45081).
const typingRepeat = 15 * time.Second

// typingState remembers, per conversation, when "typing" last went out,
// and queues the calls so that each conversation's go out in order (one
// goroutine per conversation while it has calls pending, none otherwise).
type typingState struct {
	mu   sync.Mutex
	sent map[conv.ConversationID]time.Time
	// want holds the states not yet sent, per conversation, at most two:
	// a quick on-then-off still shows "typing" once, and longer toggling
	// collapses instead of queueing without bound.
	want    map[conv.ConversationID][]bool
	running map[conv.ConversationID]bool
}

// AgentTyping shows the customer of an Official Account conversation that
// an agent is typing (customer-service typing), and cancels it when the
// agent stops. Mini programs have no such API. It returns at once; the
// call is best effort: WeChat refuses typing outside its window, and
// nothing depends on it.
func (c *Connector) AgentTyping(ctx context.Context, cv conv.Conversation, on bool) {
	now := c.cfg.Now()
	if c.notWeChat(cv.ChannelID, now) {
		return // a web chat (or other) conversation: nothing to start
	}
	t := &c.typing
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sent == nil {
		t.sent = make(map[conv.ConversationID]time.Time)
		t.want = make(map[conv.ConversationID][]bool)
		t.running = make(map[conv.ConversationID]bool)
	}
	last, shown := t.sent[cv.ID]
	switch {
	case on && shown && now.Sub(last) < typingRepeat:
		return // still showing
	case on:
		if len(t.sent) > 10_000 {
			for id, at := range t.sent {
				if now.Sub(at) > typingRepeat {
					delete(t.sent, id)
				}
			}
		}
		t.sent[cv.ID] = now
	case !shown:
		return // nothing to cancel
	default:
		delete(t.sent, cv.ID)
	}
	q := t.want[cv.ID]
	switch {
	case len(q) == 0 || (len(q) == 1 && q[0] != on):
		q = append(q, on)
	case len(q) == 2:
		q[1] = on
		if q[0] == q[1] {
			q = q[:1]
		}
	}
	t.want[cv.ID] = q
	if !t.running[cv.ID] {
		t.running[cv.ID] = true
		go c.sendTyping(context.WithoutCancel(ctx), cv)
	}
}

// sendTyping sends a conversation's wanted typing states in order, then
// exits.
func (c *Connector) sendTyping(ctx context.Context, cv conv.Conversation) {
	t := &c.typing
	for {
		t.mu.Lock()
		q := t.want[cv.ID]
		if len(q) == 0 {
			delete(t.want, cv.ID)
			delete(t.running, cv.ID)
			t.mu.Unlock()
			return
		}
		on := q[0]
		t.want[cv.ID] = q[1:]
		t.mu.Unlock()
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c.typingCall(callCtx, cv, on)
		cancel()
	}
}

func (c *Connector) typingCall(ctx context.Context, cv conv.Conversation, on bool) {
	ch, err := c.channel(ctx, cv.ChannelID)
	if err != nil || ch.Kind != conv.KindWeChatOA {
		return
	}
	var contact conv.Contact
	if err := c.cfg.Store.Read(ctx, cv.TenantID, func(tx storage.Tx) error {
		var err error
		contact, err = tx.Contact(ctx, cv.ContactID)
		return err
	}); err != nil {
		return
	}
	openid, ok := openIDOf(contact.Identities, ch.cfg.AppID)
	if !ok {
		return
	}
	api, err := c.client(ch)
	if err != nil {
		return
	}
	if err := api.Typing(ctx, openid, on); err != nil {
		c.cfg.Logger.DebugContext(ctx, "wechat typing not shown", "conversation", cv.ID, "err", err)
	}
}

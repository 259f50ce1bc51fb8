package wechat

import (
	"context"
	"errors"
	"sync"

	"github.com/switchboard-hq/switchboard/connectors/wechat/wxapi"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// UnionIDIdentity is the identity of a person across the apps of one
// WeChat Open Platform account.
func UnionIDIdentity(unionid string) conv.Identity {
	return conv.Identity{Kind: IdentityUnionID, ExternalID: unionid}
}

// checkedContacts remembers contacts whose unionid was already looked up
// on this node, so a busy customer costs one user/info call, not one per
// conversation.
type checkedContacts struct {
	mu   sync.Mutex
	seen map[checkedKey]struct{}
}

// checkedKey is a contact on one app: a contact checked on an app with no
// Open Platform binding may still have a unionid on another.
type checkedKey struct {
	contact conv.ContactID
	app     string
}

func (s *checkedContacts) once(id checkedKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[checkedKey]struct{})
	}
	if len(s.seen) > 100_000 {
		clear(s.seen)
	}
	if _, ok := s.seen[id]; ok {
		return false
	}
	s.seen[id] = struct{}{}
	return true
}

func (s *checkedContacts) forget(id checkedKey) {
	s.mu.Lock()
	delete(s.seen, id)
	s.mu.Unlock()
}

// Events joins a customer's identities across apps. For a conversation
// opened on an Official Account, it asks WeChat's user info API for the
// customer's unionid; when there is one, the contact takes the unionid
// identity, and if another contact already has it (the same person on
// another Official Account or on a Mini Program whose unionid is known),
// the two become one contact with one history. Mini programs have no user
// info API: their openids join through the unionid when one is attached
// to the contact by other means.
func (c *Connector) Events(ctx context.Context, events []conv.Event) error {
	for _, e := range events {
		if e.Type != conv.EventConversationOpened || e.Conversation == nil {
			continue
		}
		if err := c.joinUnionID(ctx, *e.Conversation); err != nil {
			return err
		}
	}
	return nil
}

func (c *Connector) joinUnionID(ctx context.Context, cv conv.Conversation) error {
	ch, err := c.channel(ctx, cv.ChannelID)
	if errors.Is(err, conv.ErrNotFound) {
		return nil // not a WeChat channel
	}
	if err != nil {
		return err
	}
	ck := checkedKey{contact: cv.ContactID, app: ch.cfg.AppID}
	if ch.Kind != conv.KindWeChatOA || !c.checked.once(ck) {
		return nil
	}
	var contact conv.Contact
	if err := c.cfg.Store.Read(ctx, cv.TenantID, func(tx storage.Tx) error {
		var err error
		contact, err = tx.Contact(ctx, cv.ContactID)
		return err
	}); err != nil {
		if errors.Is(err, conv.ErrNotFound) {
			return nil // merged away meanwhile
		}
		c.checked.forget(ck)
		return err
	}
	for _, id := range contact.Identities {
		if id.Kind == IdentityUnionID {
			return nil
		}
	}
	openid, ok := openIDOf(contact.Identities, ch.cfg.AppID)
	if !ok {
		return nil
	}
	api, err := c.client(ch)
	if err != nil {
		return nil
	}
	info, err := api.UserInfo(ctx, openid)
	if err != nil {
		if wxapi.Retryable(err) {
			c.checked.forget(ck)
			return err
		}
		c.cfg.Logger.WarnContext(ctx, "wechat user info", "channel", ch.ID, "contact", contact.ID, "err", err)
		return nil
	}
	if info.UnionID == "" {
		return nil
	}
	err = c.cfg.Store.Tx(ctx, cv.TenantID, func(tx storage.Tx) error {
		u, created, err := tx.EnsureContact(ctx, UnionIDIdentity(info.UnionID), contact.Name)
		switch {
		case err != nil:
			return err
		case created:
			// Nobody had the unionid: it joins this contact.
			return tx.MergeContacts(ctx, u.ID, contact.ID)
		case u.ID != contact.ID:
			// The same person, known already: one contact, one history.
			c.cfg.Logger.InfoContext(ctx, "wechat contacts joined by unionid", "from", contact.ID, "into", u.ID)
			return tx.MergeContacts(ctx, contact.ID, u.ID)
		}
		return nil
	})
	if err != nil {
		c.checked.forget(ck) // the redelivered event tries again
	}
	return err
}

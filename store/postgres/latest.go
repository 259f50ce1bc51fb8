package postgres

import (
	"context"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func (t *tx) LatestConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID) (conv.Conversation, error) {
	c, err := t.scanConversation(t.pg.QueryRow(ctx, `SELECT `+conversationCols+` FROM conversations
		WHERE tenant_id = $1 AND contact_id = $2 AND channel_id = $3
		ORDER BY status = 'open' DESC, created_at DESC, id DESC LIMIT 1`, int64(t.tenant), int64(contact), int64(channel)))
	if err != nil {
		return conv.Conversation{}, fail("postgres.LatestConversation "+channel.String()+"/"+contact.String(), err)
	}
	return c, nil
}

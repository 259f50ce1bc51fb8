package sqlite

import (
	"context"
	"fmt"

	"github.com/switchboard-hq/switchboard/core/conv"
)

func (t *tx) LatestConversation(ctx context.Context, channel conv.ChannelID, contact conv.ContactID) (conv.Conversation, error) {
	c, err := t.scanConversation(t.queryRow(ctx, `SELECT `+conversationCols+` FROM conversations
		WHERE tenant_id = ? AND contact_id = ? AND channel_id = ?
		ORDER BY status = 'open' DESC, created_at DESC, id DESC LIMIT 1`, t.tenant, contact, channel))
	if err != nil {
		return conv.Conversation{}, fmt.Errorf("sqlite.LatestConversation %s/%s: %w", channel, contact, mapErr(err))
	}
	return c, nil
}

package email

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/imapwatch"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
)

// Channel state keys (storage.Tx.ChannelState) the connector writes.
const (
	// StateKeyPosition holds the mailbox position (JSON of Position) up
	// to which every mail has been handed to the bus.
	StateKeyPosition = "imap_position"
	// StateKeyStatus holds the watcher's Status as JSON.
	StateKeyStatus = "status"
)

// Watcher states, as Status.State.
const (
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StateAuthFailed   = "auth_failed"
	StateStopped      = "stopped"
)

// Status is what the node watching a channel's mailbox says about it,
// written on every change under StateKeyStatus for `switchboard channel
// list`. Only the lease holder writes it (a channel with a broken config
// is reported by every node, identically).
type Status struct {
	// State: connected, reconnecting, auth_failed (the server refused the
	// credentials; nothing is retried until the channel's config or
	// secrets change, or it is disabled and enabled again), stopped
	// (disabled, shutting down, or a config that cannot work: see Error).
	State string `json:"state"`
	// Error is why, for reconnecting, auth_failed and a stopped channel
	// with a bad config. It never holds a password.
	Error string `json:"error,omitempty"`
	// RetryInMS is the wait before the next attempt (reconnecting).
	RetryInMS int64     `json:"retry_in_ms,omitempty"`
	At        time.Time `json:"at"`
	// Holder is the node watching the mailbox.
	Holder      string `json:"holder,omitempty"`
	UIDValidity uint32 `json:"uid_validity,omitempty"`
	// LastMailAt is when the newest mail was handed to the bus.
	LastMailAt *time.Time `json:"last_mail_at,omitempty"`
	// Unreadable counts the mails that could not be parsed (each was
	// still ingested, with its raw bytes, for an agent to look at).
	Unreadable int `json:"unreadable,omitempty"`
	// Config fingerprints the settings the state was reached with (an
	// HMAC under the thread key, not a hash of the password): an
	// auth_failed is kept while it is unchanged, across restarts and nodes.
	Config string `json:"config,omitempty"`
}

// Position is imapwatch.Position as stored under StateKeyPosition.
type Position struct {
	UIDValidity uint32 `json:"uid_validity"`
	UID         uint32 `json:"uid"`
	RescanUntil uint32 `json:"rescan_until,omitempty"`
}

// ReadStatus returns the status stored for channel, ErrNotFound when no
// watcher has written one yet.
func ReadStatus(ctx context.Context, tx storage.Tx, channel conv.ChannelID) (Status, error) {
	var s Status
	v, err := tx.ChannelState(ctx, channel, StateKeyStatus)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return s, fmt.Errorf("email status of %s: %w: %v", channel, conv.ErrInvalid, err)
	}
	return s, nil
}

// readPosition returns the saved position; found is false, and the
// position the zero one (the whole mailbox), when there is none. A stored
// value that does not decode is an error, not a reason to re-read the
// mailbox from the start.
func readPosition(ctx context.Context, tx storage.Tx, channel conv.ChannelID) (p imapwatch.Position, found bool, err error) {
	v, err := tx.ChannelState(ctx, channel, StateKeyPosition)
	if errors.Is(err, conv.ErrNotFound) {
		return imapwatch.Position{}, false, nil
	}
	if err != nil {
		return imapwatch.Position{}, false, err
	}
	var sp Position
	if err := json.Unmarshal([]byte(v), &sp); err != nil {
		return imapwatch.Position{}, false, fmt.Errorf("email position of %s: %w: %v", channel, conv.ErrInvalid, err)
	}
	return imapwatch.Position{UIDValidity: sp.UIDValidity, UID: sp.UID, RescanUntil: sp.RescanUntil}, true, nil
}

// SavePosition stores p as channel's mailbox position: the watcher
// resumes after it. With imapwatch.End it starts a channel from now rather
// than from the mailbox's history.
func SavePosition(ctx context.Context, tx storage.Tx, channel conv.ChannelID, p imapwatch.Position, at time.Time) error {
	b, _ := json.Marshal(Position{UIDValidity: p.UIDValidity, UID: p.UID, RescanUntil: p.RescanUntil})
	return tx.SetChannelState(ctx, channel, StateKeyPosition, string(b), at)
}

func encodeStatus(s Status) string {
	b, _ := json.Marshal(s)
	return string(b)
}

package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Defaults. They are production values; tests that shorten them say why.
const (
	DefaultAckWait     = 30 * time.Second
	DefaultSubscribers = 64
	// DefaultMaxAckPending bounds a consumer group's unacked messages
	// across all nodes (JetStream's own default is 1,000).
	DefaultMaxAckPending = 256
	DefaultMaxDeliver    = 10
	DefaultMaxAge        = 7 * 24 * time.Hour
	// DedupWindow is how long JetStream remembers a message UUID: a message
	// republished with the same UUID within it is stored once.
	DedupWindow = 2 * time.Minute
)

// Config configures a Bus.
type Config struct {
	// URL of an external NATS server or cluster. Empty runs a NATS server
	// inside the process (no listening port) with its store in DataDir.
	URL string
	// DataDir is the node's data directory. The embedded server keeps its
	// JetStream file store under DataDir/nats. Unused with URL.
	DataDir string
	// NodeID names this node's connections and embedded server, so that
	// `nats server report connections` shows which node is which.
	NodeID string
	// Logger receives the bus's own logs, watermill's (per-message chatter
	// lowered to debug and trace) and the embedded server's.
	Logger *slog.Logger

	// AckWait is how long JetStream waits for a handler's ack before it
	// delivers the message again. It bounds a handler's run, in-process
	// retries included; it is also how long messages that were in flight
	// at a crash or shutdown wait before another node gets them.
	AckWait time.Duration
	// Subscribers is how many messages one handler has in flight at once
	// (watermill-nats queue subscriptions per subscriber). Ingest relies on
	// it to gather messages into one commit.
	Subscribers int
	// MaxAckPending is how many messages a consumer group (every node's
	// subscribers together) may hold unacked; JetStream sends no more until
	// some are acked. It keeps an overloaded handler's backlog on the
	// server, where nothing waits against AckWait, instead of in the
	// nodes' buffers: with 1,000 pending inbound batches of up to 64
	// envelopes, a slow store made messages outlive AckWait, come again
	// while the first copy was still being stored, and collide.
	MaxAckPending int
	// MaxDeliver is how many times a message is delivered to a handler
	// that keeps failing (transient errors, panics, ack timeouts) before it
	// goes to the poison topic.
	MaxDeliver int
	// Retry is the in-process retry of a failing handler within one
	// delivery; permanent errors (conv.Permanent) are not retried.
	Retry Retry
	// Redelivery is the delay before JetStream redelivers a message whose
	// handler failed after its in-process retries: Initial doubled per
	// delivery up to Max.
	Redelivery Backoff
	// MaxAge is how long streams keep messages (acked or not). A consumer
	// group that is created anew receives everything still kept.
	MaxAge time.Duration
	// Replicas of each stream; 3 on a production cluster. Ignored (1) when
	// embedded.
	Replicas int
}

// Retry configures in-process retries with exponential backoff.
type Retry struct {
	// MaxRetries after the first attempt; 0 means the default (3), -1 none.
	MaxRetries      int
	InitialInterval time.Duration
	MaxInterval     time.Duration
}

// Backoff is an exponential delay: InitialInterval doubled per attempt,
// capped at MaxInterval.
type Backoff struct {
	InitialInterval time.Duration
	MaxInterval     time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NodeID == "" {
		c.NodeID = "0"
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Subscribers == 0 {
		c.Subscribers = DefaultSubscribers
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	switch c.Retry.MaxRetries {
	case 0:
		c.Retry.MaxRetries = 3
	case -1:
		c.Retry.MaxRetries = 0
	}
	if c.Retry.InitialInterval == 0 {
		c.Retry.InitialInterval = 100 * time.Millisecond
	}
	if c.Retry.MaxInterval == 0 {
		c.Retry.MaxInterval = 2 * time.Second
	}
	if c.Redelivery.InitialInterval == 0 {
		c.Redelivery.InitialInterval = time.Second
	}
	if c.Redelivery.MaxInterval == 0 {
		c.Redelivery.MaxInterval = time.Minute
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Replicas == 0 || c.URL == "" {
		c.Replicas = 1
	}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("bus.Config: %w: "+format, append([]any{conv.ErrInvalid}, args...)...))
	}
	if c.URL == "" && c.DataDir == "" {
		bad("DataDir is required for the embedded server (URL is empty)")
	}
	if c.AckWait < 100*time.Millisecond {
		bad("AckWait %s is below 100ms", c.AckWait)
	}
	if c.Subscribers < 1 {
		bad("Subscribers %d is below 1", c.Subscribers)
	}
	if c.MaxAckPending < c.Subscribers {
		bad("MaxAckPending %d is below Subscribers %d", c.MaxAckPending, c.Subscribers)
	}
	if c.MaxDeliver < 1 {
		bad("MaxDeliver %d is below 1", c.MaxDeliver)
	}
	if c.Retry.MaxRetries < 0 {
		bad("Retry.MaxRetries %d is below -1", c.Retry.MaxRetries)
	}
	if c.Retry.InitialInterval <= 0 || c.Retry.MaxInterval < c.Retry.InitialInterval {
		bad("Retry intervals %s..%s are not increasing and positive", c.Retry.InitialInterval, c.Retry.MaxInterval)
	}
	// A handler still retrying when AckWait ends is delivered again to a
	// second handler while the first one runs: two copies at once.
	if budget := time.Duration(c.Retry.MaxRetries) * c.Retry.MaxInterval; budget >= c.AckWait {
		bad("Retry budget %d×%s reaches AckWait %s", c.Retry.MaxRetries, c.Retry.MaxInterval, c.AckWait)
	}
	if c.Redelivery.InitialInterval <= 0 || c.Redelivery.MaxInterval < c.Redelivery.InitialInterval {
		bad("Redelivery intervals %s..%s are not increasing and positive", c.Redelivery.InitialInterval, c.Redelivery.MaxInterval)
	}
	if c.MaxAge < DedupWindow {
		bad("MaxAge %s is below the dedup window %s", c.MaxAge, DedupWindow)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("Replicas %d is outside 1..5", c.Replicas)
	}
	return errors.Join(errs...)
}

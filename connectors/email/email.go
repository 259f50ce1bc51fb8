package email

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-hq/switchboard/connectors/email/mail"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/internal/media"
)

// Publisher is the part of hub.Publisher the connector uses.
type Publisher interface {
	PublishInbound(ctx context.Context, in conv.Inbound) error
	PublishDelivery(ctx context.Context, d conv.Delivery) error
}

// Lease elects the one node that watches a mailbox (store/memory.Leases on
// one node, store/redis.Leases on many). Acquire takes or renews key for
// holder until ttl from now and reports whether holder has it. When the
// Lease also has Release(ctx, key, holder) error, a stopping watcher hands
// its mailbox over at once instead of after ttl.
type Lease interface {
	Acquire(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
}

type leaseReleaser interface {
	Release(ctx context.Context, key, holder string) error
}

// Defaults for Config.
const (
	DefaultLeaseTTL    = 15 * time.Second
	DefaultRescanEvery = 30 * time.Second
	DefaultBackoffMin  = time.Second
	DefaultBackoffMax  = 5 * time.Minute
)

// Config configures a Connector.
type Config struct {
	Store storage.Store
	Bus   Publisher
	// Media keeps every mail's raw bytes, HTML and attachments, and holds
	// the files agents attach to replies. Required.
	Media *media.Store
	// Lease makes one node at a time watch each mailbox. Required.
	Lease Lease
	// Holder names this node in the leases (default: random).
	Holder string
	Logger *slog.Logger
	// Now stamps statuses and envelopes (default time.Now). Leases and
	// backoff run on real time.
	Now func() time.Time
	// LeaseTTL is how long a node's claim on a mailbox lasts without
	// renewal (renewed every LeaseTTL/3): another node takes over a dead
	// node's mailboxes within about LeaseTTL. Default 15 s.
	LeaseTTL time.Duration
	// RescanEvery is how often the list of email channels is read again,
	// so new, changed, disabled and removed channels are picked up.
	// Default 30 s.
	RescanEvery time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts, doubled
	// per failure: IMAP reconnects and restarts of a watch whose mail
	// could not be handed to the bus. Defaults 1 s and 5 min.
	BackoffMin, BackoffMax time.Duration
	// TLSConfig is used for IMAP and SMTP (nil: the system roots); tests
	// set RootCAs.
	TLSConfig *tls.Config
	// Dial opens IMAP and SMTP connections (nil: a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) setDefaults() {
	if c.Holder == "" {
		b := make([]byte, 8)
		rand.Read(b)
		c.Holder = "email-" + hex.EncodeToString(b)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.RescanEvery <= 0 {
		c.RescanEvery = DefaultRescanEvery
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil || c.Bus == nil || c.Media == nil || c.Lease == nil:
		return fmt.Errorf("email: %w: Config.Store, Bus, Media and Lease are required", conv.ErrInvalid)
	case c.LeaseTTL < 30*time.Millisecond:
		return fmt.Errorf("email: %w: LeaseTTL %s is too short to renew", conv.ErrInvalid, c.LeaseTTL)
	}
	return nil
}

// Connector serves email channels: Run watches their mailboxes, Outbound
// sends agents' replies.
type Connector struct {
	cfg Config
	log *slog.Logger
	// fpKey keys the fingerprints of channels without a thread key.
	fpKey []byte

	sent sentCache

	mu      sync.Mutex
	running bool
	sups    map[conv.ChannelID]*supervisor // Run's goroutine only
}

// New checks cfg and returns a Connector.
func New(cfg Config) (*Connector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &Connector{cfg: cfg, log: cfg.Logger.With("connector", "email"), fpKey: key,
		sups: make(map[conv.ChannelID]*supervisor)}, nil
}

// Run watches the mailbox of every enabled email channel of every tenant
// until ctx ends, then stops the watchers (handing their leases over) and
// returns nil. The channel list is read every RescanEvery: a new channel
// gets a watcher, a changed one (config or secrets) a new watcher, a
// disabled or removed one none. Run may be called once.
func (c *Connector) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return errors.New("email: Run called twice")
	}
	c.running = true
	c.mu.Unlock()

	t := time.NewTicker(c.cfg.RescanEvery)
	defer t.Stop()
	for {
		c.rescan(ctx)
		select {
		case <-ctx.Done():
			c.stopAll()
			return nil
		case <-t.C:
		}
	}
}

// rescan brings the supervisors in line with the stored channels. A
// tenant whose channels cannot be listed keeps its supervisors as they are.
func (c *Connector) rescan(ctx context.Context) {
	tenants, err := c.cfg.Store.Tenants(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("email: listing tenants failed; channels unchanged", "err", err)
		}
		return
	}
	want := make(map[conv.ChannelID]conv.Channel)
	listed := make(map[conv.TenantID]bool)
	for _, t := range tenants {
		var chans []conv.Channel
		err := c.cfg.Store.Read(ctx, t.ID, func(tx storage.Tx) error {
			var err error
			chans, err = tx.Channels(ctx)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("email: listing channels failed; the tenant's channels unchanged", "tenant", t.ID, "err", err)
			}
			continue
		}
		listed[t.ID] = true
		for _, ch := range chans {
			if ch.Kind == conv.KindEmail && !ch.Disabled {
				want[ch.ID] = ch
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	tenantGone := func(t conv.TenantID) bool {
		return !slices.ContainsFunc(tenants, func(x conv.Tenant) bool { return x.ID == t })
	}
	for id, s := range c.sups {
		if _, ok := want[id]; ok || (!listed[s.ch.TenantID] && !tenantGone(s.ch.TenantID)) {
			continue
		}
		c.log.Info("email: channel disabled or removed; stopping its watcher", "channel", id)
		s.stop(true)
		delete(c.sups, id)
	}
	for id, ch := range want {
		fp := c.fingerprint(ch)
		if s, ok := c.sups[id]; ok {
			if s.fp == fp {
				continue
			}
			c.log.Info("email: channel changed; restarting its watcher", "channel", id)
			// Stopped before the new one starts: both would hold the
			// lease under this node's name.
			s.stop(false)
		}
		c.sups[id] = c.supervise(ctx, ch, fp)
	}
}

func (c *Connector) stopAll() {
	var wg sync.WaitGroup
	for id, s := range c.sups {
		wg.Go(func() { s.stop(false) })
		delete(c.sups, id)
	}
	wg.Wait()
}

// fingerprint identifies a channel's settings, secrets included, so that
// any change restarts its watcher and clears an auth_failed. It is shown
// in the status, so it is an HMAC under the channel's own thread key (a
// plain hash of a password could be tested against guesses).
func (c *Connector) fingerprint(ch conv.Channel) string {
	key := []byte(ch.Secrets[SecretThreadKey])
	if len(key) < mail.MinKeyLen {
		key = c.fpKey
	}
	names := ch.SecretNames()
	secrets := make([][2]string, len(names))
	for i, n := range names {
		secrets[i] = [2]string{n, ch.Secrets[n]}
	}
	b, _ := json.Marshal(struct {
		Config  json.RawMessage `json:"c"`
		Secrets [][2]string     `json:"s"`
	}{ch.Config, secrets})
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// channel is an email channel ready to use.
type channel struct {
	conv.Channel
	cfg          ChannelConfig
	password     string
	smtpPassword string
	threadKey    []byte
}

// newChannel checks a stored channel's config and secrets.
func newChannel(ch conv.Channel) (*channel, error) {
	cfg, err := ParseConfig(ch.Config)
	if err != nil {
		return nil, err
	}
	c := &channel{Channel: ch, cfg: cfg, password: ch.Secrets[SecretPassword], threadKey: []byte(ch.Secrets[SecretThreadKey])}
	if c.password == "" {
		return nil, fmt.Errorf("email channel %s: %w: no %s is set", ch.ID, conv.ErrInvalid, SecretPassword)
	}
	if len(c.threadKey) < mail.MinKeyLen {
		return nil, fmt.Errorf("email channel %s: %w: %s is missing or shorter than %d bytes (set it with channel update)",
			ch.ID, conv.ErrInvalid, SecretThreadKey, mail.MinKeyLen)
	}
	if cfg.SMTPUsername != "" {
		c.smtpPassword = ch.Secrets[SecretSMTPPassword]
		if c.smtpPassword == "" {
			c.smtpPassword = c.password
		}
	}
	return c, nil
}

// loadChannel reads an enabled email channel; any other is ErrNotFound.
func (c *Connector) loadChannel(ctx context.Context, tenant conv.TenantID, id conv.ChannelID) (*channel, error) {
	var stored conv.Channel
	err := c.cfg.Store.Read(ctx, tenant, func(tx storage.Tx) error {
		var err error
		stored, err = tx.Channel(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if stored.Kind != conv.KindEmail || stored.Disabled {
		return nil, fmt.Errorf("email: channel %s is disabled or not an email channel: %w", id, conv.ErrNotFound)
	}
	return newChannel(stored)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/store/postgres"
	"github.com/switchboard-hq/switchboard/store/sqlite"
)

// config is what every command shares: where state lives.
type config struct {
	Data     string
	Postgres string
	Redis    string
	NATS     string
	NodeID   int
	Addr     string
	LogLevel string
	LogJSON  bool
	// ChannelRescan is how often connectors that hold connections of
	// their own (email's IMAP watchers) read the channel list again.
	ChannelRescan time.Duration
	// IngestWriters is how many ingest transactions run at once on
	// Postgres (0: the default, 2). SQLite has one writer.
	IngestWriters int
}

// adminNodeID is the snowflake node admin commands use, so ids they make
// never collide with a server's (servers use 0..1022).
const adminNodeID = conv.MaxNode

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// newFlags returns a flag set with the shared flags bound to c.
func newFlags(name string, c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	node, _ := strconv.Atoi(env("SWITCHBOARD_NODE_ID", "-1"))
	fs.StringVar(&c.Data, "data", env("SWITCHBOARD_DATA", "./data"), "data dir (SQLite file, embedded NATS store, master key, media)")
	fs.StringVar(&c.Postgres, "postgres", env("SWITCHBOARD_POSTGRES", ""), "Postgres URL (default: SQLite in the data dir)")
	fs.StringVar(&c.Redis, "redis", env("SWITCHBOARD_REDIS", ""), "Redis URL for shared state (default: in-process)")
	fs.StringVar(&c.NATS, "nats", env("SWITCHBOARD_NATS", ""), "NATS URL (default: embedded JetStream in the data dir)")
	fs.IntVar(&c.NodeID, "node-id", node, "node id 0..1022, unique per running node (default 0 for serve)")
	fs.StringVar(&c.Addr, "addr", env("SWITCHBOARD_ADDR", "127.0.0.1:8080"), "HTTP listen address")
	fs.StringVar(&c.LogLevel, "log-level", env("SWITCHBOARD_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", env("SWITCHBOARD_LOG_FORMAT", "") == "json", "log JSON lines instead of text")
	fs.DurationVar(&c.ChannelRescan, "channel-rescan", 30*time.Second,
		"how often new, changed and disabled email channels are picked up (serve)")
	writers, _ := strconv.Atoi(env("SWITCHBOARD_INGEST_WRITERS", "0"))
	fs.IntVar(&c.IngestWriters, "ingest-writers", writers,
		"concurrent ingest transactions on Postgres, 1..64 (default 2; SQLite has one writer)")
	return fs
}

// parse parses args; leftover positional arguments are an error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return fmt.Errorf("%w: %v", conv.ErrInvalid, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", conv.ErrInvalid, fs.Arg(0))
	}
	return nil
}

func (c *config) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ingestWriters is how many ingest transactions run at once. Postgres
// gets 2 by default: on two cores, 2 writers stored 8–10 % more envelopes
// a second than 4 and answered publishes sooner (smaller share of each
// bus batch per transaction, fewer commits; docs/PERFORMANCE.md). A
// bigger database server may want more.
func (c *config) ingestWriters() (int, error) {
	switch {
	case c.IngestWriters < 0 || c.IngestWriters > 64:
		return 0, fmt.Errorf("%w: --ingest-writers %d: want 1..64", conv.ErrInvalid, c.IngestWriters)
	case c.embedded() && c.IngestWriters > 1:
		return 0, fmt.Errorf("%w: --ingest-writers %d: SQLite has a single writer; the flag is for --postgres", conv.ErrInvalid, c.IngestWriters)
	case c.embedded():
		return 1, nil
	case c.IngestWriters == 0:
		return 2, nil
	}
	return c.IngestWriters, nil
}

// embedded reports whether the store is the SQLite file in the data dir.
func (c *config) embedded() bool { return c.Postgres == "" }

// keyring loads the master keys; the embedded default creates the key file
// on first start (created reports it).
func (c *config) keyring(create bool) (*secret.Keyring, bool, error) {
	return secret.Load(filepath.Join(c.Data, "master.key"), create && os.Getenv(secret.EnvVar) == "")
}

// migrator is a store that can apply its migrations on demand.
type migrator interface {
	storage.Store
	Migrate(ctx context.Context) ([]string, error)
}

// openStore opens (and migrates) the configured store.
func (c *config) openStore(ctx context.Context, ids *conv.IDGen, keys *secret.Keyring, log *slog.Logger) (migrator, error) {
	if c.Postgres != "" {
		s, err := postgres.Open(ctx, postgres.Config{URL: c.Postgres, Sealer: keys, IDs: ids, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		return s, nil
	}
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(c.Data, "switchboard.db"), Sealer: keys, IDs: ids, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	return s, nil
}

// admin opens what an admin command needs: the keyring and the store.
func (c *config) admin(ctx context.Context, stderr io.Writer) (migrator, *secret.Keyring, *conv.IDGen, error) {
	node := c.NodeID
	if node < 0 {
		node = adminNodeID
	}
	ids, err := conv.NewIDGen(node)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, _, err := c.keyring(c.embedded())
	if err != nil {
		return nil, nil, nil, err
	}
	log := c.logger(stderr)
	st, err := c.openStore(ctx, ids, keys, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return st, keys, ids, nil
}

// exitCode maps error kinds to process exit codes (2: usage or bad input,
// 3: not found, 4: conflict, 5: unavailable, 1: anything else).
func exitCode(err error) int {
	switch {
	case errors.Is(err, errUsage), errors.Is(err, conv.ErrInvalid):
		return 2
	case errors.Is(err, conv.ErrNotFound):
		return 3
	case errors.Is(err, conv.ErrConflict):
		return 4
	case errors.Is(err, conv.ErrUnavailable):
		return 5
	}
	return 1
}

// tenantRef resolves --tenant given as an id or a name.
func tenantRef(ctx context.Context, st storage.Store, ref string) (conv.TenantID, error) {
	if ref == "" {
		return 0, fmt.Errorf("%w: --tenant is required (id or name)", conv.ErrInvalid)
	}
	if id, err := conv.ParseID[conv.TenantID](ref); err == nil && !id.IsZero() {
		if _, err := st.Tenant(ctx, id); err == nil {
			return id, nil
		}
	}
	t, err := st.TenantByName(ctx, strings.TrimSpace(ref))
	if err != nil {
		return 0, fmt.Errorf("tenant %q: %w", ref, err)
	}
	return t.ID, nil
}

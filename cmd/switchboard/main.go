// Command switchboard runs the Switchboard server and its admin commands.
//
// It is the only composition root: it reads flags and environment, opens
// the store (SQLite by default, Postgres with --postgres), the bus (NATS
// JetStream embedded by default, external with --nats) and shared state
// (in-process by default, Redis with --redis), and wires core, hub and the
// HTTP API together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `Switchboard — customer-service connector hub.

Usage:
  switchboard serve                      run a node (HTTP API, bus consumers)
  switchboard migrate                    apply database migrations
  switchboard tenant create --name N     create a tenant
  switchboard tenant list
  switchboard agent create --tenant T --email E --name N --password P [--role admin|agent]
  switchboard agent list --tenant T
  switchboard channel create --tenant T --kind K --name N --config '{json}'
  switchboard channel list --tenant T
  switchboard channel update --tenant T --channel ID [--name N] [--config '{fields to change}']
  switchboard channel disable|enable --tenant T --channel ID
  switchboard keys rotate                re-encrypt every secret under a new master key
  switchboard deadletters [--limit N]    list bus messages that could not be handled
  switchboard bench ingest [--n N]       measure the ingest path on this store

Store and bus flags (every command; environment in brackets):
  --data DIR        data dir for the embedded default [SWITCHBOARD_DATA] (./data)
  --postgres URL    use Postgres instead of SQLite [SWITCHBOARD_POSTGRES]
  --redis URL       shared state in Redis instead of in-process [SWITCHBOARD_REDIS]
  --nats URL        external NATS JetStream instead of the embedded one [SWITCHBOARD_NATS]
  --node-id N       0..1023, unique per running node [SWITCHBOARD_NODE_ID]
  --addr HOST:PORT  HTTP listen address for serve [SWITCHBOARD_ADDR] (127.0.0.1:8080)
Master key: SWITCHBOARD_MASTER_KEY (base64, comma-separated, current first)
or <data>/master.key, created on first start.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "switchboard:", err)
		}
		os.Exit(exitCode(err))
	}
}

var errUsage = errors.New("usage")

// run dispatches a command line; tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && (cmd == "tenant" || cmd == "agent" || cmd == "channel" || cmd == "keys" || cmd == "bench") {
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	c, ok := lookup(cmd)
	if !ok {
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
	return c(ctx, rest, stdout, stderr)
}

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

func lookup(name string) (command, bool) {
	c, ok := map[string]command{
		"serve":           cmdServe,
		"migrate":         cmdMigrate,
		"tenant create":   cmdTenantCreate,
		"tenant list":     cmdTenantList,
		"agent create":    cmdAgentCreate,
		"agent list":      cmdAgentList,
		"channel create":  cmdChannelCreate,
		"channel list":    cmdChannelList,
		"channel update":  cmdChannelUpdate,
		"channel disable": cmdChannelDisable,
		"channel enable":  cmdChannelEnable,
		"keys rotate":     cmdKeysRotate,
		"deadletters":     cmdDeadLetters,
		"bench ingest":    cmdBenchIngest,
		"bench chat":      cmdBenchChat,
	}[name]
	return c, ok
}

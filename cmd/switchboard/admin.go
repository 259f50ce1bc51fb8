package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/switchboard-hq/switchboard/core/auth"
	"github.com/switchboard-hq/switchboard/core/conv"
	"github.com/switchboard-hq/switchboard/core/storage"
	"github.com/switchboard-hq/switchboard/store/memory"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	if err := parse(newFlags("migrate", &c, stderr), args); err != nil {
		return err
	}
	st, _, _, err := c.admin(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	if applied == nil {
		applied = []string{}
	}
	return printJSON(stdout, map[string]any{"applied": applied})
}

func cmdTenantCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("tenant create", &c, stderr)
	name := fs.String("name", "", "tenant name (unique)")
	if err := parse(fs, args); err != nil {
		return err
	}
	n := strings.TrimSpace(*name)
	if n == "" || len(n) > 200 {
		return fmt.Errorf("%w: --name is required (1..200 characters)", conv.ErrInvalid)
	}
	st, _, ids, err := c.admin(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	t := conv.Tenant{ID: conv.NewID[conv.TenantID](ids), Name: n, CreatedAt: time.Now().UTC()}
	if err := st.CreateTenant(ctx, t); err != nil {
		return fmt.Errorf("tenant %q: %w", n, err)
	}
	return printJSON(stdout, t)
}

func cmdTenantList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	if err := parse(newFlags("tenant list", &c, stderr), args); err != nil {
		return err
	}
	st, _, _, err := c.admin(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	ts, err := st.Tenants(ctx)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []conv.Tenant{}
	}
	return printJSON(stdout, map[string]any{"tenants": ts})
}

func cmdAgentCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("agent create", &c, stderr)
	tenant := fs.String("tenant", "", "tenant id or name")
	email := fs.String("email", "", "login email")
	name := fs.String("name", "", "display name")
	password := fs.String("password", "", "password (8..1024 bytes)")
	role := fs.String("role", conv.RoleAgent, "agent or admin")
	capacity := fs.Int("capacity", conv.DefaultCapacity, "open conversations the agent takes at once")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, ids, tid, err := c.tenantStore(ctx, stderr, *tenant)
	if err != nil {
		return err
	}
	defer st.Close()
	svc, err := auth.New(auth.Config{Store: st, Limiter: memory.NewLimiter(memory.Config{}), IDs: ids})
	if err != nil {
		return err
	}
	a, err := svc.CreateAgent(ctx, tid, auth.NewAgent{Email: *email, Name: *name, Password: *password, Role: *role, Capacity: *capacity})
	if err != nil {
		return err
	}
	return printJSON(stdout, a)
}

func cmdAgentList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("agent list", &c, stderr)
	tenant := fs.String("tenant", "", "tenant id or name")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, _, tid, err := c.tenantStore(ctx, stderr, *tenant)
	if err != nil {
		return err
	}
	defer st.Close()
	var agents []conv.Agent
	err = st.Tx(ctx, tid, func(tx storage.Tx) error {
		agents, err = tx.Agents(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if agents == nil {
		agents = []conv.Agent{}
	}
	return printJSON(stdout, map[string]any{"agents": agents})
}

// channelView is a channel as the CLI shows it: secrets by name only.
type channelView struct {
	conv.Channel
	SecretFields []string `json:"secret_fields"`
	WebhookPath  string   `json:"webhook_path,omitempty"`
	// Status is what the channel's connector last reported (an email
	// channel's IMAP connection: connected, reconnecting, auth_failed…).
	Status json.RawMessage `json:"status,omitempty"`
}

// channelStatusKey is the channel state under which connectors report
// their status (connectors/email writes JSON there).
const channelStatusKey = "status"

func viewChannel(ch conv.Channel) channelView {
	v := channelView{Channel: ch, SecretFields: ch.SecretNames()}
	switch ch.Kind {
	case conv.KindWeChatOA, conv.KindWeChatMP:
		v.WebhookPath = "/v1/hooks/wechat/" + ch.ID.String()
	}
	return v
}

func cmdChannelCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("channel create", &c, stderr)
	tenant := fs.String("tenant", "", "tenant id or name")
	kind := fs.String("kind", "", "channel kind: "+strings.Join(kinds().Kinds(), ", "))
	name := fs.String("name", "", "channel name")
	cfgJSON := fs.String("config", "{}", "channel config as a JSON object; secret fields are encrypted at rest and never shown")
	if err := parse(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return fmt.Errorf("%w: --name is required", conv.ErrInvalid)
	}
	config, secrets, err := kinds().Split(conv.ChannelKind(*kind), []byte(*cfgJSON))
	if err != nil {
		return err
	}
	st, ids, tid, err := c.tenantStore(ctx, stderr, *tenant)
	if err != nil {
		return err
	}
	defer st.Close()
	ch := conv.Channel{
		ID: conv.NewID[conv.ChannelID](ids), TenantID: tid, Kind: conv.ChannelKind(*kind),
		Name: strings.TrimSpace(*name), Config: config, Secrets: secrets, CreatedAt: time.Now().UTC(),
	}
	if err := st.Tx(ctx, tid, func(tx storage.Tx) error { return tx.CreateChannel(ctx, ch) }); err != nil {
		return err
	}
	return printJSON(stdout, viewChannel(ch))
}

func cmdChannelList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("channel list", &c, stderr)
	tenant := fs.String("tenant", "", "tenant id or name")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, _, tid, err := c.tenantStore(ctx, stderr, *tenant)
	if err != nil {
		return err
	}
	defer st.Close()
	var chans []conv.Channel
	err = st.Tx(ctx, tid, func(tx storage.Tx) error {
		chans, err = tx.Channels(ctx)
		return err
	})
	if err != nil {
		return err
	}
	views := make([]channelView, 0, len(chans))
	err = st.Read(ctx, tid, func(tx storage.Tx) error {
		for _, ch := range chans {
			v := viewChannel(ch)
			status, err := tx.ChannelState(ctx, ch.ID, channelStatusKey)
			switch {
			case err == nil && json.Valid([]byte(status)):
				v.Status = json.RawMessage(status)
			case err != nil && !errors.Is(err, conv.ErrNotFound):
				return err
			}
			views = append(views, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"channels": views})
}

// cmdChannelUpdate changes a channel: a new name, and config fields merged
// into its config and secrets (a field given replaces it; "" removes it).
// Rotating WeChat's EncodingAESKey is
//
//	channel update --channel ID --config '{"encoding_aes_key":"NEW","previous_encoding_aes_key":"OLD"}'
func cmdChannelUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return changeChannel(ctx, "channel update", args, stdout, stderr, nil)
}

// cmdChannelDisable stops a channel: its webhook or widget answers 404 and
// it sends nothing; its conversations stay.
func cmdChannelDisable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	off := true
	return changeChannel(ctx, "channel disable", args, stdout, stderr, &off)
}

// cmdChannelEnable starts a disabled channel again.
func cmdChannelEnable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	off := false
	return changeChannel(ctx, "channel enable", args, stdout, stderr, &off)
}

func changeChannel(ctx context.Context, name string, args []string, stdout, stderr io.Writer, disabled *bool) error {
	var c config
	fs := newFlags(name, &c, stderr)
	tenant := fs.String("tenant", "", "tenant id or name")
	id := fs.String("channel", "", "channel id")
	var newName, cfgJSON *string
	if disabled == nil {
		newName = fs.String("name", "", "new channel name (default: keep)")
		cfgJSON = fs.String("config", "{}", "config fields to change, as a JSON object; secrets are encrypted at rest and never shown; \"\" removes a field")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	var chID conv.ChannelID
	if _, err := fmt.Sscan(*id, &chID); err != nil || chID.IsZero() {
		return fmt.Errorf("%w: --channel must be a channel id", conv.ErrInvalid)
	}
	st, _, tid, err := c.tenantStore(ctx, stderr, *tenant)
	if err != nil {
		return err
	}
	defer st.Close()
	var ch conv.Channel
	err = st.Tx(ctx, tid, func(tx storage.Tx) error {
		if ch, err = tx.Channel(ctx, chID); err != nil {
			return err
		}
		if disabled != nil {
			ch.Disabled = *disabled
			return tx.UpdateChannel(ctx, ch)
		}
		if strings.TrimSpace(*newName) != "" {
			ch.Name = strings.TrimSpace(*newName)
		}
		// Merge: the stored config and secrets, then the fields given,
		// validated as a whole as at creation.
		fields := map[string]any{}
		if len(ch.Config) > 0 {
			if err := json.Unmarshal(ch.Config, &fields); err != nil {
				return fmt.Errorf("stored config: %w", err)
			}
		}
		for k, v := range ch.Secrets {
			fields[k] = v
		}
		changes := map[string]any{}
		if err := json.Unmarshal([]byte(*cfgJSON), &changes); err != nil {
			return fmt.Errorf("%w: --config is not a JSON object: %v", conv.ErrInvalid, err)
		}
		for k, v := range changes {
			if v == "" || v == nil {
				delete(fields, k)
				continue
			}
			fields[k] = v
		}
		merged, _ := json.Marshal(fields)
		if ch.Config, ch.Secrets, err = kinds().Split(ch.Kind, merged); err != nil {
			return err
		}
		return tx.UpdateChannel(ctx, ch)
	})
	if err != nil {
		return err
	}
	return printJSON(stdout, viewChannel(ch))
}

func cmdKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	if err := parse(newFlags("keys rotate", &c, stderr), args); err != nil {
		return err
	}
	st, keys, _, err := c.admin(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	// A file keyring gets a fresh current key; an environment keyring was
	// rotated by the operator putting the new key first.
	if keys.File() != "" {
		if _, err := keys.Rotate(); err != nil {
			return err
		}
	}
	tenants, err := st.Tenants(ctx)
	if err != nil {
		return err
	}
	total := 0
	for _, t := range tenants {
		var n int
		err := st.Tx(ctx, t.ID, func(tx storage.Tx) error {
			var err error
			n, err = tx.ResealSecrets(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		}
		total += n
	}
	return printJSON(stdout, map[string]any{"current_key": keys.CurrentID(), "resealed": total, "tenants": len(tenants)})
}

func cmdDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlags("deadletters", &c, stderr)
	limit := fs.Int("limit", 50, "how many, newest first")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, _, _, err := c.admin(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	dls, err := st.DeadLetters(ctx, *limit)
	if err != nil {
		return err
	}
	if dls == nil {
		dls = []conv.DeadLetter{}
	}
	return printJSON(stdout, map[string]any{"deadletters": dls})
}

// tenantStore opens the store for a tenant-scoped admin command and resolves
// its --tenant (id or name).
func (c *config) tenantStore(ctx context.Context, stderr io.Writer, ref string) (migrator, *conv.IDGen, conv.TenantID, error) {
	st, _, ids, err := c.admin(ctx, stderr)
	if err != nil {
		return nil, nil, 0, err
	}
	tid, err := tenantRef(ctx, st, ref)
	if err != nil {
		st.Close()
		return nil, nil, 0, err
	}
	return st, ids, tid, nil
}

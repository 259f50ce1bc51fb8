package hub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/switchboard-hq/switchboard/core/conv"
)

// Kind describes a channel kind to the hub: which fields of its config are
// secrets (sealed at rest, never echoed) and how to check a config.
type Kind struct {
	Name conv.ChannelKind
	// Secrets are the config fields that are credentials.
	Secrets []string
	// Required are config fields (secret or not) that must be present.
	Required []string
	// Check, if set, validates the non-secret config further.
	Check func(config map[string]any) error
	// CheckSecrets, if set, validates the secret fields (their shape only:
	// an error must not echo a value).
	CheckSecrets func(secrets map[string]string) error
	// Generated are secret fields (also listed in Secrets) that Split
	// fills with 32 random bytes, hex, when the config has none: keys the
	// connector needs and nobody has to type (an HMAC key). A config that
	// carries the field keeps it, so an update that merges the stored
	// secrets in keeps the key.
	Generated []string
}

// Registry knows the channel kinds this build supports. Connectors register
// their kind at wiring time; core never switches on kinds.
type Registry struct {
	kinds map[conv.ChannelKind]Kind
}

// NewRegistry returns a registry holding kinds.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: make(map[conv.ChannelKind]Kind)}
	for _, k := range kinds {
		r.kinds[k.Name] = k
	}
	return r
}

// Kinds lists the registered kind names, sorted.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}

// MaxConfig bounds a channel's config JSON.
const MaxConfig = 64 << 10

// Split validates a channel config for kind and separates its secrets from
// the rest. Secret values must be strings.
func (r *Registry) Split(kind conv.ChannelKind, raw []byte) (config json.RawMessage, secrets map[string]string, err error) {
	k, ok := r.kinds[kind]
	if !ok {
		return nil, nil, fmt.Errorf("%w: unknown channel kind %q (known: %s)", conv.ErrInvalid, kind, strings.Join(r.Kinds(), ", "))
	}
	if len(raw) > MaxConfig {
		return nil, nil, fmt.Errorf("%w: config larger than %d bytes", conv.ErrInvalid, MaxConfig)
	}
	fields := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, nil, fmt.Errorf("%w: config is not a JSON object: %v", conv.ErrInvalid, err)
		}
	}
	for _, f := range k.Required {
		if v, ok := fields[f]; !ok || v == "" || v == nil {
			return nil, nil, fmt.Errorf("%w: %s config needs %q", conv.ErrInvalid, kind, f)
		}
	}
	secrets = map[string]string{}
	for name, v := range fields {
		if !slices.Contains(k.Secrets, name) {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, nil, fmt.Errorf("%w: %s config field %q must be a string", conv.ErrInvalid, kind, name)
		}
		secrets[name] = s
		delete(fields, name)
	}
	for _, name := range k.Generated {
		if secrets[name] != "" {
			continue
		}
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, fmt.Errorf("generate %s: %w", name, err)
		}
		secrets[name] = hex.EncodeToString(b[:])
	}
	if k.Check != nil {
		if err := k.Check(fields); err != nil {
			return nil, nil, fmt.Errorf("%w: %s config: %v", conv.ErrInvalid, kind, err)
		}
	}
	if k.CheckSecrets != nil {
		if err := k.CheckSecrets(secrets); err != nil {
			return nil, nil, fmt.Errorf("%w: %s config: %v", conv.ErrInvalid, kind, err)
		}
	}
	config, err = json.Marshal(fields)
	if err != nil {
		return nil, nil, err
	}
	return config, secrets, nil
}

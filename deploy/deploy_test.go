package deploy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/switchboard-hq/switchboard/core/secret"
	"github.com/switchboard-hq/switchboard/hub/bus"
	"github.com/switchboard-hq/switchboard/store/postgres"
)

// The port `serve` listens on inside containers, and the last node id a
// server accepts (1023 is reserved for admin commands).
const (
	listenPort = 8080
	maxNodeID  = 1022
)

// drainBudget is how long `serve` may take to stop after SIGTERM: up to 25s
// of HTTP shutdown (cmd/switchboard), then up to the bus ack wait for
// in-flight handlers (the router's close timeout).
const drainBudget = 25*time.Second + bus.DefaultAckWait

// ---------------------------------------------------------------------------
// compose.yaml

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]yaml.Node      `yaml:"volumes"`
}

type composeService struct {
	Image           string         `yaml:"image"`
	Build           *composeBuild  `yaml:"build"`
	Command         stringList     `yaml:"command"`
	Environment     envMap         `yaml:"environment"`
	EnvFile         []envFile      `yaml:"env_file"`
	DependsOn       dependsOn      `yaml:"depends_on"`
	Healthcheck     *composeHealth `yaml:"healthcheck"`
	Ports           []string       `yaml:"ports"`
	Volumes         []string       `yaml:"volumes"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
	ReadOnly        bool           `yaml:"read_only"`
	Restart         string         `yaml:"restart"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type composeHealth struct {
	Test stringList `yaml:"test"`
}

// stringList is a compose string-or-list (command, healthcheck test).
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// envMap is a compose environment: a mapping or a list of KEY=VALUE.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	m := map[string]string{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
	} else if err := n.Decode(&m); err != nil {
		return err
	}
	*e = m
	return nil
}

// envFile is a compose env_file entry: a path, or {path, required}.
type envFile struct {
	Path     string
	Required bool
}

func (f *envFile) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*f = envFile{Path: n.Value, Required: true}
		return nil
	}
	v := struct {
		Path     string `yaml:"path"`
		Required *bool  `yaml:"required"`
	}{}
	if err := n.Decode(&v); err != nil {
		return err
	}
	*f = envFile{Path: v.Path, Required: v.Required == nil || *v.Required}
	return nil
}

// dependsOn maps a dependency to its condition; the short list form means
// service_started.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	out := map[string]string{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			out[s] = "service_started"
		}
	} else {
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = v.Condition
		}
	}
	*d = out
	return nil
}

// decodeAll splits a multi-document YAML stream into its document nodes.
func decodeAll(t *testing.T, name string, b []byte) []*yaml.Node {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(n.Content) > 0 && n.Content[0].Kind != 0 {
			docs = append(docs, &n)
		}
	}
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeAll(t, "compose.yaml", b)
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents, want 1", len(docs))
	}
	var f composeFile
	if err := docs[0].Decode(&f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f
}

// switchboardNodes returns the compose services that run `switchboard serve`.
func (f composeFile) switchboardNodes() map[string]composeService {
	nodes := map[string]composeService{}
	for name, s := range f.Services {
		if s.Image == f.Services["migrate"].Image && len(s.Command) > 0 && s.Command[0] == "serve" {
			nodes[name] = s
		}
	}
	return nodes
}

func TestCompose(t *testing.T) {
	f := loadCompose(t)
	nodes := f.switchboardNodes()

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"backing services and migrate exist", func(t *testing.T) {
			want := map[string]string{"postgres": "postgres:16", "redis": "redis:7", "nats": "nats:2."}
			for name, prefix := range want {
				s, ok := f.Services[name]
				if !ok {
					t.Errorf("no %q service", name)
					continue
				}
				if !strings.HasPrefix(s.Image, prefix) {
					t.Errorf("%s image %q, want %s*", name, s.Image, prefix)
				}
			}
			m, ok := f.Services["migrate"]
			if !ok {
				t.Fatal("no migrate service")
			}
			if !slices.Equal(m.Command, []string{"migrate"}) {
				t.Errorf("migrate command %q, want [migrate]", m.Command)
			}
			if m.Build == nil || m.Build.Dockerfile != "deploy/Dockerfile" || m.Build.Context != ".." {
				t.Errorf("migrate build %+v, want context .. and deploy/Dockerfile", m.Build)
			}
			if m.Restart != "no" {
				t.Errorf("migrate restart %q: a one-shot must not restart (a bad key would loop)", m.Restart)
			}
			if got := m.DependsOn["postgres"]; got != "service_healthy" {
				t.Errorf("migrate depends on postgres %q, want service_healthy", got)
			}
		}},
		{"nats version is 2.10 or later", func(t *testing.T) {
			img := f.Services["nats"].Image
			_, tag, _ := strings.Cut(img, ":")
			var major, minor int
			if _, err := fmt.Sscanf(tag, "%d.%d", &major, &minor); err != nil {
				t.Fatalf("nats image %q: tag is not major.minor: %v", img, err)
			}
			if major < 2 || (major == 2 && minor < 10) {
				t.Errorf("nats image %q: need 2.10 or later", img)
			}
		}},
		{"exactly two nodes with distinct valid node ids", func(t *testing.T) {
			if len(nodes) != 2 {
				t.Fatalf("%d switchboard serve services, want 2", len(nodes))
			}
			seen := map[int]string{}
			for name, s := range nodes {
				raw, ok := s.Environment["SWITCHBOARD_NODE_ID"]
				if !ok {
					t.Errorf("%s: no SWITCHBOARD_NODE_ID", name)
					continue
				}
				id, err := strconv.Atoi(raw)
				if err != nil || id < 0 || id > maxNodeID {
					t.Errorf("%s: SWITCHBOARD_NODE_ID %q not in 0..%d", name, raw, maxNodeID)
					continue
				}
				if other, dup := seen[id]; dup {
					t.Errorf("%s and %s share node id %d", name, other, id)
				}
				seen[id] = name
			}
		}},
		{"nodes wait for healthy services and a finished migrate", func(t *testing.T) {
			want := map[string]string{
				"postgres": "service_healthy",
				"redis":    "service_healthy",
				"nats":     "service_healthy",
				"migrate":  "service_completed_successfully",
			}
			for name, s := range nodes {
				for dep, cond := range want {
					if got := s.DependsOn[dep]; got != cond {
						t.Errorf("%s depends on %s with %q, want %q", name, dep, got, cond)
					}
				}
			}
		}},
		{"switchboard services point at the compose services", func(t *testing.T) {
			want := map[string]struct{ scheme, host string }{
				"SWITCHBOARD_POSTGRES": {"postgres", "postgres"},
				"SWITCHBOARD_REDIS":    {"redis", "redis"},
				"SWITCHBOARD_NATS":     {"nats", "nats"},
			}
			check := map[string]composeService{"migrate": f.Services["migrate"]}
			for n, s := range nodes {
				check[n] = s
			}
			for name, s := range check {
				for env, w := range want {
					raw := s.Environment[env]
					u, err := url.Parse(raw)
					if err != nil || u.Scheme != w.scheme || u.Hostname() != w.host {
						t.Errorf("%s: %s=%q, want %s://%s...", name, env, raw, w.scheme, w.host)
						continue
					}
					if _, ok := f.Services[u.Hostname()]; !ok {
						t.Errorf("%s: %s names host %q, which is no service", name, env, u.Hostname())
					}
				}
			}
		}},
		{"nodes listen on the port they publish and probe", func(t *testing.T) {
			hostPorts := map[string]string{}
			for name, s := range nodes {
				if addr := s.Environment["SWITCHBOARD_ADDR"]; addr != fmt.Sprintf("0.0.0.0:%d", listenPort) {
					t.Errorf("%s: SWITCHBOARD_ADDR %q, want 0.0.0.0:%d (127.0.0.1 is unreachable from outside the container)", name, addr, listenPort)
				}
				if len(s.Ports) != 1 {
					t.Errorf("%s: %d published ports, want 1", name, len(s.Ports))
					continue
				}
				host, container, ok := strings.Cut(s.Ports[0], ":")
				if !ok || container != strconv.Itoa(listenPort) {
					t.Errorf("%s: port %q does not publish container port %d", name, s.Ports[0], listenPort)
				}
				if other, dup := hostPorts[host]; dup {
					t.Errorf("%s and %s both publish host port %s", name, other, host)
				}
				hostPorts[host] = name
				if s.Healthcheck == nil || !strings.Contains(strings.Join(s.Healthcheck.Test, " "), fmt.Sprintf("127.0.0.1:%d/readyz", listenPort)) {
					t.Errorf("%s: healthcheck does not hit /readyz on port %d", name, listenPort)
				}
			}
		}},
		{"long-running services have healthchecks", func(t *testing.T) {
			for name, s := range f.Services {
				if name == "migrate" {
					continue
				}
				if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
					t.Errorf("%s has no healthcheck (depends_on service_healthy would hang)", name)
				}
			}
		}},
		{"nodes get time to drain", func(t *testing.T) {
			for name, s := range nodes {
				d, err := time.ParseDuration(s.StopGracePeriod)
				if err != nil || d < drainBudget {
					t.Errorf("%s: stop_grace_period %q, want >= %s (HTTP shutdown, then in-flight bus handlers)", name, s.StopGracePeriod, drainBudget)
				}
			}
		}},
		{"nats runs JetStream on a volume and fsyncs every write", func(t *testing.T) {
			n := f.Services["nats"]
			if !slices.Contains(n.Command, "-js") {
				t.Errorf("nats command %q lacks -js", n.Command)
			}
			i := slices.Index(n.Command, "-c")
			if i < 0 || i+1 >= len(n.Command) {
				t.Fatalf("nats command %q names no config file", n.Command)
			}
			confInContainer := n.Command[i+1]
			var confOnHost string
			mounts := map[string]string{} // container path -> source
			for _, v := range n.Volumes {
				parts := strings.Split(v, ":")
				mounts[parts[1]] = parts[0]
				if parts[1] == confInContainer {
					confOnHost = parts[0]
				}
			}
			if confOnHost == "" {
				t.Fatalf("config %s is not mounted into the nats container", confInContainer)
			}
			opts, err := server.ProcessConfigFile(filepath.FromSlash(confOnHost))
			if err != nil {
				t.Fatalf("nats config %s: %v", confOnHost, err)
			}
			if !opts.JetStream {
				t.Error("nats config does not enable JetStream")
			}
			if !opts.SyncAlways {
				t.Error("nats config does not set sync_interval: always")
			}
			src, ok := mounts[opts.StoreDir]
			if !ok {
				t.Fatalf("JetStream store_dir %q is not a mount", opts.StoreDir)
			}
			if _, named := f.Volumes[src]; !named {
				t.Errorf("JetStream store_dir is mounted from %q, not a named volume", src)
			}
		}},
		{"master key comes from env files and the committed one is refused", func(t *testing.T) {
			for name, s := range f.Services {
				if _, ok := s.Environment[secret.EnvVar]; ok {
					t.Errorf("%s sets %s inline: keys belong in the ignored env file", name, secret.EnvVar)
				}
			}
			withKey := map[string]composeService{"migrate": f.Services["migrate"]}
			for n, s := range nodes {
				withKey[n] = s
			}
			for name, s := range withKey {
				want := []envFile{{"switchboard.env.example", true}, {"switchboard.env", false}}
				if !slices.Equal(s.EnvFile, want) {
					t.Errorf("%s env_file %+v, want %+v (placeholder first, the operator's file last so it wins)", name, s.EnvFile, want)
				}
			}
			env := readEnvFile(t, "switchboard.env.example")
			key, ok := env[secret.EnvVar]
			if !ok {
				t.Fatalf("switchboard.env.example has no %s", secret.EnvVar)
			}
			if keyAccepted(key) {
				t.Errorf("the committed placeholder %s=%q is a usable key", secret.EnvVar, key)
			}
			ignore, err := os.ReadFile(".gitignore")
			if err != nil || !slices.Contains(strings.Fields(string(ignore)), "switchboard.env") {
				t.Errorf("deploy/.gitignore does not ignore switchboard.env (err %v)", err)
			}
		}},
		{"database roles keep Row-Level Security in force", func(t *testing.T) {
			u, err := url.Parse(nodes[firstName(nodes)].Environment["SWITCHBOARD_POSTGRES"])
			if err != nil {
				t.Fatal(err)
			}
			login := u.User.Username()
			if user := f.Services["postgres"].Environment["POSTGRES_USER"]; user == login {
				t.Errorf("nodes connect as POSTGRES_USER %q, which the image makes a superuser", user)
			}
			initSQL := readInitSQL(t, f.Services["postgres"])
			for _, r := range []struct {
				role string
				want []string
			}{
				{login, []string{"LOGIN", "NOSUPERUSER", "NOBYPASSRLS"}},
				// The role store/postgres switches every transaction to.
				{postgres.DefaultRuntimeRole, []string{"NOLOGIN", "NOSUPERUSER", "NOBYPASSRLS"}},
			} {
				create := regexp.MustCompile(`(?is)CREATE\s+ROLE\s+` + regexp.QuoteMeta(r.role) + `\s([^;]*);`).FindStringSubmatch(initSQL)
				if create == nil {
					t.Errorf("the postgres init scripts do not create role %q", r.role)
					continue
				}
				opts := strings.Fields(strings.ToUpper(create[1]))
				for _, w := range r.want {
					if !slices.Contains(opts, w) {
						t.Errorf("role %s is created without %s", r.role, w)
					}
				}
			}
			grant := `(?is)GRANT\s+` + regexp.QuoteMeta(postgres.DefaultRuntimeRole) + `\s+TO\s+` + regexp.QuoteMeta(login) + `\s*;`
			if !regexp.MustCompile(grant).MatchString(initSQL) {
				t.Errorf("%s is not granted to %s: transactions could not switch to it", postgres.DefaultRuntimeRole, login)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}

func firstName[V any](m map[string]V) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// keyAccepted reports whether the binary would take v as its master key.
func keyAccepted(v string) bool {
	raw, err := secret.ParseKeys(v)
	if err != nil {
		return false
	}
	_, err = secret.NewKeyring(raw...)
	return err == nil
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: malformed line %q", path, line)
		}
		env[k] = v
	}
	return env
}

// readInitSQL concatenates the host files the postgres service mounts into
// /docker-entrypoint-initdb.d.
func readInitSQL(t *testing.T, s composeService) string {
	t.Helper()
	var sb strings.Builder
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[1], "/docker-entrypoint-initdb.d/") {
			continue
		}
		b, err := os.ReadFile(filepath.FromSlash(parts[0]))
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
	}
	return sb.String()
}

// ---------------------------------------------------------------------------
// Dockerfile

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		}
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"builds with Go 1.26", len(froms) >= 2 && strings.HasPrefix(froms[0], "golang:1.26")},
		{"builds a static binary", strings.Contains(string(b), "CGO_ENABLED=0")},
		{"builds cmd/switchboard", strings.Contains(string(b), "./cmd/switchboard")},
		{"runtime is a small base", len(froms) >= 2 && (strings.HasPrefix(froms[len(froms)-1], "alpine:") || strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/"))},
		// Numeric, so Kubernetes can verify runAsNonRoot without /etc/passwd.
		{"runs as a numeric non-root user", len(users) > 0 && numericNonRoot(users[len(users)-1])},
		{"listens on all interfaces in the container", strings.Contains(string(b), fmt.Sprintf("SWITCHBOARD_ADDR=0.0.0.0:%d", listenPort))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("Dockerfile: %s does not hold", tc.name)
			}
		})
	}
}

func numericNonRoot(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.Atoi(uid)
	return err == nil && n > 0
}

// ---------------------------------------------------------------------------
// committed secrets

// keyPattern finds candidate master keys: standard base64 of 32 bytes is 43
// characters and one '='. Word boundaries are checked by hand because '+'
// and '/' are not word characters.
var keyPattern = regexp.MustCompile(`[A-Za-z0-9+/]{43}=`)

// findKeys returns the substrings of text that decode to 32 bytes and are
// not part of a longer base64 run.
func findKeys(text string) []string {
	var out []string
	for _, loc := range keyPattern.FindAllStringIndex(text, -1) {
		if loc[0] > 0 && strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", rune(text[loc[0]-1])) {
			continue
		}
		s := text[loc[0]:loc[1]]
		if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
			out = append(out, s)
		}
	}
	return out
}

func TestFindKeys(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa7, 0x3c}, 16))
	tests := []struct {
		name string
		text string
		want int
	}{
		{"bare key", key, 1},
		{"key in an env line", "SWITCHBOARD_MASTER_KEY=" + key + "\n", 1},
		{"current and old key", "SWITCHBOARD_MASTER_KEY: \"" + key + "," + key + "\"", 2},
		{"placeholder", "SWITCHBOARD_MASTER_KEY=REPLACE-ME-with-the-output-of-head-c32-dev-urandom-base64", 0},
		{"part of a longer base64 run", "QUJD" + key, 0},
		{"sha256 hex digest", strings.Repeat("ab", 32), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := findKeys(tc.text); len(got) != tc.want {
				t.Errorf("findKeys found %d (%q), want %d", len(got), got, tc.want)
			}
		})
	}
}

func TestNoCommittedKeys(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		// The ignored operator copy may exist locally; it is never committed.
		if d.Name() == "switchboard.env" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		t.Run(filepath.ToSlash(path), func(t *testing.T) {
			if keys := findKeys(string(b)); len(keys) > 0 {
				t.Errorf("%s holds %d value(s) that decode to a 32-byte key; commit a placeholder instead", path, len(keys))
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

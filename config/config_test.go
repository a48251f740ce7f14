package config

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func env(t *testing.T, kv map[string]string) {
	t.Helper()
	old := lookupEnv
	lookupEnv = func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	t.Cleanup(func() { lookupEnv = old })
}

const minimal = `
ark:
  api_key: ${ARK_API_KEY}
models:
  - name: doubao
    id: doubao-seed-1-6-250615
`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "sk-1"})
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ark.APIKey.Value() != "sk-1" || c.Ark.BaseURL != DefaultBaseURL || c.DefaultModel != "doubao" {
		t.Errorf("got %+v", c.Ark)
	}
	if c.Models[0].ContextWindow != 32768 || c.Models[0].MaxTokens != 4096 || c.Redis.LockTTL.D() != 30*time.Second {
		t.Errorf("defaults not applied: %+v %+v", c.Models[0], c.Redis)
	}
	if c.Slack.Enabled() || c.Discord.Enabled() {
		t.Error("platforms on without tokens")
	}
	if s := fmt.Sprintf("%v %+v", c.Ark.APIKey, c.Ark); strings.Contains(s, "sk-1") {
		t.Errorf("secret printed: %s", s)
	}
}

func TestEnvExpansion(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k: with # odd [chars]", "PORT": "9090", "CHANNELS": "C1, C2"})
	c, err := Parse([]byte(minimal + `
server:
  addr: ":${PORT}"
redis:
  max_turns: ${TURNS:-40}
  url: ${REDIS_URL:-}
slack:
  allowed_channels: ${CHANNELS}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ark.APIKey.Value() != "k: with # odd [chars]" {
		t.Errorf("secret with YAML syntax changed: %q", c.Ark.APIKey.Value())
	}
	if c.Server.Addr != ":9090" || c.Redis.MaxTurns != 40 || c.Redis.URL != "" {
		t.Errorf("expansion: addr %q turns %d url %q", c.Server.Addr, c.Redis.MaxTurns, c.Redis.URL)
	}
	if len(c.Slack.AllowedChannels) != 2 || c.Slack.AllowedChannels[1] != "C2" {
		t.Errorf("comma list: %q", c.Slack.AllowedChannels)
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	env(t, map[string]string{})
	_, err := Parse([]byte(`
ark:
  base_url: ftp://nowhere
  api_key: ""
  timout: 3s
models:
  - name: doubao
    id: doubao-seed-1-6-250615
    thinking: maybe
    context_window: 1000
    max_tokens: 2000
  - name: Doubao
    id: ""
    vision: sometimes
redis:
  lock_ttl: soon
default_model: gpt
`))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"ark.timout (line 5): unknown key",
		"models[1].vision (line 14): must be true or false",
		"redis.lock_ttl (line 16): \"soon\" is not a duration",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Structural errors are reported first; fix them and the rest shows.
	_, err = Parse([]byte(`
ark: {base_url: "ftp://nowhere", api_key: ""}
models:
  - {name: doubao, id: doubao-seed-1-6-250615, thinking: maybe, context_window: 1000, max_tokens: 2000}
  - {name: Doubao, id: ""}
default_model: gpt
`))
	for _, want := range []string{
		"ark.base_url: must be an http(s) URL",
		"ark.api_key: is empty",
		"ARK_API_KEY",
		"models[0].thinking: must be enabled, disabled or auto",
		"models[0].max_tokens: (2000) must be smaller than context_window (1000)",
		"models[1].name: \"Doubao\" is registered twice",
		"models[1].id: is required",
		"default_model: \"gpt\" is not a registered model name",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestUnknownKeySuggestsTheRightOne(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	_, err := Parse([]byte(minimal + "redis:\n  max_turn: 4\n"))
	if err == nil || !strings.Contains(err.Error(), "did you mean max_turns?") {
		t.Fatalf("got %v", err)
	}
}

func TestSlackNeedsAModeWhenOn(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	_, err := Parse([]byte(minimal + "slack:\n  bot_token: xoxb-1\n"))
	if err == nil || !strings.Contains(err.Error(), "neither app_token") {
		t.Fatalf("got %v", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	c, err := Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range c.Models {
		ids[m.ID] = true
	}
	for _, id := range []string{"doubao-seed-1-6-250615", "deepseek-v3-250324", "deepseek-r1-250528"} {
		if !ids[id] {
			t.Errorf("example config lacks %s", id)
		}
	}
	raw, _ := os.ReadFile("../config.yaml")
	for _, line := range strings.Split(string(raw), "\n") {
		key, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch key {
		case "api_key", "bot_token", "app_token", "signing_secret", "token":
		default:
			continue
		}
		if !strings.HasPrefix(strings.TrimSpace(val), "${") {
			t.Errorf("secret not read from the environment: %q", line)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(minimal)
	f.Add("models: [{name: a, id: b, max_tokens: ${X:-1}}]\nark: {api_key: k}")
	f.Add("ark: [1, 2]\n")
	f.Add("&a [*a]")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse([]byte(s))
		if err == nil && (len(c.Models) == 0 || c.Model(c.DefaultModel) == nil) {
			t.Fatalf("accepted a config without a usable default model: %q", s)
		}
	})
}

func TestMaxStarting(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{"", DefaultStartingPerCPU * runtime.GOMAXPROCS(0)},
		{"server:\n  max_starting: 0\n", 0},
		{"server:\n  max_starting: 5\n", 5},
	} {
		c, err := Parse([]byte(minimal + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Server.StartLimit(); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.yaml, got, tc.want)
		}
	}
	_, err := Parse([]byte(minimal + "server:\n  max_starting: -1\n"))
	if err == nil || !strings.Contains(err.Error(), "server.max_starting: must be 0 (no limit)") {
		t.Errorf("negative max_starting: %v", err)
	}
}

func TestSlackReplicas(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k", "REPLICAS": "3"})
	for _, tc := range []struct {
		yaml  string
		want  Replicas
		share float64
		err   string
	}{
		{yaml: "", want: 0, share: 1},
		{yaml: "slack:\n  replicas: auto\n", want: 0, share: 1},
		{yaml: "slack:\n  replicas: 4\n", want: 4, share: 0.25},
		{yaml: "slack:\n  replicas: ${REPLICAS}\n", want: 3, share: 1.0 / 3},
		{yaml: "slack:\n  replicas: 0\n", err: `slack.replicas (line 8): must be auto or a whole number of at least 1, not "0"`},
		{yaml: "slack:\n  replicas: many\n", err: `slack.replicas (line 8): must be auto or a whole number of at least 1, not "many"`},
		{yaml: "slack:\n  replicas: [2]\n", err: "slack.replicas (line 8): must be auto or a whole number"},
	} {
		c, err := Parse([]byte(minimal + tc.yaml))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if r := c.Slack.Replicas; r != tc.want || r.Share() != tc.share || r.Auto() != (tc.want == 0) {
			t.Errorf("%q: replicas %v (share %v), want %v (share %v)", tc.yaml, r, r.Share(), tc.want, tc.share)
		}
	}
}

func TestSecretsIncludeTheRedisPassword(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "sk-1", "REDIS_URL": "redis://user:pa55word@redis:6379/0"})
	c, err := Parse([]byte(minimal + "redis:\n  url: ${REDIS_URL}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Secrets(), " ")
	if !strings.Contains(got, "sk-1") || !strings.Contains(got, "pa55word") {
		t.Errorf("Secrets() = %q, want the API key and the Redis password", got)
	}
}

func TestSlackPathsDiffer(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	_, err := Parse([]byte(minimal + "slack:\n  interactivity_path: /slack/events\n"))
	if err == nil || !strings.Contains(err.Error(), `slack.interactivity_path: must differ from slack.events_path ("/slack/events")`) {
		t.Fatalf("got %v", err)
	}
}

// ark.max_retries: 0 means no retries; only a missing key takes the default.
func TestMaxRetriesZeroMeansNone(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{"", 3},
		{"ark:\n  api_key: k\n  max_retries:\n", 3},
		{"ark:\n  api_key: k\n  max_retries: 0\n", 0},
		{"ark:\n  api_key: k\n  max_retries: 5\n", 5},
	} {
		doc := minimal
		if tc.yaml != "" {
			doc = strings.Replace(minimal, "ark:\n  api_key: ${ARK_API_KEY}\n", tc.yaml, 1)
		}
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := *c.Ark.MaxRetries; got != tc.want {
			t.Errorf("%q: %d retries, want %d", tc.yaml, got, tc.want)
		}
	}
	_, err := Parse([]byte(strings.Replace(minimal, "${ARK_API_KEY}", "k\n  max_retries: -1", 1)))
	if err == nil || !strings.Contains(err.Error(), "ark.max_retries: must not be negative") {
		t.Errorf("negative max_retries: %v", err)
	}
}

// The adapters take max_concurrent as given: config fills it, 0 or left
// out meaning the default, and refuses a negative one.
func TestMaxConcurrentDefaults(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	for _, tc := range []struct {
		yaml           string
		slack, discord int
	}{
		{"", 64, 200},
		{"slack: {max_concurrent: 0}\ndiscord: {max_concurrent: 0}\n", 64, 200},
		{"slack: {max_concurrent: 3}\ndiscord: {max_concurrent: 4}\n", 3, 4},
	} {
		c, err := Parse([]byte(minimal + tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if c.Slack.MaxConcurrent != tc.slack || c.Discord.MaxConcurrent != tc.discord {
			t.Errorf("%q: slack %d, discord %d; want %d, %d", tc.yaml, c.Slack.MaxConcurrent, c.Discord.MaxConcurrent, tc.slack, tc.discord)
		}
	}
	for _, doc := range []string{"slack: {max_concurrent: -1}\n", "discord: {max_concurrent: -1}\n"} {
		if _, err := Parse([]byte(minimal + doc)); err == nil || !strings.Contains(err.Error(), "max_concurrent") {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

// The keys the adapters take as given, without fallbacks of their own: a 0
// takes the default as a missing key does (config.yaml marks them).
func TestAdapterKeysZeroMeansDefault(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	zeros := `
limits: {max_image_bytes: 0, max_file_bytes: 0}
slack: {edit_interval: 0s}
discord: {edit_interval: 0}
`
	for _, doc := range []string{minimal, minimal + zeros} {
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits.MaxImageBytes != 8<<20 || c.Limits.MaxFileBytes != 256<<10 {
			t.Errorf("limits %+v", c.Limits)
		}
		if c.Slack.EditInterval.D() != time.Second || c.Discord.EditInterval.D() != 1200*time.Millisecond {
			t.Errorf("edit intervals: slack %v, discord %v", c.Slack.EditInterval.D(), c.Discord.EditInterval.D())
		}
	}
}

func TestRedisMinReplicas(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.MinReplicas != nil || c.Redis.ReplicaWait.D() != 200*time.Millisecond {
		t.Errorf("defaults: min_replicas %v (want unset: settled at start-up), replica_wait %v", c.Redis.MinReplicas, c.Redis.ReplicaWait.D())
	}
	c, err = Parse([]byte(minimal + "redis:\n  min_replicas: 0\n  replica_wait: 50ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.MinReplicas == nil || *c.Redis.MinReplicas != 0 || c.Redis.ReplicaWait.D() != 50*time.Millisecond {
		t.Errorf("set: min_replicas %v, replica_wait %v", c.Redis.MinReplicas, c.Redis.ReplicaWait.D())
	}
	_, err = Parse([]byte(minimal + "redis:\n  min_replicas: -1\n"))
	if err == nil || !strings.Contains(err.Error(), "redis.min_replicas: must be 0") {
		t.Errorf("negative min_replicas: %v", err)
	}
}

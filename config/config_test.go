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
	env(t, map[string]string{"ARK_API_KEY": "k:#[odd]{chars},&a*b!|>%@", "PORT": "9090", "CHANNELS": "C1, C2"})
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
	if c.Ark.APIKey.Value() != "k:#[odd]{chars},&a*b!|>%@" {
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
		"ark.base_url (line 2): must be an http(s) URL",
		"ark.api_key (line 2): is empty",
		"write ${ARK_API_KEY} as ark.api_key's value (line 2) and set ARK_API_KEY",
		"models[0].thinking (line 4): must be enabled, disabled or auto",
		"models[0].max_tokens (line 4): (2000) must be smaller than context_window (1000)",
		"models[1].name (line 5): \"Doubao\" is registered twice",
		"models[1].id (line 5): is required",
		"default_model (line 6): \"gpt\" is not a registered model name",
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
		var line int
		if err != nil && func() bool { _, e := fmt.Sscanf(err.Error(), "invalid YAML: line %d:", &line); return e == nil }() && (line < 1 || line > strings.Count(s, "\n")+1) {
			t.Fatalf("syntax error on line %d of a %d-line document: %v", line, strings.Count(s, "\n")+1, err)
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
	if err == nil || !strings.Contains(err.Error(), "server.max_starting (line 8): must be 0 (no limit)") {
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
	if err == nil || !strings.Contains(err.Error(), `slack.interactivity_path (line 8): must differ from slack.events_path ("/slack/events")`) {
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
	if err == nil || !strings.Contains(err.Error(), "ark.max_retries (line 4): must not be negative, not -1") {
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

// ark.connect_timeout defaults to 5s, and may not exceed first_token_timeout
// or be negative.
func TestConnectTimeout(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	for _, tc := range []struct {
		yaml, err string
		want      time.Duration
	}{
		{yaml: "", want: 5 * time.Second},
		{yaml: "  connect_timeout: 0s\n", want: 5 * time.Second},
		{yaml: "  connect_timeout: 2s\n", want: 2 * time.Second},
		{yaml: "  connect_timeout: -1s\n", err: "ark.connect_timeout (line 4): must not be negative"},
		{yaml: "  connect_timeout: 20s\n  first_token_timeout: 10s\n", err: "must be between 0 (the default, 5s) and first_token_timeout (10s), not 20s"},
	} {
		c, err := Parse([]byte(strings.Replace(minimal, "${ARK_API_KEY}\n", "${ARK_API_KEY}\n"+tc.yaml, 1)))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.yaml, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case c.Ark.ConnectTimeout.D() != tc.want:
			t.Errorf("%q: %v, want %v", tc.yaml, c.Ark.ConnectTimeout.D(), tc.want)
		}
	}
}

// slackSection reads Slack's secrets from the environment as config.yaml
// does; minimal + slackSection puts bot_token on line 8.
const slackSection = `slack:
  bot_token: ${SLACK_BOT_TOKEN:-}
  app_token: ${SLACK_APP_TOKEN:-}
  signing_secret: ${SLACK_SIGNING_SECRET:-}
`

// Socket Mode takes a bot token and an app token, the HTTP Events API a
// bot token and a signing secret; all empty keeps Slack off. Anything in
// between is an error naming the key to set and its variable. Discord
// has one secret: its other keys without a token are fine.
func TestSlackHalfConfiguredIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		doc      string
		on, sock bool
		err      []string
	}{
		{name: "all empty: off", env: map[string]string{}},
		{name: "socket mode", env: map[string]string{"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, on: true, sock: true},
		{name: "http mode", env: map[string]string{"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "abc"}, on: true},
		{name: "all three: socket mode", env: map[string]string{"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "SLACK_SIGNING_SECRET": "abc"}, on: true, sock: true},
		{name: "app token alone", env: map[string]string{"SLACK_APP_TOKEN": "xapp-1"}, err: []string{
			"slack.bot_token (line 8): is empty while slack.app_token is set",
			"set the environment variable SLACK_BOT_TOKEN (read by slack.bot_token)",
			"or leave SLACK_APP_TOKEN empty too to keep Slack off",
		}},
		{name: "app token, bot token only spaces", env: map[string]string{"SLACK_BOT_TOKEN": "  \n", "SLACK_APP_TOKEN": "xapp-1"}, err: []string{
			"slack.bot_token (line 8): is empty while slack.app_token is set",
		}},
		{name: "signing secret alone", env: map[string]string{"SLACK_SIGNING_SECRET": "abc"}, err: []string{
			"slack.bot_token (line 8): is empty while slack.signing_secret is set",
			"SLACK_BOT_TOKEN",
		}},
		{name: "app token and signing secret", env: map[string]string{"SLACK_APP_TOKEN": "xapp-1", "SLACK_SIGNING_SECRET": "abc"}, err: []string{
			"slack.bot_token (line 8): is empty while slack.app_token and slack.signing_secret are set",
			"or leave SLACK_APP_TOKEN and SLACK_SIGNING_SECRET empty too",
		}},
		{name: "bot token alone", env: map[string]string{"SLACK_BOT_TOKEN": "xoxb-1"}, err: []string{
			"slack.app_token (line 9): and slack.signing_secret are both empty while slack.bot_token is set",
			"set the environment variable SLACK_APP_TOKEN (read by slack.app_token)",
			"set the environment variable SLACK_SIGNING_SECRET (read by slack.signing_secret)",
		}},
		{name: "bot token alone, the others left out", doc: "slack:\n  bot_token: ${MY_TOKEN}\n", env: map[string]string{"MY_TOKEN": "xoxb-1"}, err: []string{
			"slack.app_token: and slack.signing_secret are both empty",
			"add app_token: ${SLACK_APP_TOKEN} under slack: and set SLACK_APP_TOKEN",
		}},
		{name: "app token alone, bot token written empty", doc: "slack:\n  bot_token: \"\"\n  app_token: ${APP}\n", env: map[string]string{"APP": "xapp-1"}, err: []string{
			"slack.bot_token (line 8): is empty while slack.app_token is set",
			"write ${SLACK_BOT_TOKEN} as slack.bot_token's value (line 8) and set SLACK_BOT_TOKEN",
			"or leave APP empty too",
		}},
		{name: "discord keys without a token: off", doc: "discord:\n  token: ${DISCORD_BOT_TOKEN:-}\n  guild_ids: [\"1\"]\n  admins: U1\n", env: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["ARK_API_KEY"] = "k"
			env(t, tc.env)
			doc := tc.doc
			if doc == "" {
				doc = slackSection
			}
			c, err := Parse([]byte(minimal + doc))
			if len(tc.err) > 0 {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}
				for _, secret := range []string{"xoxb-1", "xapp-1", "abc"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error shows a secret %q", secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Slack.Enabled() != tc.on || c.Slack.SocketMode() != tc.sock || c.Discord.Enabled() {
				t.Errorf("slack on %v socket %v, discord on %v; want %v %v false", c.Slack.Enabled(), c.Slack.SocketMode(), c.Discord.Enabled(), tc.on, tc.sock)
			}
		})
	}
}

// A key or token pasted with a line break or spaces around it works; the
// Discord token may carry its "Bot " header prefix.
func TestSecretsAreTrimmed(t *testing.T) {
	env(t, map[string]string{
		"ARK_API_KEY":     "  sk-1\r\n",
		"SLACK_BOT_TOKEN": "xoxb-1\n",
		"SLACK_APP_TOKEN": "\txapp-1 ",
		"DISCORD":         " Bot tok.en \n",
	})
	c, err := Parse([]byte(minimal + slackSection + "discord:\n  token: ${DISCORD}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ got, want string }{
		{c.Ark.APIKey.Value(), "sk-1"},
		{c.Slack.BotToken.Value(), "xoxb-1"},
		{c.Slack.AppToken.Value(), "xapp-1"},
		{c.Discord.Token.Value(), "tok.en"},
	} {
		if s.got != s.want {
			t.Errorf("got %q, want %q", s.got, s.want)
		}
	}
}

// A secret with a character inside that no key has is refused, saying
// which character and where, never the value.
func TestSecretsWithStrayCharactersAreRefused(t *testing.T) {
	for _, tc := range []struct {
		key, value, want string
	}{
		{"ARK_API_KEY", "sk-12 34", "ark.api_key (line 3): has a space at character 6 of 8 (the value is not shown)"},
		{"ARK_API_KEY", "sk-12\n34", "ark.api_key (line 3): has a line break at character 6 of 8"},
		{"ARK_API_KEY", "sk-12\x0734", "ark.api_key (line 3): has the control character U+0007 at character 6 of 8"},
		{"ARK_API_KEY", "sk-12\u200b34", "ark.api_key (line 3): has the non-ASCII character U+200B at character 6 of 8"},
		{"ARK_API_KEY", `"sk-1234"`, "ark.api_key (line 3): has a quote at character 1 of 9 (the value is not shown): write the value without quotes"},
		{"SLACK_BOT_TOKEN", "xoxb-1234 xoxb-5678", "slack.bot_token (line 8): has a space at character 10 of 19"},
		{"SLACK_APP_TOKEN", "xapp-1234\txapp", "slack.app_token (line 9): has a space at character 10 of 14"},
		{"SLACK_SIGNING_SECRET", "ab\u00a0cd", "slack.signing_secret (line 10): has a space at character 3 of 5"},
		{"DISCORD", "abc.def ghi", "discord.token (line 12): has a space at character 8 of 11"},
	} {
		vars := map[string]string{"ARK_API_KEY": "sk-1", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
		vars[tc.key] = tc.value
		env(t, vars)
		_, err := Parse([]byte(minimal + slackSection + "discord:\n  token: ${DISCORD:-}\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: error %v, want %q", tc.key, tc.value, err, tc.want)
			continue
		}
		for _, part := range strings.FieldsFunc(tc.value, func(r rune) bool { return r < 'A' }) {
			if len(part) > 3 && strings.Contains(err.Error(), part) {
				t.Errorf("%s=%q: error shows part of the value (%q): %v", tc.key, tc.value, part, err)
			}
		}
	}
}

// yaml.v3 names the line where the enclosing mapping or list begins, and
// for parser errors one less; the error names the problem's own line.
func TestSyntaxErrorNamesTheProblemLine(t *testing.T) {
	const head = "ark:\n  api_key: k\nmodels:\n  - name: a\n" // lines 1-4
	for _, tc := range []struct {
		line5, rest string
		want        string
	}{
		{"   id: b\n", "", "invalid YAML: line 5: did not find expected '-' indicator"},
		{"  id: b\n", "", "invalid YAML: line 5: did not find expected '-' indicator"},
		{"    id: b: c\n", "", "invalid YAML: line 5: mapping values are not allowed in this context"},
		{"\tid: b\n", "", "invalid YAML: line 5: found a tab character that violates indentation"},
		{"    id: \"b\n", "redis:\n  prefix: x\n", "invalid YAML: line 5: found unexpected end of stream"},
		{"    id: [b\n", "", "invalid YAML: line 5: did not find expected ',' or ']'"},
		{"    id: @b\n", "", "invalid YAML: line 5: found character that cannot start any token"},
		{"redis: {prefix: x\n", "server: {}\n", "invalid YAML: line 5: did not find expected ',' or '}'"},
		{"    id: b\n", "redis:\n  prefix: x\n    ttl: 1h\n", "invalid YAML: line 8: mapping values are not allowed in this context"},
	} {
		doc := head + tc.line5 + tc.rest
		_, err := Parse([]byte(doc))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", doc, err, tc.want)
		}
	}
	// A problem on line 1, where yaml.v3 names no line.
	if _, err := Parse([]byte("ark: [\n")); err == nil || !strings.HasPrefix(err.Error(), "invalid YAML: line 1: ") {
		t.Errorf("line 1: %v", err)
	}
}

// Range errors found after decoding name the key and its line too.
func TestRangeErrorsNameKeyAndLine(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	_, err := Parse([]byte(`
ark:
  api_key: ${ARK_API_KEY}
  max_retries: -2
  idle_timeout: -1s
models:
  - name: doubao
    id: doubao-seed-1-6-250615
    max_tokens: -1
    daily_tokens: -5
limits:
  max_input_chars: -1
  requests_per_minute: -1
  daily_tokens: -1
  max_image_bytes: -1
  max_file_bytes: -1
redis:
  max_turns: -1
server:
  max_starting: -5
slack:
  edit_interval: -1s
`))
	if err == nil {
		t.Fatal("accepted")
	}
	// Durations are checked with the document's structure, first.
	for _, want := range []string{
		"ark.idle_timeout (line 5): must not be negative, not -1s",
		"slack.edit_interval (line 22): must not be negative, not -1s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = Parse([]byte(strings.NewReplacer("-1s", "1s").Replace(`
ark:
  api_key: ${ARK_API_KEY}
  max_retries: -2
models:
  - name: doubao
    id: doubao-seed-1-6-250615
    max_tokens: -1
    daily_tokens: -5
limits:
  max_input_chars: -1
  requests_per_minute: -1
  daily_tokens: -1
  max_image_bytes: -1
  max_file_bytes: -1
redis:
  max_turns: -1
server:
  max_starting: -5
`)))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"ark.max_retries (line 4): must not be negative, not -2",
		"models[0].max_tokens (line 8): must not be negative, not -1",
		"models[0].daily_tokens (line 9): must not be negative, not -5",
		"limits.max_input_chars (line 11): must not be negative, not -1",
		"limits.requests_per_minute (line 12): must not be negative",
		"limits.daily_tokens (line 13): must not be negative",
		"limits.max_image_bytes (line 14): must not be negative",
		"limits.max_file_bytes (line 15): must not be negative",
		"redis.max_turns (line 17): must be at least 2 (one question and its answer), not -1",
		"server.max_starting (line 19): must be 0 (no limit) to 65536 answers set up at once, not -5",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "(line "); n != 10 {
		t.Errorf("%d errors, want 10:\n%v", n, err)
	}
	// A key left out has no line: it is named alone.
	env(t, map[string]string{})
	_, err = Parse([]byte("models: [{name: a, id: b}]\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "ark.api_key: is empty") || !strings.Contains(err.Error(), "add api_key: ${ARK_API_KEY} under ark: and set ARK_API_KEY") {
		t.Errorf("missing api_key: %v", err)
	}
}

// slack.rate_limits replaces assumed limits per Web API method; a rate
// that is not positive, or a name that is no method, is an error with its
// key and line.
func TestSlackRateLimits(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	c, err := Parse([]byte(minimal + "slack:\n  rate_limits:\n    chat.update: {per_minute: 100, burst: 8}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Slack.RateLimits["chat.update"]; got != (RateLimit{PerMinute: 100, Burst: 8}) {
		t.Errorf("rate_limits = %+v", c.Slack.RateLimits)
	}
	for yaml, want := range map[string]string{
		"    chat.update: {per_minute: 0}\n":            "slack.rate_limits.chat.update.per_minute (line ",
		"    update: {per_minute: 5}\n":                 "slack.rate_limits.update (line ",
		"    chat.update: {per_minute: 5, burst: -1}\n": "slack.rate_limits.chat.update.burst (line ",
	} {
		_, err := Parse([]byte(minimal + "slack:\n  rate_limits:\n" + yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
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
	if err == nil || !strings.Contains(err.Error(), "must be 0") {
		t.Errorf("negative min_replicas: %v", err)
	}
}

func TestResponsesKeys(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "sk-1"})
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Models[0].API != APIChat || c.Ark.ChainTTL.D() != 72*time.Hour || c.Models[0].Search != nil {
		t.Errorf("defaults: api %q chain_ttl %s search %v", c.Models[0].API, c.Ark.ChainTTL.D(), c.Models[0].Search)
	}
	c, err = Parse([]byte(minimal + `    api: responses
    reasoning_effort: low
    search:
      enabled: true
      limit: 5
      sources: search_engine, moji
      user_location: {country: 中国, city: 北京}
limits:
  daily_searches: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Models[0]
	if m.API != APIResponses || m.ReasoningEffort != "low" || !m.Search.Enabled || m.Search.Limit != 5 ||
		strings.Join(m.Search.Sources, ",") != "search_engine,moji" || m.Search.UserLocation.City != "北京" || c.Limits.DailySearches != 10 {
		t.Errorf("parsed %+v search %+v", m, m.Search)
	}
	for _, tc := range []struct{ yaml, want string }{
		{minimal + "    api: completions\n", "models[0].api: must be chat or responses"},
		{minimal + "    reasoning_effort: extreme\n", "models[0].reasoning_effort: must be minimal, low, medium or high"},
		{minimal + "    search: {enabled: true}\n", "models[0].search: needs api: responses"},
		{minimal + "    api: responses\n    search: {sources: [bing]}\n", `models[0].search.sources: "bing" is not a source`},
		{minimal + "    api: responses\n    search: {limit: 51}\n", "models[0].search.limit: must be 1 to 50"},
		{minimal + "    api: responses\n    search: {max_calls: 11}\n", "models[0].search.max_calls: must be 1 to 10"},
		{minimal + "    api: responses\n    search: {enable: true}\n", "models[0].search.enable: unknown key (did you mean enabled?)"},
		{strings.Replace(minimal, "ark:\n", "ark:\n  chain_ttl: 200h\n", 1), "ark.chain_ttl: must be between 1h and 168h"},
		{minimal + "limits:\n  daily_searches: -1\n", "limits.daily_searches: must not be negative"},
	} {
		_, err := Parse([]byte(tc.yaml))
		key, msg, _ := strings.Cut(tc.want, ": ")
		if err == nil || !strings.Contains(err.Error(), key+" (line") || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// The agent pane's settings default when left out, an empty list offers
// no prompts, and Slack's limits are checked.
func TestSlackAgentSurface(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "k"})
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Slack
	if s.AgentSessions == nil || !*s.AgentSessions || s.Greeting != DefaultGreeting ||
		len(s.SuggestedPrompts) != len(DefaultSuggestedPrompts()) || len(s.LoadingMessages) != len(DefaultLoadingMessages()) {
		t.Errorf("defaults: %+v", s)
	}
	c, err = Parse([]byte(minimal + "slack:\n  agent_sessions: false\n  suggested_prompts: []\n  loading_messages: [Hmm…]\n" +
		"  greeting: Hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	s = c.Slack
	if *s.AgentSessions || len(s.SuggestedPrompts) != 0 || len(s.LoadingMessages) != 1 || s.Greeting != "Hello" {
		t.Errorf("set: %+v", s)
	}
	for yaml, want := range map[string]string{
		"  suggested_prompts: [{title: a}]\n": "slack.suggested_prompts[0]",
		"  loading_messages: ['one, two']\n":  "slack.loading_messages[0]",
		"  suggested_prompts: [{title: a, message: b}, {title: a, message: b}, {title: a, message: b}, {title: a, message: b}, {title: a, message: b}]\n": "at most 4",
		"  suggested_prompts: [{title: a, mesage: b}]\n": "mesage",
	} {
		_, err := Parse([]byte(minimal + "slack:\n" + yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}

// Package config loads and validates the bot's YAML configuration.
//
// Values may reference the environment as ${VAR} or ${VAR:-default}; secrets
// belong there and never in the file. Unknown keys and wrong types are errors
// that name the key and its line.
package config

import (
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Log          Log     `yaml:"log"`
	Ark          Ark     `yaml:"ark"`
	Models       []Model `yaml:"models"`
	DefaultModel string  `yaml:"default_model"`
	SystemPrompt string  `yaml:"system_prompt"`
	Limits       Limits  `yaml:"limits"`
	Redis        Redis   `yaml:"redis"`
	Server       Server  `yaml:"server"`
	Console      Console `yaml:"console"`
	Slack        Slack   `yaml:"slack"`
	Discord      Discord `yaml:"discord"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Ark configures the connection to Volcengine Ark's OpenAI-compatible API.
type Ark struct {
	// BaseURL is the API address: ".../api/v3", ".../api/v3/" or an exact
	// request URL ending in "#", e.g. ".../api/v3/chat/completions#".
	BaseURL string `yaml:"base_url"`
	APIKey  Secret `yaml:"api_key"`
	// ConnectTimeout bounds each attempt to open a connection to Ark; a
	// failed connect is retried once.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// FirstTokenTimeout bounds the wait from request to first streamed chunk.
	FirstTokenTimeout Duration `yaml:"first_token_timeout"`
	// IdleTimeout bounds the silence between two chunks of a stream.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxRetries is how many times a retryable error is retried before the
	// first token: 0 never retries; left out, 3. Set after Load.
	MaxRetries *int `yaml:"max_retries"`
	// RetryBase is the first backoff delay; it doubles with jitter per attempt.
	RetryBase Duration `yaml:"retry_base"`
	// RetryMax caps one backoff delay (and a server's Retry-After).
	RetryMax Duration `yaml:"retry_max"`
	// ChainTTL is how long Ark keeps a thread's stored responses for the
	// Responses API's chains (expire_at; at most 168h): a chain this old
	// starts over from the thread's transcript.
	ChainTTL Duration `yaml:"chain_ttl"`
}

// Model is one model people can pick with /model.
type Model struct {
	Name          string   `yaml:"name"`           // what people type
	ID            string   `yaml:"id"`             // Ark model ID or endpoint ID (ep-…)
	Description   string   `yaml:"description"`    // shown in /models
	Thinking      string   `yaml:"thinking"`       // enabled | disabled | auto; empty: not sent
	Vision        bool     `yaml:"vision"`         // accepts images
	ContextWindow int      `yaml:"context_window"` // tokens, prompt + answer
	MaxTokens     int      `yaml:"max_tokens"`     // answer tokens
	Temperature   *float32 `yaml:"temperature"`    // omitted: Ark's default
	// DailyTokens overrides limits.daily_tokens for this model (0: the global limit).
	DailyTokens int64 `yaml:"daily_tokens"`
	// RequestsPerMinute overrides limits.requests_per_minute for this model.
	RequestsPerMinute int `yaml:"requests_per_minute"`
	// AdminsOnly restricts the model to admins.
	AdminsOnly bool `yaml:"admins_only"`
	// API is how the bot talks to Ark for this model: "chat" (chat
	// completions, the default) or "responses" (the Responses API: the
	// thread's context kept and cached by Ark, web search).
	API string `yaml:"api"`
	// ReasoningEffort is minimal, low, medium or high; empty: not sent.
	ReasoningEffort string `yaml:"reasoning_effort"`
	// Search gives the model Ark's web_search tool (api: responses only).
	Search *Search `yaml:"search"`
}

// Search configures a model's web search.
type Search struct {
	// Enabled makes answers search where no /search command chose
	// (default false: /search on turns it on).
	Enabled bool `yaml:"enabled"`
	// Limit is the results per search, 1-50 (0: Ark's default, 10).
	Limit int `yaml:"limit"`
	// Sources are where to search: search_engine, toutiao, douyin, moji
	// (none: Ark's default).
	Sources StringList `yaml:"sources"`
	// MaxCalls bounds the searches per answer, 1-10 (0: Ark's default, 3).
	MaxCalls int `yaml:"max_calls"`
	// UserLocation localizes the results.
	UserLocation *UserLocation `yaml:"user_location"`
}

// UserLocation is an approximate location for web search.
type UserLocation struct {
	Country  string `yaml:"country"`
	Region   string `yaml:"region"`
	City     string `yaml:"city"`
	Timezone string `yaml:"timezone"`
}

// The APIs a model may use.
const (
	APIChat      = "chat"
	APIResponses = "responses"
)

// Limits bounds what one user may spend; admins are exempt.
type Limits struct {
	MaxInputChars     int   `yaml:"max_input_chars"`     // longer messages are cut, with a notice
	RequestsPerMinute int   `yaml:"requests_per_minute"` // per user, across replicas; 0: unlimited
	DailyTokens       int64 `yaml:"daily_tokens"`        // per user per UTC day; 0: unlimited
	MaxImageBytes     int64 `yaml:"max_image_bytes"`     // per image
	MaxFileBytes      int64 `yaml:"max_file_bytes"`      // per text attachment
	// DailySearches bounds a user's web searches per UTC day; 0: unlimited.
	DailySearches int64 `yaml:"daily_searches"`
}

// Redis configures the store. An empty URL runs an embedded in-memory Redis.
type Redis struct {
	// URL is redis://, rediss://, redis-sentinel:// style (docs/reference.md) or a
	// comma-separated list of cluster nodes (redis-cluster://host1,host2).
	URL        string   `yaml:"url"`
	Prefix     string   `yaml:"prefix"`
	TTL        Duration `yaml:"ttl"`       // idle threads are forgotten after this
	MaxTurns   int      `yaml:"max_turns"` // turns kept per thread (user + assistant each count)
	LockTTL    Duration `yaml:"lock_ttl"`  // a dead replica's lock expires after this
	LockWait   Duration `yaml:"lock_wait"` // how long a message waits for its thread's previous answer
	DedupeTTL  Duration `yaml:"dedupe_ttl"`
	MasterName string   `yaml:"master_name"` // Sentinel master name
	// MinReplicas is how many replicas must confirm each saved turn (WAIT)
	// before it counts as safe from a failover; unconfirmed turns are
	// re-saved. nil: 1 when the Redis has replicas at start-up, else 0.
	MinReplicas *int     `yaml:"min_replicas"`
	ReplicaWait Duration `yaml:"replica_wait"` // how long one WAIT waits for them
}

// Server configures the HTTP listener for health, metrics and Slack's HTTP mode.
type Server struct {
	Addr string `yaml:"addr"`
	// ShutdownTimeout bounds everything after SIGTERM: answers in flight
	// get the grace part of it (see wire.ShutdownGrace), the rest is for
	// interrupted answers' final renders.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MaxStarting is how many answers may be in their set-up at once
	// (default 8 per CPU; 0: no limit): see StartLimit.
	MaxStarting *int `yaml:"max_starting"`
}

// StartLimit returns max_starting: how many answers the bot sets up at
// once (the admission's Redis round trip, the sign of life, the request
// to Ark); a burst of new messages beyond it waits its turn, so that the
// answers already streaming keep their pace. The default is 8 per CPU
// the process may use (GOMAXPROCS); 0 means no limit.
func (s Server) StartLimit() int {
	if s.MaxStarting != nil {
		return *s.MaxStarting
	}
	return DefaultStartingPerCPU * runtime.GOMAXPROCS(0)
}

// Console configures the terminal adapter.
type Console struct {
	User         string `yaml:"user"`
	ShowThinking bool   `yaml:"show_thinking"`
}

// Default values, applied by Load to keys left out.
const (
	DefaultBaseURL = "https://ark.cn-beijing.volces.com/api/v3"
	// DefaultStartingPerCPU is server.max_starting's default per CPU.
	DefaultStartingPerCPU = 8
)

func (c *Config) applyDefaults() {
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Format, "text")
	setDefault(&c.Ark.BaseURL, DefaultBaseURL)
	setDur(&c.Ark.ConnectTimeout, 5*time.Second)
	setDur(&c.Ark.FirstTokenTimeout, 90*time.Second)
	setDur(&c.Ark.IdleTimeout, 60*time.Second)
	if c.Ark.MaxRetries == nil {
		c.Ark.MaxRetries = new(3)
	}
	setDur(&c.Ark.RetryBase, 500*time.Millisecond)
	setDur(&c.Ark.RetryMax, 20*time.Second)
	setDur(&c.Ark.ChainTTL, 72*time.Hour)
	for i := range c.Models {
		m := &c.Models[i]
		setDefault(&m.API, APIChat)
		if m.ContextWindow == 0 {
			m.ContextWindow = 32768
		}
		if m.MaxTokens == 0 {
			m.MaxTokens = 4096
		}
	}
	if c.DefaultModel == "" && len(c.Models) > 0 {
		c.DefaultModel = c.Models[0].Name
	}
	setDefault(&c.SystemPrompt, "You are a helpful assistant in a team chat on {platform}, talking with {user}. Today is {date}. Answer in the language of the question; use Markdown.")
	if c.Limits.MaxInputChars == 0 {
		c.Limits.MaxInputChars = 16000
	}
	if c.Limits.MaxImageBytes == 0 {
		c.Limits.MaxImageBytes = 8 << 20
	}
	if c.Limits.MaxFileBytes == 0 {
		c.Limits.MaxFileBytes = 256 << 10
	}
	setDefault(&c.Redis.Prefix, "arkbot")
	setDur(&c.Redis.TTL, 30*24*time.Hour)
	if c.Redis.MaxTurns == 0 {
		c.Redis.MaxTurns = 100
	}
	setDur(&c.Redis.LockTTL, 30*time.Second)
	setDur(&c.Redis.LockWait, 3*time.Minute)
	setDur(&c.Redis.DedupeTTL, 24*time.Hour)
	setDur(&c.Redis.ReplicaWait, 200*time.Millisecond)
	setDefault(&c.Server.Addr, ":8080")
	setDur(&c.Server.ShutdownTimeout, 30*time.Second)
	setDefault(&c.Console.User, "you")
	c.Slack.applyDefaults()
	c.Discord.applyDefaults()
}

func (c *Config) validate(errs *fieldErrors) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs.add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	if u, err := url.Parse(strings.TrimSuffix(c.Ark.BaseURL, "#")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.add("ark.base_url", "must be an http(s) URL such as %s/, not %q", DefaultBaseURL, c.Ark.BaseURL)
	}
	if c.Ark.APIKey == "" {
		errs.add("ark.api_key", "is empty: create a key in the Ark console under API Key管理 (API Key management) and %s", errs.setHint("ark.api_key", "ARK_API_KEY"))
	}
	checkSecret(errs, "ark.api_key", c.Ark.APIKey)
	if n := c.Server.MaxStarting; n != nil && (*n < 0 || *n > 1<<16) {
		errs.add("server.max_starting", "must be 0 (no limit) to 65536 answers set up at once, not %d", *n)
	}
	if d := c.Ark.ConnectTimeout; d < 0 || d > c.Ark.FirstTokenTimeout {
		errs.add("ark.connect_timeout", "must be between 0 (the default, 5s) and first_token_timeout (%s), not %s", c.Ark.FirstTokenTimeout.D(), d.D())
	}
	if *c.Ark.MaxRetries < 0 {
		errs.add("ark.max_retries", "must not be negative, not %d", *c.Ark.MaxRetries)
	}
	if len(c.Models) == 0 {
		errs.add("models", "register at least one model (an Ark model ID such as doubao-seed-1-6-250615, or an endpoint ID ep-…)")
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		switch {
		case m.Name == "":
			errs.add(key+".name", "is required: the name people type after /model")
		case strings.ContainsAny(m.Name, " \t\n"):
			errs.add(key+".name", "must be one word, not %q", m.Name)
		case seen[strings.ToLower(m.Name)]:
			errs.add(key+".name", "%q is registered twice", m.Name)
		}
		seen[strings.ToLower(m.Name)] = true
		if m.ID == "" {
			errs.add(key+".id", "is required: the Ark model ID (e.g. deepseek-v3-250324) or endpoint ID (ep-…)")
		}
		switch m.Thinking {
		case "", "enabled", "disabled", "auto":
		default:
			errs.add(key+".thinking", "must be enabled, disabled or auto (or left out), not %q", m.Thinking)
		}
		ok := nonNegative(errs, key+".context_window", m.ContextWindow)
		ok = nonNegative(errs, key+".max_tokens", m.MaxTokens) && ok
		if ok && m.MaxTokens >= m.ContextWindow {
			errs.add(key+".max_tokens", "(%d) must be smaller than context_window (%d), or nothing is left for the conversation", m.MaxTokens, m.ContextWindow)
		}
		nonNegative(errs, key+".daily_tokens", m.DailyTokens)
		nonNegative(errs, key+".requests_per_minute", m.RequestsPerMinute)
		if m.Temperature != nil && (*m.Temperature < 0 || *m.Temperature > 2) {
			errs.add(key+".temperature", "must be between 0 and 2")
		}
		m.validateResponses(errs, key)
	}
	if len(c.Models) > 0 && c.Model(c.DefaultModel) == nil {
		errs.add("default_model", "%q is not a registered model name (have: %s)", c.DefaultModel, strings.Join(c.ModelNames(), ", "))
	}
	nonNegative(errs, "limits.max_input_chars", c.Limits.MaxInputChars)
	nonNegative(errs, "limits.requests_per_minute", c.Limits.RequestsPerMinute)
	nonNegative(errs, "limits.daily_tokens", c.Limits.DailyTokens)
	nonNegative(errs, "limits.max_image_bytes", c.Limits.MaxImageBytes)
	nonNegative(errs, "limits.max_file_bytes", c.Limits.MaxFileBytes)
	nonNegative(errs, "limits.daily_searches", c.Limits.DailySearches)
	if d := c.Ark.ChainTTL.D(); d < time.Hour || d > 7*24*time.Hour {
		errs.add("ark.chain_ttl", "must be between 1h and 168h (Ark keeps a stored response at most 7 days), not %s", d)
	}
	if c.Redis.URL != "" {
		if _, err := url.Parse(c.Redis.URL); err != nil || !strings.HasPrefix(c.Redis.URL, "redis") {
			errs.add("redis.url", "must look like redis://host:6379/0, rediss://…, redis-sentinel://… or redis-cluster://…")
		}
	}
	if c.Redis.MaxTurns < 2 {
		errs.add("redis.max_turns", "must be at least 2 (one question and its answer), not %d", c.Redis.MaxTurns)
	}
	if n := c.Redis.MinReplicas; n != nil && (*n < 0 || *n > 16) {
		errs.add("redis.min_replicas", "must be 0 (confirm nothing) to 16 replicas, not %d", *n)
	}
	if strings.ContainsAny(c.Redis.Prefix, "{} ") {
		errs.add("redis.prefix", "must not contain braces or spaces")
	}
	c.Slack.validate(errs)
	c.Discord.validate(errs)
}

// validateResponses checks the model's api, reasoning_effort and search.
func (m Model) validateResponses(errs *fieldErrors, key string) {
	switch m.API {
	case APIChat, APIResponses:
	default:
		errs.add(key+".api", "must be chat or responses, not %q", m.API)
	}
	switch m.ReasoningEffort {
	case "", "minimal", "low", "medium", "high":
	default:
		errs.add(key+".reasoning_effort", "must be minimal, low, medium or high (or left out), not %q", m.ReasoningEffort)
	}
	s := m.Search
	if s == nil {
		return
	}
	if m.API != APIResponses {
		errs.add(key+".search", "needs api: responses (Ark's web_search tool is a Responses API tool)")
	}
	if s.Limit < 0 || s.Limit > 50 {
		errs.add(key+".search.limit", "must be 1 to 50 results (0: Ark's default, 10), not %d", s.Limit)
	}
	if s.MaxCalls < 0 || s.MaxCalls > 10 {
		errs.add(key+".search.max_calls", "must be 1 to 10 searches (0: Ark's default, 3), not %d", s.MaxCalls)
	}
	for _, src := range s.Sources {
		switch src {
		case "search_engine", "toutiao", "douyin", "moji":
		default:
			errs.add(key+".search.sources", "%q is not a source: use search_engine, toutiao, douyin or moji", src)
		}
	}
}

// nonNegative reports whether v is at least 0, adding an error for key if not.
func nonNegative[T int | int64](errs *fieldErrors, key string, v T) bool {
	if v < 0 {
		errs.add(key, "must not be negative, not %d", v)
		return false
	}
	return true
}

// Model returns the registered model with that name (case-insensitive), or nil.
func (c *Config) Model(name string) *Model {
	for i := range c.Models {
		if strings.EqualFold(c.Models[i].Name, name) {
			return &c.Models[i]
		}
	}
	return nil
}

// ModelNames lists the registered model names in config order.
func (c *Config) ModelNames() []string {
	names := make([]string, len(c.Models))
	for i, m := range c.Models {
		names[i] = m.Name
	}
	return names
}

// Secrets lists every secret value in the configuration, for log
// redaction: the tokens, the API key and the Redis URL's password.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range []Secret{c.Ark.APIKey, c.Slack.BotToken, c.Slack.AppToken, c.Slack.SigningSecret, c.Discord.Token} {
		if s != "" {
			out = append(out, string(s))
		}
	}
	if u, err := url.Parse(c.Redis.URL); err == nil && u.User != nil {
		if pass, ok := u.User.Password(); ok && pass != "" {
			out = append(out, pass)
		}
	}
	return out
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

// lookupEnv is the environment lookup used by Parse; tests may replace it.
var lookupEnv = os.LookupEnv

package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Slack configures the Slack adapter. It is on when BotToken is set.
type Slack struct {
	BotToken Secret `yaml:"bot_token"` // xoxb-…
	// AppToken (xapp-…) selects Socket Mode, the default.
	AppToken Secret `yaml:"app_token"`
	// SigningSecret selects the HTTP Events API when AppToken is empty.
	SigningSecret Secret `yaml:"signing_secret"`
	// APIURL is the Web API base, for proxies and tests.
	APIURL string `yaml:"api_url"`
	// EventsPath, CommandsPath and InteractivityPath (button clicks) are
	// served on server.addr in HTTP mode.
	EventsPath        string `yaml:"events_path"`
	CommandsPath      string `yaml:"commands_path"`
	InteractivityPath string `yaml:"interactivity_path"`
	// ReplyInThreads: mentioned (follow-ups in a thread the bot answered in,
	// without a new mention) or always (every thread message in an allowed channel).
	ReplyInThreads string `yaml:"reply_in_threads"`
	// Streaming: auto (native chat.startStream, falling back to chat.update on
	// error), native, or update.
	Streaming    string   `yaml:"streaming"`
	EditInterval Duration `yaml:"edit_interval"` // at most one edit per message per interval
	// AllowedChannels limits the bot to these channel IDs (empty: every
	// channel it is in). Direct messages are governed by AllowDMs instead.
	AllowedChannels StringList `yaml:"allowed_channels"`
	AllowedUsers    StringList `yaml:"allowed_users"` // user IDs the bot answers (empty: everyone)
	Admins          StringList `yaml:"admins"`        // user IDs exempt from limits, allowed admin-only models
	// AllowDMs answers direct messages (default true).
	AllowDMs *bool `yaml:"allow_dms"`
	// MaxConcurrent bounds the messages this replica works on at once
	// (downloads, answers); more wait in a bounded queue. 0: 64.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Replicas is how many bot processes serve this workspace; each takes
	// that share of Slack's per-workspace rate budgets, so together they
	// stay under Slack's limits. Auto (the default) counts the live
	// replicas through Redis heartbeats and follows as they come and go.
	Replicas Replicas `yaml:"replicas"`
	// RateLimits replaces the rate limits the bot assumes for these Web API
	// methods (Slack's published tiers by default): for Enterprise Grid or
	// a workspace whose limits Slack raised.
	RateLimits map[string]RateLimit `yaml:"rate_limits"`
	// AgentSessions runs each answer in a thread as a Slack agent session,
	// so that Slack draws its own Stop button (default true). A workspace
	// that refuses agents.sessions keeps the assistant status and !stop.
	AgentSessions *bool `yaml:"agent_sessions"`
	// Greeting is posted when a person first opens the agent pane or starts
	// a new assistant thread (default DefaultGreeting).
	Greeting string `yaml:"greeting"`
	// SuggestedPrompts (at most 4) are offered under the greeting (default
	// DefaultSuggestedPrompts; an empty list offers none).
	SuggestedPrompts []SuggestedPrompt `yaml:"suggested_prompts"`
	// LoadingMessages (at most 10) rotate in the assistant status while an
	// answer starts (default DefaultLoadingMessages).
	LoadingMessages []string `yaml:"loading_messages"`
}

// SuggestedPrompt is a prompt offered in Slack's agent pane: Title is the
// button, Message what it sends.
type SuggestedPrompt struct {
	Title   string `yaml:"title"`
	Message string `yaml:"message"`
}

// Defaults of Slack's agent surface.
const DefaultGreeting = "👋 Hi! I answer with Volcengine Ark models. Ask me anything here, or @mention me in a channel thread. Type `/help` for what I can do."

// DefaultSuggestedPrompts are offered in the agent pane when
// slack.suggested_prompts is not set.
func DefaultSuggestedPrompts() []SuggestedPrompt {
	return []SuggestedPrompt{
		{Title: "Explain something", Message: "Explain how HTTPS keeps a connection private, in plain words."},
		{Title: "Draft a message", Message: "Help me write a short, friendly announcement for my team about "},
		{Title: "Review some code", Message: "Review this code and suggest improvements:\n"},
		{Title: "Summarize a text", Message: "Summarize the following text in three bullet points:\n"},
	}
}

// DefaultLoadingMessages rotate in the assistant status when
// slack.loading_messages is not set.
func DefaultLoadingMessages() []string {
	return []string{"Thinking…", "Reading your question…", "Working on an answer…"}
}

// RateLimit is a Web API method's limit as Slack states it: calls per
// minute per workspace (per channel for chat.postMessage), and how many
// the bot may make at once (0: the bot's default burst for the method).
type RateLimit struct {
	PerMinute float64 `yaml:"per_minute"`
	Burst     int     `yaml:"burst"`
}

// Enabled reports whether the Slack adapter should run.
func (s Slack) Enabled() bool { return s.BotToken != "" }

// SocketMode reports whether events arrive over Socket Mode rather than HTTP.
func (s Slack) SocketMode() bool { return s.AppToken != "" }

func (s *Slack) applyDefaults() {
	setDefault(&s.APIURL, "https://slack.com/api/")
	setDefault(&s.EventsPath, "/slack/events")
	setDefault(&s.CommandsPath, "/slack/commands")
	setDefault(&s.InteractivityPath, "/slack/interactivity")
	setDefault(&s.ReplyInThreads, "mentioned")
	setDefault(&s.Streaming, "auto")
	setDur(&s.EditInterval, time.Second)
	if s.AllowDMs == nil {
		t := true
		s.AllowDMs = &t
	}
	if s.MaxConcurrent == 0 {
		s.MaxConcurrent = 64
	}
	if s.AgentSessions == nil {
		t := true
		s.AgentSessions = &t
	}
	setDefault(&s.Greeting, DefaultGreeting)
	if s.SuggestedPrompts == nil {
		s.SuggestedPrompts = DefaultSuggestedPrompts()
	}
	if s.LoadingMessages == nil {
		s.LoadingMessages = DefaultLoadingMessages()
	}
}

// WithDefaults returns s with every key left out set to its default, as
// Load sets it: for callers that build a Slack section in code.
func (s Slack) WithDefaults() Slack {
	s.applyDefaults()
	return s
}

func (s *Slack) validate(errs *fieldErrors) {
	if u, err := url.Parse(s.APIURL); err != nil || u.Host == "" {
		errs.add("slack.api_url", "must be a URL such as https://slack.com/api/, not %q", s.APIURL)
	}
	switch s.ReplyInThreads {
	case "mentioned", "always":
	default:
		errs.add("slack.reply_in_threads", "must be mentioned or always, not %q", s.ReplyInThreads)
	}
	switch s.Streaming {
	case "auto", "native", "update":
	default:
		errs.add("slack.streaming", "must be auto, native or update, not %q", s.Streaming)
	}
	for method, l := range s.RateLimits {
		key := "slack.rate_limits." + method
		switch {
		case !strings.Contains(method, "."):
			errs.add(key, "is not a Web API method name such as chat.update")
		case l.PerMinute <= 0:
			errs.add(key+".per_minute", "must be more than 0 calls a minute, not %v", l.PerMinute)
		case l.Burst < 0:
			errs.add(key+".burst", "must not be negative")
		}
	}
	if s.MaxConcurrent < 0 {
		errs.add("slack.max_concurrent", "must not be negative")
	}
	s.validateAgent(errs)
	paths := []struct{ key, val string }{{"slack.events_path", s.EventsPath}, {"slack.commands_path", s.CommandsPath}, {"slack.interactivity_path", s.InteractivityPath}}
	for _, p := range paths {
		if !strings.HasPrefix(p.val, "/") {
			errs.add(p.key, "must be a path starting with /, not %q", p.val)
		}
	}
	for i, p := range paths {
		for _, q := range paths[:i] {
			if p.val == q.val {
				errs.add(p.key, "must differ from %s (%q)", q.key, q.val)
			}
		}
	}
	checkSecret(errs, "slack.bot_token", s.BotToken)
	checkSecret(errs, "slack.app_token", s.AppToken)
	checkSecret(errs, "slack.signing_secret", s.SigningSecret)
	// Socket Mode takes bot_token and app_token, the HTTP Events API
	// bot_token and signing_secret; all three empty keep Slack off.
	switch {
	case s.BotToken == "" && (s.AppToken != "" || s.SigningSecret != ""):
		var set, sources []string
		for _, k := range []struct {
			key string
			val Secret
		}{{"slack.app_token", s.AppToken}, {"slack.signing_secret", s.SigningSecret}} {
			if k.val != "" {
				set = append(set, k.key)
				sources = append(sources, errs.source(k.key))
			}
		}
		verb := "is"
		if len(set) > 1 {
			verb = "are"
		}
		errs.add("slack.bot_token", "is empty while %s %s set, and Slack needs a bot token: %s to the Bot User OAuth Token (xoxb-…), or leave %s empty too to keep Slack off",
			strings.Join(set, " and "), verb, errs.setHint("slack.bot_token", "SLACK_BOT_TOKEN"), strings.Join(sources, " and "))
	case s.BotToken != "" && s.AppToken == "" && s.SigningSecret == "":
		errs.add("slack.app_token", "and slack.signing_secret are both empty while slack.bot_token is set: for Socket Mode %s to an app-level token (xapp-…); for the HTTP Events API %s instead",
			errs.setHint("slack.app_token", "SLACK_APP_TOKEN"), errs.setHint("slack.signing_secret", "SLACK_SIGNING_SECRET"))
	}
}

// validateAgent checks the agent pane's settings against Slack's limits.
func (s *Slack) validateAgent(errs *fieldErrors) {
	if len(s.SuggestedPrompts) > 4 {
		errs.add("slack.suggested_prompts", "has %d prompts; Slack shows at most 4", len(s.SuggestedPrompts))
	}
	for i, p := range s.SuggestedPrompts {
		if strings.TrimSpace(p.Title) == "" || strings.TrimSpace(p.Message) == "" {
			errs.add(fmt.Sprintf("slack.suggested_prompts[%d]", i), "needs both a title and a message")
		}
	}
	if len(s.LoadingMessages) > 10 {
		errs.add("slack.loading_messages", "has %d messages; Slack rotates at most 10", len(s.LoadingMessages))
	}
	for i, m := range s.LoadingMessages {
		if strings.TrimSpace(m) == "" || strings.Contains(m, ",") {
			errs.add(fmt.Sprintf("slack.loading_messages[%d]", i), "must be non-empty and without commas (they are sent comma-separated), not %q", m)
		}
	}
}

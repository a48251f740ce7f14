package conversation

import (
	"log/slog"
	"strings"
	"time"

	"github.com/arkbot/arkbot/arkclient"
)

// Model is a model people can pick with /model, with what the engine
// needs to answer with it.
type Model struct {
	Name          string   // what people type; unique, case-insensitive
	ID            string   // Ark model ID or endpoint ID (ep-…)
	Description   string   // shown in /models
	Thinking      string   // enabled | disabled | auto; empty: not sent
	Vision        bool     // accepts images
	ContextWindow int      // tokens, prompt + answer
	MaxTokens     int      // answer tokens
	Temperature   *float32 // nil: Ark's default
	// DailyTokens and RequestsPerMinute are this model's per-user limits
	// on top of Limits' (0: none).
	DailyTokens       int64
	RequestsPerMinute int
	AdminsOnly        bool // only admins may use it
	// API is how the engine talks to Ark for this model: APIResponses
	// (Ark's Responses API: context chains cached by Ark, web search) or
	// APIChat (chat completions); "" is APIChat.
	API string
	// ReasoningEffort is sent as reasoning.effort (Responses) or
	// reasoning_effort (chat): minimal | low | medium | high; "" omits it.
	ReasoningEffort string
	// Search is the model's web search (Responses API only); nil: none.
	Search *Search
}

// The APIs a Model may use.
const (
	APIChat      = "chat"
	APIResponses = "responses"
)

// Search configures Ark's built-in web_search tool for a model.
type Search struct {
	// On is whether answers search where no /search command chose.
	On bool
	// Limit (results per search), Sources and Location are sent as the
	// tool's options; MaxCalls bounds the searches per answer. Zero
	// values leave Ark's defaults.
	Limit    int
	Sources  []string
	Location *arkclient.Location
	MaxCalls int
}

// responses reports whether the model talks to the Responses API.
func (m *Model) responses() bool { return m.API == APIResponses }

// Limits bound what one user may spend; admins are exempt. A zero field
// sets no limit.
type Limits struct {
	MaxInputChars     int   // longer messages are cut, with a notice
	RequestsPerMinute int   // per user, across replicas
	DailyTokens       int64 // per user per UTC day, all models
	// DailySearches bounds a user's web searches per UTC day; past it,
	// answers do not search (with a notice).
	DailySearches int64
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the engine's logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithDefaultModel names the model answering where no thread or channel
// picked one (default: the first model). An unknown name is ignored.
func WithDefaultModel(name string) Option {
	return func(e *Engine) {
		if m := e.model(name); m != nil {
			e.defaultModel = m
		}
	}
}

// WithSystemPrompt sets the system prompt's template: {date}, {time},
// {user}, {platform} and {model} are filled in for every answer (default:
// empty).
func WithSystemPrompt(tmpl string) Option { return func(e *Engine) { e.systemTmpl = tmpl } }

// WithLimits sets the per-user limits (default: none).
func WithLimits(l Limits) Option { return func(e *Engine) { e.limits = l } }

// WithRenderInterval sets the least time between two renders of one answer
// on a platform (default 1s; 0 renders every chunk as it comes).
func WithRenderInterval(platform string, d time.Duration) Option {
	return func(e *Engine) { e.interval[platform] = d }
}

// WithIdleTimeout tells the engine the Ark client's idle timeout: between
// two renders the engine leaves a stream unread for at most a quarter of
// it (default 0: no such bound).
func WithIdleTimeout(d time.Duration) Option { return func(e *Engine) { e.idle = d } }

// WithStartLimit sets how many answers may be in their set-up at once (the
// admission's Redis round trip, the sign of life, the request to Ark);
// n <= 0, the default, sets no limit.
func WithStartLimit(n int) Option {
	return func(e *Engine) { e.starts = newStartGate(n, startHold) }
}

// WithChainTTL sets how long Ark keeps a thread's stored responses for
// the Responses API's chains (expire_at; default 72h, at most 7 days):
// a chain this old starts over from the thread's transcript.
func WithChainTTL(d time.Duration) Option {
	return func(e *Engine) {
		if d > 0 {
			e.chainTTL = min(d, maxChainTTL)
		}
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// model returns the model with that name (case-insensitive), or nil.
func (e *Engine) model(name string) *Model {
	for i := range e.models {
		if strings.EqualFold(e.models[i].Name, name) {
			return &e.models[i]
		}
	}
	return nil
}

package conversation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
)

// Chain is the Responses API chain that continues a thread: the thread's
// last stored response at Ark, and what it was made with. A turn continues
// it (sending only the new input with previous_response_id) only while it
// still matches: same model, same system prompt, same kind of chain, the
// transcript unchanged since, before it expires and while the context Ark
// carries fits the model's window. Otherwise the turn starts a new chain
// from the transcript, which stays the source of truth.
type Chain struct {
	ID      string `json:"id"`      // the last response's ID
	Model   string `json:"model"`   // the Ark model ID it was made with
	Prompt  string `json:"prompt"`  // promptKey of its system prompt
	Search  bool   `json:"search"`  // made with web_search, so without caching
	Turns   int    `json:"turns"`   // the transcript's length it covers
	Tokens  int    `json:"tokens"`  // the context Ark carries: the last turn's total tokens
	Expires int64  `json:"expires"` // Unix seconds: its first response's expire_at
}

// maxChainTTL is the longest expire_at Ark accepts after a response's
// creation; defaultChainTTL is Ark's own default.
const (
	maxChainTTL     = 7 * 24 * time.Hour
	defaultChainTTL = 72 * time.Hour
	// chainMargin is how long before its expiry a chain is no longer
	// continued: a request under way must not reach Ark after it.
	chainMargin = 5 * time.Minute
)

// parseChain reads a chain as saved; nil when there is none.
func parseChain(raw string) *Chain {
	if raw == "" {
		return nil
	}
	var c Chain
	if json.Unmarshal([]byte(raw), &c) != nil || c.ID == "" {
		return nil
	}
	return &c
}

// encode is c as saved; "" for nil.
func (c *Chain) encode() string {
	if c == nil {
		return ""
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// continues reports whether the chain can carry a turn now.
func (c *Chain) continues(want Chain, turns int, now time.Time, budget int) bool {
	return c != nil && c.Model == want.Model && c.Prompt == want.Prompt && c.Search == want.Search &&
		c.Turns == turns && now.Add(chainMargin).Unix() < c.Expires && c.Tokens < budget
}

// promptKey identifies a system prompt: a chain made with another one is
// not continued. The time of day is left out (it changes every minute);
// the date is in.
func (e *Engine) promptKey(m Message, model *Model) string {
	sum := sha256.Sum256([]byte(e.systemPromptAt(m, model, "")))
	return hex.EncodeToString(sum[:8])
}

// Settings are a thread's or a channel's /search and /think choices; ""
// leaves the choice to the wider scope (the channel, then the model).
type Settings struct {
	Search string // "on" | "off"
	Think  string // "enabled" | "disabled" | "auto"
	// Locked (channel only) is set by an admin's /search lock: only admins
	// may change search in the channel and its threads.
	Locked bool
}

// channelSettings reads a channel's settings hash.
func channelSettings(h map[string]string) Settings {
	return Settings{Search: h["search"], Think: h["think"], Locked: h["lock"] == "1"}
}

// SetThreadSetting sets a thread's "search" or "think" choice ("" clears it).
func (s *Store) SetThreadSetting(ctx context.Context, thread, field, value string) error {
	k := s.metaKey(thread)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if value == "" {
			p.HDel(ctx, k, field)
		} else {
			p.HSet(ctx, k, field, value)
		}
		p.PExpire(ctx, k, s.opt.TTL)
		return nil
	})
	return err
}

// ThreadSettings reads a thread's own settings.
func (s *Store) ThreadSettings(ctx context.Context, thread string) (Settings, error) {
	v, err := s.rdb.HMGet(ctx, s.metaKey(thread), "search", "think").Result()
	if err != nil {
		return Settings{}, err
	}
	var st Settings
	st.Search, _ = v[0].(string)
	st.Think, _ = v[1].(string)
	return st, nil
}

// SetChannelSetting sets a channel's "search", "think" or "lock" ("1" or
// "") choice; "" clears it. Channel settings do not expire.
func (s *Store) SetChannelSetting(ctx context.Context, channel, field, value string) error {
	k := s.channelSettingsKey(channel)
	if value == "" {
		return s.rdb.HDel(ctx, k, field).Err()
	}
	return s.rdb.HSet(ctx, k, field, value).Err()
}

// inForce is what applies to one answer: the thread's choice, else the
// channel's, else the model's.
type inForce struct {
	search bool   // web search on (the model can search)
	think  string // thinking type sent; "" omits it
}

// settingsFor resolves the settings for model from the thread's and the
// channel's choices.
func settingsFor(model *Model, thread, channel Settings) inForce {
	f := inForce{think: model.Thinking}
	if model.responses() && model.Search != nil {
		f.search = model.Search.On
		if v := firstSet(thread.Search, channel.Search); v != "" {
			f.search = v == "on"
		}
	}
	if v := firstSet(thread.Think, channel.Think); v != "" {
		f.think = v
	}
	return f
}

func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// webSearch is the model's web_search tool for a request.
func (m *Model) webSearch() *arkclient.WebSearch {
	s := m.Search
	return &arkclient.WebSearch{Limit: s.Limit, Sources: s.Sources, UserLocation: s.Location, MaxToolCalls: s.MaxCalls}
}

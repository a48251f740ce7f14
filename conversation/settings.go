package conversation

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
)

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

// Package wire builds the bot's core (Ark client, Redis store, engine) from
// its configuration, once for cmd/bot and the load test alike.
package wire

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
)

// DefaultGOGC is the garbage collector's percent the bot runs with unless
// $GOGC says otherwise: between collections the heap may grow to five times
// what is live (Go's default is twice), so a busy bot collects about a
// third as often and its answers' renders seldom wait on a collection's
// CPU. An idle bot's live heap is a few MiB; $GOMEMLIMIT still caps it.
const DefaultGOGC = 400

// TuneGC sets DefaultGOGC unless $GOGC is set.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGOGC)
	}
}

// Core returns the engine and its store for cfg on rdb. Extra Ark client
// options (an HTTP client, say) apply after those from the configuration.
// A nil cfg.Redis.MinReplicas confirms no saves; cmd/bot settles it first.
func Core(cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger, extra ...arkclient.Option) (*conversation.Engine, *conversation.Store, error) {
	opts := append([]arkclient.Option{
		arkclient.WithConnectTimeout(cfg.Ark.ConnectTimeout.D()),
		arkclient.WithFirstTokenTimeout(cfg.Ark.FirstTokenTimeout.D()),
		arkclient.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		arkclient.WithRetries(*cfg.Ark.MaxRetries, cfg.Ark.RetryBase.D(), cfg.Ark.RetryMax.D()),
		arkclient.WithLogger(log),
	}, extra...)
	ark, err := arkclient.New(cfg.Ark.BaseURL, cfg.Ark.APIKey.Value(), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("ark.base_url: %w", err)
	}
	minReplicas := 0
	if cfg.Redis.MinReplicas != nil {
		minReplicas = *cfg.Redis.MinReplicas
	}
	store := conversation.NewStore(rdb, conversation.StoreOptions{
		MinReplicas: minReplicas,
		Prefix:      cfg.Redis.Prefix, TTL: cfg.Redis.TTL.D(), MaxTurns: cfg.Redis.MaxTurns,
		LockTTL: cfg.Redis.LockTTL.D(), LockWait: cfg.Redis.LockWait.D(), DedupeTTL: cfg.Redis.DedupeTTL.D(),
		ReplicaWait: cfg.Redis.ReplicaWait.D(),
	})
	engine := conversation.NewEngine(Models(cfg), store, ark, append(EngineOptions(cfg), conversation.WithLogger(log))...)
	log.Info("ark", "url", ark.URL(), "models", cfg.ModelNames(), "default", cfg.DefaultModel)
	return engine, store, nil
}

// Models converts the configured models for the engine.
func Models(cfg *config.Config) []conversation.Model {
	out := make([]conversation.Model, len(cfg.Models))
	for i, m := range cfg.Models {
		out[i] = conversation.Model{
			Name: m.Name, ID: m.ID, Description: m.Description, Thinking: m.Thinking, Vision: m.Vision,
			ContextWindow: m.ContextWindow, MaxTokens: m.MaxTokens, Temperature: m.Temperature,
			DailyTokens: m.DailyTokens, RequestsPerMinute: m.RequestsPerMinute, AdminsOnly: m.AdminsOnly,
			API: m.API, ReasoningEffort: m.ReasoningEffort, Search: search(m.Search),
		}
	}
	return out
}

// search converts a model's search configuration.
func search(s *config.Search) *conversation.Search {
	if s == nil {
		return nil
	}
	out := &conversation.Search{On: s.Enabled, Limit: s.Limit, Sources: s.Sources, MaxCalls: s.MaxCalls}
	if l := s.UserLocation; l != nil {
		out.Location = &arkclient.Location{Country: l.Country, Region: l.Region, City: l.City, Timezone: l.Timezone}
	}
	return out
}

// EngineOptions are the engine's options from cfg, but for its logger.
func EngineOptions(cfg *config.Config) []conversation.Option {
	return []conversation.Option{
		conversation.WithDefaultModel(cfg.DefaultModel),
		conversation.WithSystemPrompt(cfg.SystemPrompt),
		conversation.WithLimits(conversation.Limits{MaxInputChars: cfg.Limits.MaxInputChars,
			RequestsPerMinute: cfg.Limits.RequestsPerMinute, DailyTokens: cfg.Limits.DailyTokens, DailySearches: cfg.Limits.DailySearches}),
		conversation.WithChainTTL(cfg.Ark.ChainTTL.D()),
		conversation.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		conversation.WithStartLimit(cfg.Server.StartLimit()),
		conversation.WithRenderInterval(conversation.PlatformConsole, 0),
		conversation.WithRenderInterval(conversation.PlatformSlack, cfg.Slack.EditInterval.D()),
		conversation.WithRenderInterval(conversation.PlatformDiscord, cfg.Discord.EditInterval.D()),
	}
}

// ShutdownGrace is the part of server.shutdown_timeout that answers in
// flight get to finish after SIGTERM: two thirds. In the last third the
// answers still running are interrupted, save what they showed and
// render their final frames.
func ShutdownGrace(total time.Duration) time.Duration { return total * 2 / 3 }

// Package wire builds the bot's core (Ark client, Redis store, engine) from
// its configuration, once for cmd/bot and the load test alike.
package wire

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
)

// Core returns the engine and its store for cfg on rdb. Extra Ark client
// options (an HTTP client, say) apply after those from the configuration.
func Core(cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger, extra ...arkclient.Option) (*conversation.Engine, *conversation.Store, error) {
	opts := append([]arkclient.Option{
		arkclient.WithFirstTokenTimeout(cfg.Ark.FirstTokenTimeout.D()),
		arkclient.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		arkclient.WithRetries(*cfg.Ark.MaxRetries, cfg.Ark.RetryBase.D(), cfg.Ark.RetryMax.D()),
		arkclient.WithLogger(log),
	}, extra...)
	ark, err := arkclient.New(cfg.Ark.BaseURL, cfg.Ark.APIKey.Value(), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("ark.base_url: %w", err)
	}
	store := conversation.NewStore(rdb, conversation.StoreOptions{
		Prefix: cfg.Redis.Prefix, TTL: cfg.Redis.TTL.D(), MaxTurns: cfg.Redis.MaxTurns,
		LockTTL: cfg.Redis.LockTTL.D(), LockWait: cfg.Redis.LockWait.D(), DedupeTTL: cfg.Redis.DedupeTTL.D(),
	})
	engine := conversation.NewEngine(cfg, store, ark,
		conversation.WithLogger(log),
		conversation.WithRenderInterval(conversation.PlatformConsole, 0),
		conversation.WithRenderInterval(conversation.PlatformSlack, cfg.Slack.EditInterval.D()),
		conversation.WithRenderInterval(conversation.PlatformDiscord, cfg.Discord.EditInterval.D()))
	log.Info("ark", "url", ark.URL(), "models", cfg.ModelNames(), "default", cfg.DefaultModel)
	return engine, store, nil
}

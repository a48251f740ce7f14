package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arkbot/arkbot/adapters/discord"
	"github.com/arkbot/arkbot/adapters/slack"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/metrics"
)

// runner runs one messenger adapter until ctx ends.
type runner func(ctx context.Context) error

// adapters builds the configured messenger adapters, mounting the HTTP
// routes they need on mux and registering their readiness and their
// finishers of orphaned answers; a sweep for those runs with them.
func (b *bot) adapters(cfg *config.Config, mux *http.ServeMux) ([]runner, error) {
	var runners []runner
	if cfg.Slack.Enabled() {
		opts := []slack.Option{slack.WithLogger(b.log.With("adapter", "slack")),
			slack.WithShutdownGrace(cfg.Server.ShutdownTimeout.D()),
			slack.WithBudgets(slack.DefaultBudgets().WithLimits(cfg.Slack.RateLimits).Scaled(cfg.Slack.Replicas.Share())),
			slack.WithChores(b.store)}
		if cfg.Slack.Replicas.Auto() {
			// Replicas count each other through Redis and split the budgets.
			opts = append(opts, slack.WithPresence(b.store, slack.DefaultPresenceInterval))
		}
		a, err := slack.New(cfg.Slack, cfg.Limits, b.engine, opts...)
		if err != nil {
			return nil, err
		}
		if !cfg.Slack.SocketMode() {
			a.Register(mux)
		}
		b.engine.FinishOrphansWith(conversation.PlatformSlack, a)
		runners = append(runners, a.Run)
		b.ready = append(b.ready, a.Ready)
	}
	if cfg.Discord.Enabled() {
		// Shards split guilds (and so channels) between replicas; only the
		// bot-wide budget is shared, so each shard takes its part of it.
		a, err := discord.New(cfg.Discord, cfg.Limits, b.engine, discord.WithLogger(b.log.With("adapter", "discord")),
			discord.WithShutdownWait(cfg.Server.ShutdownTimeout.D()), discord.WithPictures(cfg.Images.Enabled()),
			discord.WithGlobalBudget(discord.DefaultGlobalPerSec/float64(cfg.Discord.ShardCount)))
		if err != nil {
			return nil, err
		}
		b.engine.FinishOrphansWith(conversation.PlatformDiscord, a)
		runners = append(runners, a.Run)
		b.ready = append(b.ready, a.Ready)
	}
	if len(runners) > 0 {
		// Answers of a replica that died are finished by whichever survives.
		runners = append(runners, func(ctx context.Context) error {
			b.engine.SweepOrphans(ctx, conversation.DefaultSweepInterval)
			return nil
		})
	}
	return runners, nil
}

func metricsHandler() http.Handler {
	return promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{Registry: metrics.Registry})
}

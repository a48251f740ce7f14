package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/arkbot/arkbot/adapters/discord"
	"github.com/arkbot/arkbot/adapters/slack"
	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
)

// checkTimeout bounds each live check.
const checkTimeout = 30 * time.Second

// checkLive tries what cfg points at, the way Cherry Studio's provider
// "check" does: every registered model on Ark (a tiny streamed request,
// closed at its first token), Redis, and each configured messenger's
// tokens. It prints a line per check, with what to do about each failure
// and no secret, and returns how many failed. Extra Ark client options
// apply after those from cfg.
func checkLive(ctx context.Context, cfg *config.Config, out io.Writer, extra ...arkclient.Option) int {
	r := redactor(cfg.Secrets())
	failed := 0
	report := func(what string, detail string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(out, "  FAIL  %s: %s\n", what, r.Replace(err.Error()))
			return
		}
		fmt.Fprintf(out, "  ok    %s: %s\n", what, r.Replace(detail))
	}

	ark, err := arkclient.New(cfg.Ark.BaseURL, cfg.Ark.APIKey.Value(), append([]arkclient.Option{
		arkclient.WithConnectTimeout(cfg.Ark.ConnectTimeout.D()),
		arkclient.WithFirstTokenTimeout(min(cfg.Ark.FirstTokenTimeout.D(), checkTimeout)),
		arkclient.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		arkclient.WithRetries(1, cfg.Ark.RetryBase.D(), cfg.Ark.RetryMax.D()),
		arkclient.WithLogger(slog.New(slog.DiscardHandler)),
	}, extra...)...)
	if err != nil {
		fmt.Fprintf(out, "ark:\n")
		report("ark.base_url", "", err)
		return failed
	}
	fmt.Fprintf(out, "ark: %s (connect timeout %s)\n", ark.URL(), cfg.Ark.ConnectTimeout.D())
	results := make([]func(), len(cfg.Models))
	var wg sync.WaitGroup
	for i, m := range cfg.Models {
		wg.Go(func() {
			detail, err := checkModel(ctx, ark, m, cfg.Ark.ConnectTimeout.D())
			results[i] = func() { report(fmt.Sprintf("%s (%s)", m.Name, m.ID), detail, err) }
		})
	}
	wg.Wait()
	for _, show := range results {
		show()
	}

	fmt.Fprintf(out, "redis:\n")
	detail, err := checkRedis(ctx, cfg.Redis)
	report(redisName(cfg.Redis), detail, err)

	messenger := func(name, apiURL, what string, check func(context.Context) (string, error)) {
		fmt.Fprintf(out, "%s: %s\n", name, apiURL)
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		detail, err := check(ctx)
		report(what, detail, err)
	}
	if cfg.Slack.Enabled() {
		messenger("slack", cfg.Slack.APIURL, "tokens", func(ctx context.Context) (string, error) { return slack.Check(ctx, cfg.Slack) })
	}
	if cfg.Discord.Enabled() {
		messenger("discord", cfg.Discord.APIURL, "token", func(ctx context.Context) (string, error) { return discord.Check(ctx, cfg.Discord) })
	}
	if failed == 0 {
		fmt.Fprintln(out, "all checks passed")
	} else {
		fmt.Fprintf(out, "%d check(s) failed\n", failed)
	}
	return failed
}

// checkModel streams a one-word question to model m and closes the stream
// at its first token, so the check costs a handful of tokens. connect is
// ark.connect_timeout, named when the check runs out of time.
func checkModel(parent context.Context, ark *arkclient.Client, m config.Model, connect time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(parent, checkTimeout)
	defer cancel()
	start := time.Now()
	question := []arkclient.Message{{Role: "user", Content: "Reply with one word: ok"}}
	var s *arkclient.Stream
	var err error
	if m.API == config.APIResponses { // not stored: nothing continues it
		s, err = ark.StreamResponses(ctx, arkclient.ResponsesRequest{Model: m.ID, Input: question, MaxOutputTokens: 16, Thinking: m.Thinking})
	} else {
		s, err = ark.Stream(ctx, arkclient.Request{
			Model:    m.ID,
			Messages: question,
			// Small, but room for a thinking model's first words.
			MaxTokens: 16,
			Thinking:  m.Thinking,
		})
	}
	if err != nil {
		var aerr *arkclient.Error
		if parent.Err() == nil && ctx.Err() != nil {
			u, _ := url.Parse(ark.URL())
			return "", fmt.Errorf("no answer from Ark at %s within %s, the check's limit (ark.connect_timeout %s, retried once): check the network, the proxy (HTTPS_PROXY) and ark.base_url",
				u.Host, checkTimeout, connect)
		}
		if errors.As(err, &aerr) {
			// What the users would read, then what Ark (or the network) said.
			return "", fmt.Errorf("%s [%s: %s]", aerr.UserMessage(), aerr.Code, aerr.Message)
		}
		return "", err
	}
	ttft := time.Since(start)
	s.Close()
	return fmt.Sprintf("answers, first token in %s", ttft.Round(time.Millisecond)), nil
}

// checkRedis pings the configured Redis (the embedded one always answers).
func checkRedis(ctx context.Context, cfg config.Redis) (string, error) {
	rdb, closeRedis, err := openRedis(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", err
	}
	defer closeRedis()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return "", fmt.Errorf("PING: %w: is Redis running and is redis.url right?", err)
	}
	detail := fmt.Sprintf("PING answered in %s", time.Since(start).Round(time.Microsecond))
	if cfg.URL == "" {
		detail += "; embedded and in memory: conversations are lost when the bot stops (set redis.url for real use)"
	}
	return detail, nil
}

// redisName names the Redis without its user, password or options.
func redisName(cfg config.Redis) string {
	if cfg.URL == "" {
		return "embedded"
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return "redis.url" // openRedis reports what is wrong with it
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

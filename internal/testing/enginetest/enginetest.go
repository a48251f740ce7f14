// Package enginetest wires the real conversation engine for adapter tests:
// an embedded Redis, the given fake Ark, and two registered models (doubao,
// the default, with vision; deepseek-r1), or with NewSearching one model
// on the Responses API that searches the web.
package enginetest

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/wire"
)

// New returns an engine answering through ark, its store on an embedded
// Redis stopped when t ends; opts follow a discarding logger.
func New(t testing.TB, ark *arktest.Server, opts ...conversation.Option) *conversation.Engine {
	t.Helper()
	return newEngine(t, redisFor(t), ark, defaultModels, opts...)
}

// defaultModels is New's configuration.
const defaultModels = `
ark: {api_key: k}
models:
  - {name: doubao, id: doubao-seed-1-6-250615, vision: true}
  - {name: deepseek-r1, id: deepseek-r1-250528}
`

// Replicas returns n engines configured as New's, as n replicas of the
// bot: they share one embedded Redis and listen for each other's stop
// requests until t ends.
func Replicas(t testing.TB, ark *arktest.Server, n int, opts ...conversation.Option) []*conversation.Engine {
	t.Helper()
	rdb := redisFor(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	out := make([]*conversation.Engine, n)
	for i := range out {
		e := newEngine(t, rdb, ark, defaultModels, opts...)
		ready := make(chan struct{})
		var once sync.Once
		wg.Go(func() { e.ListenForStops(ctx, func() { once.Do(func() { close(ready) }) }) })
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatal("an engine did not subscribe to stop requests")
		}
		out[i] = e
	}
	return out
}

// NewSearching is New with one model, seed, on the Responses API with
// web search on.
func NewSearching(t testing.TB, ark *arktest.Server, opts ...conversation.Option) *conversation.Engine {
	t.Helper()
	return newEngine(t, redisFor(t), ark, `
ark: {api_key: k}
models:
  - {name: seed, id: doubao-seed-1-6-250615, api: responses, search: {enabled: true}}
`, opts...)
}

// redisFor is an embedded Redis stopped when t ends.
func redisFor(t testing.TB) redis.UniversalClient {
	t.Helper()
	mr, err := embedredis.Start()
	if err != nil {
		t.Fatal(err)
	}
	rdb := mr.Client()
	t.Cleanup(func() { rdb.Close(); mr.Close() })
	return rdb
}

// newEngine is an engine with the configuration yaml, its store on rdb.
func newEngine(t testing.TB, rdb redis.UniversalClient, ark *arktest.Server, yaml string, opts ...conversation.Option) *conversation.Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	client, err := arkclient.New(ark.URL, "k", arkclient.WithRetries(1, time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	store := conversation.NewStore(rdb, conversation.StoreOptions{Prefix: "e2e", TTL: time.Hour, MaxTurns: 20,
		LockTTL: 5 * time.Second, LockWait: 10 * time.Second, DedupeTTL: time.Hour})
	// The configuration's options but its render intervals: adapter tests
	// set their own, else the engine's default.
	opts = append([]conversation.Option{
		conversation.WithSystemPrompt(cfg.SystemPrompt),
		conversation.WithLimits(conversation.Limits{MaxInputChars: cfg.Limits.MaxInputChars}),
		conversation.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		conversation.WithStartLimit(cfg.Server.StartLimit()),
		conversation.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	return conversation.NewEngine(wire.Models(cfg), store, client, opts...)
}

// Takes makes ark answer "take N on <the question>", N counting its
// answers from 1, word by word.
func Takes(ark *arktest.Server) {
	var n atomic.Int64
	ark.SetHandler(func(r arktest.Request) arktest.Response {
		return arktest.Response{Content: arktest.SplitWords(fmt.Sprintf("take %d on %s", n.Add(1), r.Messages[len(r.Messages)-1].Text))}
	})
}

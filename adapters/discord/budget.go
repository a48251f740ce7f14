package discord

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// Default render budgets. Discord does not publish its message limits; in
// practice creating and editing messages share about 5 requests per 5 s per
// channel, and a bot may make 50 requests per second in all.
const (
	DefaultChannelCalls  = 5
	DefaultChannelWindow = 5 * time.Second
	DefaultGlobalPerSec  = 50
)

// budgets spends the adapter's own request budget before discordgo's
// buckets are involved: a per-channel limiter (message posts and edits in
// one channel or thread, shared by every answer streaming there) and a
// global one.
//
// A token bucket with burst b and rate r lets through at most b + r·w calls
// in any window w; the channel limiter takes b = 2 (1 when calls < 3) and
// r = (calls-b)/window, so no window of that length sees more than calls
// requests while a new answer's placeholder and first token go out at once.
type budgets struct {
	global   *rate.Limiter
	channels *lru[string, *rate.Limiter]
	perSec   rate.Limit
	burst    int
}

func newBudgets(calls int, window time.Duration, globalPerSec float64) *budgets {
	calls = max(calls, 1)
	if window <= 0 {
		window = DefaultChannelWindow
	}
	burst := 1
	if calls >= 3 {
		burst = 2 // the placeholder and the first token both go out at once
	}
	r := rate.Limit(float64(calls-burst) / window.Seconds())
	if calls == 1 {
		r = rate.Every(window)
	}
	g := rate.NewLimiter(rate.Limit(globalPerSec), max(int(globalPerSec/10), 1))
	if globalPerSec <= 0 {
		g = rate.NewLimiter(rate.Inf, 1)
	}
	return &budgets{global: g, channels: newLRU[string, *rate.Limiter](20000), perSec: r, burst: burst}
}

func (b *budgets) channel(key string) *rate.Limiter {
	return b.channels.GetOrAdd(key, func() *rate.Limiter { return rate.NewLimiter(b.perSec, b.burst) })
}

// try takes one call from the channel's budget without waiting.
func (b *budgets) try(key string) bool {
	if !b.channel(key).Allow() {
		return false
	}
	// The global limit is generous; wait for it only briefly.
	r := b.global.Reserve()
	if d := r.Delay(); d > 100*time.Millisecond {
		r.Cancel()
		return false
	} else if d > 0 {
		time.Sleep(d)
	}
	return true
}

// wait takes one call from the channel's budget, waiting for it.
func (b *budgets) wait(ctx context.Context, key string) error {
	if err := b.channel(key).Wait(ctx); err != nil {
		return err
	}
	return b.global.Wait(ctx)
}

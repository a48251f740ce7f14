package discord

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/internal/ratelimit"
)

// Default render budgets. Discord does not publish its message limits; in
// practice creating and editing messages share about 5 requests per 5 s per
// channel, and a bot may make 50 requests per second in all.
const (
	DefaultChannelCalls  = 5
	DefaultChannelWindow = 5 * time.Second
	DefaultGlobalPerSec  = 50
)

// windowMargin is the share by which the channel window is planned longer
// than Discord's.
const windowMargin = 0.1

// The adapter's limits: every message post, edit and delete is charged to
// its channel's (or interaction's) bucket and to the global one.
const (
	limitChannel = "channel"
	limitGlobal  = "global"
)

// rateLimits is the adapter's own request budget, spent before discordgo's
// buckets are involved: a per-channel limit (message posts and edits in
// one channel or thread, shared by every answer streaming there) and a
// global one, which a best-effort call waits for briefly since it is
// generous.
//
// The channel limit is a sliding window of calls per window: Discord
// counts calls in fixed windows, and no fixed window can then see more
// than calls requests, wherever it begins; yet every window's calls are
// used, where a token bucket of the same safety would spend three fifths.
// The window is planned windowMargin longer, for calls that reach Discord
// sooner after the one before than they were sent.
func rateLimits(calls int, window time.Duration, globalPerSec float64) ratelimit.Limits {
	calls = max(calls, 1)
	if window <= 0 {
		window = DefaultChannelWindow
	}
	window += time.Duration(float64(window) * windowMargin)
	global := ratelimit.Limit{Burst: 1}
	if globalPerSec > 0 {
		global = ratelimit.Limit{PerSecond: globalPerSec, Burst: max(int(globalPerSec/10), 1), Patience: 100 * time.Millisecond}
	}
	return ratelimit.Limits{
		limitChannel: {Burst: calls, Window: window, Scope: ratelimit.PerChannel},
		limitGlobal:  global,
	}
}

// call runs one message request under the budget of key (a channel, or
// an interaction) and the global one: see ratelimit.Budget.Do. Requests
// made in fn pass reqOpts, so a 429 comes back to the budget rather than
// being slept on by discordgo under its bucket lock.
func (a *Adapter) call(ctx context.Context, p ratelimit.Priority, method, key string, idempotent bool, fn func(context.Context) error) error {
	return a.budget.Do(ctx, ratelimit.Call{
		Method: method, Limits: []string{limitChannel, limitGlobal}, Channel: key, Priority: p, Idempotent: idempotent,
	}, fn)
}

// free reports whether key's budget (and the global one) has a
// best-effort call free now with spare calls left over.
func (a *Adapter) free(key string, spare int) bool {
	return a.budget.Available(ratelimit.Call{Limits: []string{limitChannel, limitGlobal}, Channel: key, Priority: ratelimit.BestEffort, Spare: spare})
}

// reqOpts are the request options of a call made under the budget.
func reqOpts(ctx context.Context) []discordgo.RequestOption {
	return []discordgo.RequestOption{discordgo.WithContext(ctx), discordgo.WithRetryOnRatelimit(false)}
}

// classify reads discordgo's errors for the ratelimit package: with retries
// off, a 429 is a *discordgo.RateLimitError carrying Retry-After.
func classify(err error) (ratelimit.Kind, time.Duration) {
	var rl *discordgo.RateLimitError
	if errors.As(err, &rl) {
		var after time.Duration
		if rl.RateLimit != nil && rl.TooManyRequests != nil {
			after = rl.RetryAfter
		}
		return ratelimit.RateLimited, after
	}
	if transient(err) {
		return ratelimit.Transient, 0
	}
	return ratelimit.Failed, 0
}

// transient reports whether err is an HTTP 5xx or a network failure, not
// Discord's answer to the request.
func transient(err error) bool {
	var re *discordgo.RESTError
	if errors.As(err, &re) {
		return re.Response != nil && re.Response.StatusCode >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

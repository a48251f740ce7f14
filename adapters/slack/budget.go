package slack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"golang.org/x/time/rate"

	"github.com/arkbot/arkbot/metrics"
)

// Slack's published rate limits (https://docs.slack.dev/apis/web-api/rate-limits),
// per workspace per method unless noted. Slack allows short bursts above
// them but does not publish by how much.
const (
	Tier2PerMinute = 20  // chat.startStream, chat.stopStream
	Tier3PerMinute = 50  // chat.update, chat.delete, reactions.add, assistant.threads.setStatus
	Tier4PerMinute = 100 // chat.appendStream, chat.postEphemeral, users.info, files.info
	// PostMessagePerMinute is chat.postMessage's special limit: about one
	// message per second per channel.
	PostMessagePerMinute = 60
	// BudgetShare is the share of each published limit the adapter plans to
	// spend, leaving headroom for clock skew and network jitter. Replicas
	// serving one workspace split it further: by their live count
	// (WithPresence), or by a fixed number with Budgets.Scaled.
	BudgetShare = 0.9
)

// Budget is a token bucket for one API method: PerMinute calls sustained,
// Burst at once, per workspace or (PerChannel) per workspace and channel.
type Budget struct {
	PerMinute  float64
	Burst      int
	PerChannel bool
}

// Budgets maps API method names to budgets. Methods not listed are not limited.
type Budgets map[string]Budget

// DefaultBudgets returns BudgetShare of Slack's published limits, with
// bursts smaller than Slack tolerates.
func DefaultBudgets() Budgets {
	return Budgets{
		"chat.postMessage":            {PerMinute: PostMessagePerMinute * BudgetShare, Burst: 3, PerChannel: true},
		"chat.update":                 {PerMinute: Tier3PerMinute * BudgetShare, Burst: 5},
		"chat.delete":                 {PerMinute: Tier3PerMinute * BudgetShare, Burst: 3},
		"chat.postEphemeral":          {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"chat.startStream":            {PerMinute: Tier2PerMinute * BudgetShare, Burst: 3},
		"chat.appendStream":           {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"chat.stopStream":             {PerMinute: Tier2PerMinute * BudgetShare, Burst: 3},
		"assistant.threads.setStatus": {PerMinute: Tier3PerMinute * BudgetShare, Burst: 5},
		"users.info":                  {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"files.info":                  {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
	}
}

// Scaled returns a copy with every rate multiplied by f; bursts are kept.
// Use f = 1/replicas when several replicas share a workspace, or a large f
// against a fake Slack whose limits are scaled the same way.
func (b Budgets) Scaled(f float64) Budgets {
	out := make(Budgets, len(b))
	for m, v := range b {
		v.PerMinute *= f
		out[m] = v
	}
	return out
}

// minFinalWait is the least time a final render may take: for a 429's
// Retry-After and the calls themselves.
const minFinalWait = 30 * time.Second

// finalWait bounds a final render, which waits for budget rather than skip.
// In a busy workspace it may queue behind the final renders of every other
// answer in flight (at most inFlight, the adapter's workers) on the slowest
// workspace-wide budget a final render uses, so it gets that long: 200
// answers finishing at once on chat.update's 45 a minute need 4.4 minutes,
// and a fixed 30 s would leave most of them showing a partial answer.
func finalWait(b Budgets, inFlight int) time.Duration {
	d := minFinalWait
	for _, method := range []string{"chat.update", "chat.stopStream", "chat.delete"} {
		if bud, ok := b[method]; ok && bud.PerMinute > 0 && !bud.PerChannel {
			d = max(d, minFinalWait+time.Duration(float64(inFlight)/bud.PerMinute*float64(time.Minute)))
		}
	}
	return d
}

// priority says what to do when a method's budget is spent.
type priority int

const (
	// bestEffort skips the call: an intermediate render, whose text the
	// next render carries anyway.
	bestEffort priority = iota
	// mustDeliver waits for budget: a first post, a final render, a notice.
	mustDeliver
)

// errSkipped reports a best-effort call skipped for want of budget.
var errSkipped = errors.New("skipped: rate budget spent")

// maxRateLimitRetries bounds retries of one call answered HTTP 429.
const maxRateLimitRetries = 6

// budgeter holds the token buckets, created on first use.
type budgeter struct {
	budgets Budgets
	mu      sync.Mutex
	buckets map[string]*bucket
	adds    int
	share   float64 // of each budget's rate this replica spends (see setShare)
}

type bucket struct {
	lim          *rate.Limiter
	full         rate.Limit // the budget's whole rate; lim runs at full·share
	fullBurst    int        // and its whole burst
	blockedUntil time.Time  // after a 429: nobody calls before this
	used         time.Time
}

// burstShare is this replica's part of a burst: whole parts only, so that
// the replicas' bursts together stay within it, but at least one call.
func burstShare(burst int, f float64) int {
	return max(int(float64(burst)*f), 1)
}

func newBudgeter(b Budgets) *budgeter {
	return &budgeter{budgets: b, buckets: map[string]*bucket{}, share: 1}
}

// setShare makes this replica spend f of every budget from now on, as
// when 1/f replicas serve the workspace: f of its rate and of its burst.
func (b *budgeter) setShare(f float64) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.share = f
	for _, k := range b.buckets {
		if k.full != rate.Inf {
			k.lim.SetLimitAt(now, k.full*rate.Limit(f))
			k.lim.SetBurstAt(now, burstShare(k.fullBurst, f))
		}
	}
}

// get returns the bucket for a call; b.mu is held.
func (b *budgeter) get(team, channel, method string, now time.Time) *bucket {
	bud, limited := b.budgets[method]
	key := team + "|" + method
	if bud.PerChannel {
		key += "|" + channel
	}
	k := b.buckets[key]
	if k == nil {
		k = &bucket{lim: rate.NewLimiter(rate.Inf, 1), full: rate.Inf}
		if limited && bud.PerMinute > 0 {
			k.full, k.fullBurst = rate.Limit(bud.PerMinute/60), max(bud.Burst, 1)
			k.lim = rate.NewLimiter(k.full*rate.Limit(b.share), burstShare(k.fullBurst, b.share))
		}
		b.buckets[key] = k
		b.adds++
		if b.adds%1024 == 0 {
			b.prune(now)
		}
	}
	k.used = now
	return k
}

// prune forgets buckets idle long enough to be full again; b.mu is held.
func (b *budgeter) prune(now time.Time) {
	for key, k := range b.buckets {
		if now.Sub(k.used) > 10*time.Minute && now.After(k.blockedUntil) {
			delete(b.buckets, key)
		}
	}
}

// allow takes a token now if there is one.
func (b *budgeter) allow(team, channel, method string) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(team, channel, method, now)
	if now.Before(k.blockedUntil) {
		return false
	}
	return k.lim.AllowN(now, 1)
}

// available reports whether a token is free now, without taking it.
func (b *budgeter) available(team, channel, method string) bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(team, channel, method, now)
	return !now.Before(k.blockedUntil) && k.lim.TokensAt(now) >= 1
}

// wait takes a token, waiting for one (and for any 429 penalty) as long as ctx allows.
func (b *budgeter) wait(ctx context.Context, team, channel, method string) error {
	for {
		b.mu.Lock()
		now := time.Now()
		k := b.get(team, channel, method, now)
		blocked := k.blockedUntil.Sub(now)
		var r *rate.Reservation
		if blocked <= 0 {
			r = k.lim.ReserveN(now, 1)
		}
		b.mu.Unlock()
		if blocked > 0 {
			if err := sleep(ctx, blocked); err != nil {
				return err
			}
			continue
		}
		if !r.OK() {
			return errors.New("rate budget misconfigured: burst below 1")
		}
		if d := r.Delay(); d > 0 {
			if err := sleep(ctx, d); err != nil {
				r.Cancel()
				return err
			}
		}
		return nil
	}
}

// penalize blocks a bucket for d after Slack answered 429.
func (b *budgeter) penalize(team, channel, method string, d time.Duration) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(team, channel, method, now)
	if until := now.Add(d); until.After(k.blockedUntil) {
		k.blockedUntil = until
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// rateLimited reports whether err is Slack's 429, and how long to wait.
func rateLimited(err error) (time.Duration, bool) {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return max(rl.RetryAfter, time.Second), true
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) && sc.Code == http.StatusTooManyRequests {
		return time.Second, true
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == "ratelimited" {
		return time.Second, true
	}
	return 0, false
}

// idempotent lists the methods that may be repeated after a transient failure.
var idempotent = map[string]bool{"chat.update": true, "chat.stopStream": true, "users.info": true, "auth.test": true}

// transientRetryDelay is the pause before repeating a call that failed transiently.
const transientRetryDelay = 200 * time.Millisecond

// transient reports whether err is a network failure or an HTTP 5xx, not
// Slack's answer to the request.
func transient(err error) bool {
	var status slack.StatusCodeError
	if errors.As(err, &status) {
		return status.Code >= 500
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// call runs one API call under the method's budget, counts it, and on HTTP
// 429 waits Retry-After (blocking the method for every caller in the
// workspace meanwhile) and retries the same call, so no text is lost.
func (a *Adapter) call(ctx context.Context, p priority, team, channel, method string, fn func(context.Context) error) error {
	if p == bestEffort {
		if !a.budget.allow(team, channel, method) {
			return errSkipped
		}
	} else if err := a.budget.wait(ctx, team, channel, method); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			metrics.PlatformCall("slack", method, "ok")
			return nil
		}
		d, limited := rateLimited(err)
		if !limited {
			metrics.PlatformCall("slack", method, "error")
			if attempt == 0 && p != bestEffort && idempotent[method] && transient(err) {
				// A dropped pooled connection or a 5xx: one more try, so a
				// final render isn't lost to a blip. Only for calls that are
				// safe to repeat (a repeated post or append would duplicate text).
				a.log.Warn("slack call failed; retrying once", "method", method, "err", err)
				if err := sleep(ctx, transientRetryDelay); err != nil {
					return err
				}
				continue
			}
			return err
		}
		metrics.PlatformCall("slack", method, "ratelimited")
		a.budget.penalize(team, channel, method, d)
		if attempt >= maxRateLimitRetries {
			return err
		}
		a.log.Warn("slack rate limit hit; waiting before retrying", "method", method, "team", team, "retry_after", d, "attempt", attempt+1)
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

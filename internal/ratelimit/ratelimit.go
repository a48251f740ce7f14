// Package ratelimit spends a platform's API rate budgets: keyed token
// buckets from a table of named limits, best-effort calls that skip versus
// must-deliver calls that wait, an HTTP 429's Retry-After blocking its key
// for every caller, this replica's share of every limit, and one retry rule
// for rate-limited and transient failures (Budget.Do).
package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/arkbot/arkbot/metrics"
)

// Scope says what a limit's buckets are keyed by besides the limit's name.
type Scope uint8

const (
	// Global: one bucket for the whole adapter.
	Global Scope = 0
	// PerWorkspace: a bucket per workspace (Slack team, Discord guild).
	PerWorkspace Scope = 1
	// PerChannel: a bucket per channel; with PerWorkspace, per both.
	PerChannel Scope = 2
)

// Limit is one named budget: PerSecond calls sustained and Burst at once,
// in each bucket of its Scope.
type Limit struct {
	PerSecond float64 // 0 or less: unlimited (a 429 still blocks the key)
	Burst     int     // at least 1
	Scope     Scope
	// Patience is how long a best-effort call may wait for this limit's
	// token rather than skip (0: not at all).
	Patience time.Duration
}

// Limits maps limit names to limits. A call charged to a name not listed
// is not limited, but a 429 still blocks its key.
type Limits map[string]Limit

// Priority says what a call does when its budget is spent.
type Priority int

const (
	// BestEffort skips the call (ErrSkipped): an intermediate render,
	// whose text the next render carries anyway. A 429 skips it too.
	BestEffort Priority = iota
	// MustDeliver waits for budget as long as its context allows, and
	// retries 429s: a first post, a final render, a notice.
	MustDeliver
)

// ErrSkipped reports a best-effort call skipped for want of budget.
var ErrSkipped = errors.New("skipped: rate budget spent")

// Call describes one API call to Budget.Do.
type Call struct {
	// Method names the call in metrics and logs; it is also the limit
	// charged when Limits is empty.
	Method string
	// Limits names the limits the call is charged to, all at once. A 429
	// blocks the key of the first.
	Limits             []string
	Workspace, Channel string
	Priority           Priority
	// Idempotent marks a call that may be repeated after a transient
	// failure (a repeated post would duplicate text).
	Idempotent bool
	// Patience is how long a best-effort call may wait for its tokens
	// rather than skip, besides each limit's own Patience; such a call may
	// spend tokens claimed for others (see Claim). For a final render that
	// has another way to show if the budget is not free soon.
	Patience time.Duration
}

// patience is how long the call may wait for limit l's token.
func (c Call) patience(l Limit) time.Duration { return max(l.Patience, c.Patience) }

// needs is how many tokens bucket k must hold for the call to take one
// without waiting: 1, and for a best-effort call without patience also
// the tokens claimed for later calls.
func (c Call) needs(k *bucket) float64 {
	if c.Priority == BestEffort && c.Patience <= 0 {
		return 1 + float64(k.claims)
	}
	return 1
}

func (c Call) limits() []string {
	if len(c.Limits) == 0 {
		return []string{c.Method}
	}
	return c.Limits
}

// Kind is what a failed call's error means for repeating it.
type Kind int

const (
	// Failed is the platform's answer to the request: not repeated.
	Failed Kind = iota
	// RateLimited is an HTTP 429: wait its Retry-After, then repeat.
	RateLimited
	// Transient is a network failure or an HTTP 5xx: repeated only if
	// the call is idempotent.
	Transient
)

// Classifier tells what an SDK's error is, and for a 429 how long the
// platform asked to wait (0: not said).
type Classifier func(err error) (Kind, time.Duration)

// Clock tells the time and sleeps; tests pass a fake one.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends, returning context.Cause(ctx) then.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error { return Sleep(ctx, d) }

// Sleep waits d or until ctx ends, returning context.Cause(ctx) then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Defaults of Budget.Do's retry rule.
const (
	DefaultRateLimitRetries = 6
	DefaultTransientRetries = 2
	DefaultTransientBackoff = 250 * time.Millisecond
	// defaultRetryAfter is the wait after a 429 that did not say how long.
	defaultRetryAfter = time.Second
	// pruneEvery is how many new buckets trigger a sweep of idle ones.
	pruneEvery = 1024
)

// Option configures a Budget.
type Option func(*Budget)

// WithClock sets the clock (default the system's).
func WithClock(c Clock) Option { return func(b *Budget) { b.clock = c } }

// WithClassifier sets how Do reads the SDK's errors (default: every error Failed).
func WithClassifier(c Classifier) Option { return func(b *Budget) { b.classify = c } }

// WithObserver adds fn, called with each attempt's method and result
// ("ok", "error", "ratelimited") besides the metrics.
func WithObserver(fn func(method, result string)) Option { return func(b *Budget) { b.observe = fn } }

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(b *Budget) { b.log = l } }

// WithRetries bounds Do's retries: of a call answered 429, and of an
// idempotent call that failed transiently, the first retry after backoff
// and each further one after twice the last wait.
func WithRetries(rateLimited, transient int, backoff time.Duration) Option {
	return func(b *Budget) {
		b.rateLimitRetries, b.transientRetries, b.backoff = rateLimited, transient, backoff
	}
}

// Budget holds one platform's token buckets, created on first use and
// forgotten once full and idle.
type Budget struct {
	platform         string
	limits           Limits
	clock            Clock
	classify         Classifier
	observe          func(method, result string)
	log              *slog.Logger
	rateLimitRetries int
	transientRetries int
	backoff          time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
	adds    int
	share   float64 // of each limit's rate and burst this replica spends
	// reshared is closed (and replaced) when the share changes, waking the
	// calls waiting for tokens to wait again at the new pace.
	reshared chan struct{}
}

type bucket struct {
	lim          *rate.Limiter // nil: unlimited
	full         Limit         // the whole limit; lim runs at its share
	blockedUntil time.Time     // after a 429: nobody calls before this
	claims       int           // tokens promised to later calls (Claim)
}

// New returns a budget for platform (the metrics' platform label) spending limits.
func New(platform string, limits Limits, opts ...Option) *Budget {
	b := &Budget{
		platform: platform, limits: limits, clock: realClock{},
		classify:         func(error) (Kind, time.Duration) { return Failed, 0 },
		log:              slog.Default(),
		rateLimitRetries: DefaultRateLimitRetries, transientRetries: DefaultTransientRetries, backoff: DefaultTransientBackoff,
		buckets: map[string]*bucket{}, share: 1, reshared: make(chan struct{}),
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// burstShare is a replica's part of a burst: whole calls only, so that the
// replicas' bursts together stay within it, but at least one call.
func burstShare(burst int, f float64) int {
	return max(int(float64(max(burst, 1))*f), 1)
}

// SetShare makes this replica spend f of every limit's rate and burst from
// now on, as when 1/f replicas share the platform's limits. Calls already
// waiting for tokens wait again at the new pace: when another replica
// leaves, its share goes at once to the renders queued here.
func (b *Budget) SetShare(f float64) {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if f == b.share {
		return
	}
	b.share = f
	close(b.reshared)
	b.reshared = make(chan struct{})
	for _, k := range b.buckets {
		if k.lim != nil {
			k.lim.SetLimitAt(now, rate.Limit(k.full.PerSecond*f))
			k.lim.SetBurstAt(now, burstShare(k.full.Burst, f))
		}
	}
}

// Share is the share set by SetShare (1 until then).
func (b *Budget) Share() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.share
}

func key(name string, l Limit, c Call) string {
	k := name
	if l.Scope&PerWorkspace != 0 {
		k += "\x00" + c.Workspace
	}
	if l.Scope&PerChannel != 0 {
		k += "\x00" + c.Channel
	}
	return k
}

// get returns the buckets a call is charged to; b.mu is held.
func (b *Budget) get(c Call, now time.Time) []*bucket {
	names := c.limits()
	out := make([]*bucket, len(names))
	for i, name := range names {
		l := b.limits[name]
		k := key(name, l, c)
		bk := b.buckets[k]
		if bk == nil {
			bk = &bucket{full: l}
			if l.PerSecond > 0 {
				bk.lim = rate.NewLimiter(rate.Limit(l.PerSecond*b.share), burstShare(l.Burst, b.share))
			}
			b.buckets[k] = bk
			if b.adds++; b.adds%pruneEvery == 0 {
				b.prune(now)
			}
		}
		out[i] = bk
	}
	return out
}

// prune forgets buckets that are full and not blocked: a new bucket would
// be the same. b.mu is held.
func (b *Budget) prune(now time.Time) {
	for k, bk := range b.buckets {
		if now.Before(bk.blockedUntil) || bk.claims > 0 {
			continue
		}
		if bk.lim == nil || bk.lim.TokensAt(now) >= float64(bk.lim.Burst()) {
			delete(b.buckets, k)
		}
	}
}

// Available reports whether the call could take its tokens now without
// waiting (leaving each limit's Reserve, for a best-effort call), taking
// nothing.
func (b *Budget) Available(c Call) bool {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range b.get(c, now) {
		if now.Before(k.blockedUntil) || (k.lim != nil && k.lim.TokensAt(now) < c.needs(k)) {
			return false
		}
	}
	return true
}

// Claim promises a token of each of the call's limits to a later call
// (a final render, say, when its answer starts streaming): until release,
// best-effort calls without patience, and further claims, see one token
// fewer in those buckets. It claims nothing and reports false when a
// bucket holds no token beyond those already claimed, or is blocked by a
// 429. The claimed call itself runs with a patience or as must-deliver,
// best after release. release is safe to call more than once.
func (b *Budget) Claim(c Call) (release func(), ok bool) {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	ks := b.get(c, now)
	for _, k := range ks {
		if now.Before(k.blockedUntil) || (k.lim != nil && k.lim.TokensAt(now) < 1+float64(k.claims)) {
			return func() {}, false
		}
	}
	for _, k := range ks {
		k.claims++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, k := range ks {
				k.claims--
			}
		})
	}, true
}

// acquire takes the call's tokens: for a best-effort call now (or within
// each limit's Patience) or ErrSkipped; for a must-deliver call waiting for
// them, and for any 429 block, as long as ctx allows.
func (b *Budget) acquire(ctx context.Context, c Call) error {
	for {
		now := b.clock.Now()
		b.mu.Lock()
		ks := b.get(c, now)
		var blocked time.Duration
		for _, k := range ks {
			blocked = max(blocked, k.blockedUntil.Sub(now))
		}
		if blocked > 0 {
			b.mu.Unlock()
			if c.Priority == BestEffort {
				return ErrSkipped
			}
			if err := b.clock.Sleep(ctx, blocked); err != nil {
				return err
			}
			continue
		}
		if c.Priority == BestEffort {
			for _, k := range ks {
				if k.lim != nil && c.patience(k.full) <= 0 && k.lim.TokensAt(now) < c.needs(k) {
					b.mu.Unlock()
					return ErrSkipped
				}
			}
		}
		rs := make([]*rate.Reservation, 0, len(ks))
		var delay time.Duration
		ok := true
		for _, k := range ks {
			if k.lim == nil {
				continue
			}
			r := k.lim.ReserveN(now, 1)
			rs = append(rs, r)
			d := r.DelayFrom(now)
			if !r.OK() || (c.Priority == BestEffort && d > c.patience(k.full)) {
				ok = false
				break
			}
			delay = max(delay, d)
		}
		if !ok {
			for _, r := range rs {
				r.CancelAt(now)
			}
			b.mu.Unlock()
			if c.Priority == BestEffort {
				return ErrSkipped
			}
			return errors.New("ratelimit: a limit's burst is below 1")
		}
		reshared := b.reshared
		b.mu.Unlock()
		if delay > 0 {
			if err := b.sleepUnlessReshared(ctx, reshared, delay); err != nil {
				now := b.clock.Now()
				b.mu.Lock()
				for _, r := range rs {
					r.CancelAt(now)
				}
				b.mu.Unlock()
				if ctx.Err() != nil {
					return err
				}
				continue // the share changed: reserve again at the new pace
			}
		}
		return nil
	}
}

// errReshared ends a wait for tokens when the share changes.
var errReshared = errors.New("ratelimit: share changed")

// sleepUnlessReshared sleeps d, returning early with ctx's cause when ctx
// ends or with errReshared when reshared is closed.
func (b *Budget) sleepUnlessReshared(ctx context.Context, reshared <-chan struct{}, d time.Duration) error {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-reshared:
			cancel(errReshared)
		case <-sctx.Done():
		}
	}()
	return b.clock.Sleep(sctx, d)
}

// penalize blocks the key of the call's first limit for d, for every caller.
func (b *Budget) penalize(c Call, d time.Duration) {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.get(Call{Method: c.limits()[0], Workspace: c.Workspace, Channel: c.Channel}, now)[0]
	if until := now.Add(d); until.After(k.blockedUntil) {
		k.blockedUntil = until
	}
}

func (b *Budget) count(method, result string) {
	metrics.PlatformCall(b.platform, method, result)
	if b.observe != nil {
		b.observe(method, result)
	}
}

// Do runs fn under the call's budget (see Priority) and counts each
// attempt. On a 429 it blocks the call's first limit key for the
// Retry-After; a best-effort call then returns an error matching
// ErrSkipped, a must-deliver one waits and repeats (at most the
// rate-limited retries). A transient failure of an idempotent
// must-deliver call is repeated after a backoff (at most the transient
// retries). Other errors are returned as they are.
func (b *Budget) Do(ctx context.Context, c Call, fn func(context.Context) error) error {
	if err := b.acquire(ctx, c); err != nil {
		return err
	}
	limited, failed := 0, 0
	backoff := b.backoff
	for {
		err := fn(ctx)
		if err == nil {
			b.count(c.Method, "ok")
			return nil
		}
		kind, after := b.classify(err)
		switch kind {
		case RateLimited:
			b.count(c.Method, "ratelimited")
			if after <= 0 {
				after = defaultRetryAfter
			}
			b.penalize(c, after)
			if c.Priority == BestEffort {
				return errors.Join(ErrSkipped, err)
			}
			if limited >= b.rateLimitRetries {
				return err
			}
			limited++
			b.log.Info("rate limited; waiting to retry", "method", c.Method, "workspace", c.Workspace, "channel", c.Channel,
				"retry_after", after, "attempt", limited)
			if werr := b.acquire(ctx, c); werr != nil {
				return errors.Join(err, werr)
			}
		case Transient:
			b.count(c.Method, "error")
			if (c.Priority == BestEffort && c.Patience <= 0) || !c.Idempotent || failed >= b.transientRetries {
				return err
			}
			failed++
			// The error text is not logged: a URL in it may hold a token.
			b.log.Warn("call failed transiently; retrying", "method", c.Method, "workspace", c.Workspace, "channel", c.Channel,
				"attempt", failed, "in", backoff)
			if werr := b.clock.Sleep(ctx, backoff); werr != nil {
				return errors.Join(err, werr)
			}
			backoff *= 2
		default:
			b.count(c.Method, "error")
			return err
		}
	}
}

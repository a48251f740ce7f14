package slack

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/ratelimit"
)

// Slack's published rate limits (https://docs.slack.dev/apis/web-api/rate-limits),
// per workspace per method unless noted. Slack allows short bursts above
// them but does not publish by how much.
const (
	Tier2PerMinute = 20  // chat.startStream, chat.stopStream
	Tier3PerMinute = 50  // chat.update, chat.delete, reactions.add, assistant.threads.setStatus
	Tier4PerMinute = 100 // chat.appendStream, chat.postEphemeral, users.info, files.info, files.*UploadExternal
	// PostMessagePerMinute is chat.postMessage's special limit: about one
	// message per second per channel.
	PostMessagePerMinute = 60
	// PostMessageWorkspacePerMinute is the workspace-wide allowance of
	// chat.postMessage the bot assumes: Slack documents only "several
	// hundred messages per minute".
	PostMessageWorkspacePerMinute = 600
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

// postMessageWorkspace names chat.postMessage's workspace-wide allowance,
// charged with the method's per-channel budget.
const postMessageWorkspace = "chat.postMessage.workspace"

// Budgets maps API method names to budgets. Methods not listed are not limited.
type Budgets map[string]Budget

// DefaultBudgets returns BudgetShare of Slack's published limits, with
// bursts of about six seconds of a Tier 3 or 4 method's rate and three
// calls of a Tier 2 one: less than the short bursts Slack tolerates. How the adapter spends them is in
// the package documentation.
func DefaultBudgets() Budgets {
	return Budgets{
		"chat.postMessage":            {PerMinute: PostMessagePerMinute * BudgetShare, Burst: 3, PerChannel: true},
		postMessageWorkspace:          {PerMinute: PostMessageWorkspacePerMinute * BudgetShare, Burst: 40},
		"chat.update":                 {PerMinute: Tier3PerMinute * BudgetShare, Burst: 6},
		"chat.delete":                 {PerMinute: Tier3PerMinute * BudgetShare, Burst: 6},
		"chat.postEphemeral":          {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"chat.startStream":            {PerMinute: Tier2PerMinute * BudgetShare, Burst: 3},
		"chat.appendStream":           {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"chat.stopStream":             {PerMinute: Tier2PerMinute * BudgetShare, Burst: 3},
		"assistant.threads.setStatus": {PerMinute: Tier3PerMinute * BudgetShare, Burst: 6},
		"users.info":                  {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},
		"files.info":                  {PerMinute: Tier4PerMinute * BudgetShare, Burst: 10},

		// Pictures (/image): Slack's external upload flow.
		"files.getUploadURLExternal":   {PerMinute: Tier4PerMinute * BudgetShare, Burst: 5},
		"files.completeUploadExternal": {PerMinute: Tier4PerMinute * BudgetShare, Burst: 5},
		// The agent surface (sessions.go, pane.go): best effort but the session's end.
		"agents.sessions.setStatus":             {PerMinute: Tier3PerMinute * BudgetShare, Burst: 5},
		"assistant.threads.setSuggestedPrompts": {PerMinute: Tier4PerMinute * BudgetShare, Burst: 5},
		"assistant.threads.setTitle":            {PerMinute: Tier4PerMinute * BudgetShare, Burst: 5},
	}
}

// WithLimits returns a copy with the limits of the methods in limits
// replaced by those given as Slack states them (slack.rate_limits): the bot
// plans BudgetShare of each rate, keeps a known method's scope (per channel
// for chat.postMessage) and its burst unless one is given.
func (b Budgets) WithLimits(limits map[string]config.RateLimit) Budgets {
	out := make(Budgets, len(b)+len(limits))
	maps.Copy(out, b)
	for method, l := range limits {
		v, known := out[method]
		v.PerMinute = l.PerMinute * BudgetShare
		if l.Burst > 0 || !known {
			v.Burst = max(l.Burst, 1)
		}
		out[method] = v
	}
	return out
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

// rateLimits is the ratelimit table of budgets: rates per second, each
// method's buckets per workspace, and per channel where marked.
func rateLimits(b Budgets) ratelimit.Limits {
	out := make(ratelimit.Limits, len(b))
	for method, bud := range b {
		scope := ratelimit.PerWorkspace
		if bud.PerChannel {
			scope |= ratelimit.PerChannel
		}
		out[method] = ratelimit.Limit{PerSecond: bud.PerMinute / 60, Burst: max(bud.Burst, 1), Scope: scope}
	}
	return out
}

// classify reads slack-go's errors for the ratelimit package.
func classify(err error) (ratelimit.Kind, time.Duration) {
	if d, limited := rateLimited(err); limited {
		return ratelimit.RateLimited, d
	}
	if transient(err) {
		return ratelimit.Transient, 0
	}
	return ratelimit.Failed, 0
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

// idempotent lists the methods that may be repeated after a transient
// failure (a repeated post or append would duplicate text).
var idempotent = map[string]bool{"chat.update": true, "chat.stopStream": true, "users.info": true, "auth.test": true}

// transient reports whether err is a network failure or an HTTP 5xx, not
// Slack's answer to the request.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var status slack.StatusCodeError
	if errors.As(err, &status) {
		return status.Code >= 500
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// call runs one API call under the method's budget (ratelimit.Budget.Do):
// a best-effort call skips when the budget is spent, a must-deliver one
// waits, retries 429s and, for idempotent methods, transient failures.
func (a *Adapter) call(ctx context.Context, p ratelimit.Priority, team, channel, method string, fn func(context.Context) error) error {
	return a.budget.Do(ctx, rlCall(p, team, channel, method), fn)
}

// callWithin runs a call that waits at most patience for its budget, and
// may spend the budget's reserve: ErrSkipped if it would wait longer.
func (a *Adapter) callWithin(ctx context.Context, patience time.Duration, team, channel, method string, fn func(context.Context) error) error {
	c := rlCall(ratelimit.BestEffort, team, channel, method)
	c.Patience = patience
	return a.budget.Do(ctx, c, fn)
}

// available reports whether the method's budget has a best-effort call
// free now, beyond the calls claimed for final renders.
func (a *Adapter) available(team, channel, method string) bool {
	return a.budget.Available(rlCall(ratelimit.BestEffort, team, channel, method))
}

// claim promises a call of the method for the answer's final render,
// free now (see ratelimit.Budget.Claim).
func (a *Adapter) claim(team, channel, method string) (release func(), ok bool) {
	return a.budget.Claim(rlCall(ratelimit.MustDeliver, team, channel, method))
}

func rlCall(p ratelimit.Priority, team, channel, method string) ratelimit.Call {
	c := ratelimit.Call{Method: method, Workspace: team, Channel: channel, Priority: p, Idempotent: idempotent[method]}
	if method == "chat.postMessage" {
		c.Limits = []string{method, postMessageWorkspace}
	}
	return c
}

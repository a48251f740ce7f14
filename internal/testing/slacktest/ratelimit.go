package slacktest

import (
	"time"

	"golang.org/x/time/rate"
)

// Tier is a token bucket for one method in one workspace (or, for
// chat.postMessage, one channel): PerMinute calls sustained, Burst at once.
type Tier struct {
	PerMinute float64
	Burst     int
}

// Slack's published tiers ("Tier 2: 20+ per minute" and so on). Slack allows
// unspecified bursts; the fake allows about ten seconds' worth.
var (
	Tier2 = Tier{PerMinute: 20, Burst: 5}
	Tier3 = Tier{PerMinute: 50, Burst: 10}
	Tier4 = Tier{PerMinute: 100, Burst: 20}
	// PostMessage is chat.postMessage's special limit: about one message per
	// second per channel, with short bursts.
	PostMessage = Tier{PerMinute: 60, Burst: 5}
	// PostMessageWorkspace is chat.postMessage's workspace-wide allowance,
	// which Slack gives only as "several hundred messages per minute".
	PostMessageWorkspace = Tier{PerMinute: 600, Burst: 100}
)

// workspaceWide names, in the tiers, the workspace-wide allowance of a
// method whose own budget is per channel.
const workspaceWide = ".workspace"

// DefaultTiers maps the methods the fake serves to Slack's tiers.
func DefaultTiers() map[string]Tier {
	return map[string]Tier{
		"chat.postMessage":                 PostMessage,
		"chat.postMessage" + workspaceWide: PostMessageWorkspace,
		"chat.update":                      Tier3,
		"chat.delete":                      Tier3,
		"chat.postEphemeral":               Tier4,
		"chat.startStream":                 Tier2,
		"chat.appendStream":                Tier4,
		"chat.stopStream":                  Tier2,
		"assistant.threads.setStatus":      Tier3,
		"reactions.add":                    Tier3,
		"reactions.remove":                 Tier3,
		"users.info":                       Tier4,
		"files.info":                       Tier4,

		"files.getUploadURLExternal":            Tier4,
		"files.completeUploadExternal":          Tier4,
		"agents.sessions.setStatus":             Tier3,
		"agents.sessions.rename":                Tier3,
		"assistant.threads.setSuggestedPrompts": Tier4,
		"assistant.threads.setTitle":            Tier4,
	}
}

// perChannel lists methods whose budget is per channel rather than per workspace.
var perChannel = map[string]bool{"chat.postMessage": true}

// RateLimits configures the rate-limit emulation.
type RateLimits struct {
	// Scale multiplies every rate: 1 (or 0) is Slack's real numbers, 60 turns a
	// minute's budget into a second's, for fast tests. Bursts are not scaled.
	Scale float64
	// Tiers overrides DefaultTiers per method.
	Tiers map[string]Tier
}

// SetRateLimits turns the emulation on with rl, or off with nil. Over budget,
// a call is answered HTTP 429 with a Retry-After header in whole seconds.
func (s *Server) SetRateLimits(rl *RateLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rl == nil {
		s.limits = nil
		return
	}
	tiers := DefaultTiers()
	for m, t := range rl.Tiers {
		tiers[m] = t
	}
	scale := rl.Scale
	if scale <= 0 {
		scale = 1
	}
	s.limits = &limiter{tiers: tiers, scale: scale, buckets: map[bucketKey]*rate.Limiter{}}
}

type limiter struct {
	tiers   map[string]Tier
	scale   float64
	buckets map[bucketKey]*rate.Limiter
}

// bucketKey names a budget; channel is "" unless the method's is per channel.
type bucketKey struct{ team, method, channel string }

// take spends one token for the call, or reports how long until one is
// free. A per-channel method spends one of its workspace-wide allowance too.
func (l *limiter) take(team, method, channel string, now time.Time) (time.Duration, bool) {
	if _, ok := l.tiers[method]; !ok {
		return 0, true
	}
	keys := []bucketKey{{team: team, method: method}}
	if perChannel[method] {
		keys[0].channel = channel
		if _, ok := l.tiers[method+workspaceWide]; ok {
			keys = append(keys, bucketKey{team: team, method: method + workspaceWide})
		}
	}
	var rs []*rate.Reservation
	var wait time.Duration
	for _, key := range keys {
		b := l.buckets[key]
		if b == nil {
			t := l.tiers[key.method]
			b = rate.NewLimiter(rate.Limit(t.PerMinute*l.scale/60), max(t.Burst, 1))
			l.buckets[key] = b
		}
		r := b.ReserveN(now, 1)
		if !r.OK() {
			wait = time.Minute
		} else {
			wait = max(wait, r.DelayFrom(now))
		}
		rs = append(rs, r)
	}
	if wait > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
		return wait, false
	}
	return 0, true
}

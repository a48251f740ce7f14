package ratelimit

import (
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// pace is how a bucket lets calls through: a token bucket, or a sliding
// window (Limit.Window). Its methods run under the Budget's lock.
type pace interface {
	// tokensAt is how many calls could go at now without waiting.
	tokensAt(now time.Time) float64
	// burst is the most calls at once.
	burst() int
	// reserve books a call at now or later, returning how long from now
	// it must wait and how to give the booking back.
	reserve(now time.Time) (wait time.Duration, cancel func(now time.Time), ok bool)
	// scale sets the share f of the limit l this bucket spends.
	scale(now time.Time, l Limit, f float64)
}

// newPace returns l's pace at share f, or nil when l is unlimited.
func newPace(l Limit, f float64) pace {
	switch {
	case l.Window > 0:
		return &window{n: burstShare(l.Burst, f), span: l.Window}
	case l.PerSecond > 0:
		return tokenBucket{rate.NewLimiter(rate.Limit(l.PerSecond*f), burstShare(l.Burst, f))}
	}
	return nil
}

// tokenBucket is a pace of PerSecond calls sustained and Burst at once.
type tokenBucket struct{ lim *rate.Limiter }

func (t tokenBucket) tokensAt(now time.Time) float64 { return t.lim.TokensAt(now) }

func (t tokenBucket) burst() int { return t.lim.Burst() }

func (t tokenBucket) reserve(now time.Time) (time.Duration, func(time.Time), bool) {
	r := t.lim.ReserveN(now, 1)
	return r.DelayFrom(now), r.CancelAt, r.OK()
}

func (t tokenBucket) scale(now time.Time, l Limit, f float64) {
	t.lim.SetLimitAt(now, rate.Limit(l.PerSecond*f))
	t.lim.SetBurstAt(now, burstShare(l.Burst, f))
}

// window is a pace of at most n calls in any span of time: it never
// exceeds a platform's fixed window of n per span, wherever that window
// begins, and unlike a token bucket of the same safety it lets n calls
// through every span.
type window struct {
	n     int
	span  time.Duration
	calls []time.Time // booked calls, in order; those older than span forgotten
}

// forget drops calls no window ending at now or later can hold.
func (w *window) forget(now time.Time) {
	i := 0
	for i < len(w.calls) && !w.calls[i].After(now.Add(-w.span)) {
		i++
	}
	w.calls = w.calls[i:]
}

func (w *window) tokensAt(now time.Time) float64 {
	w.forget(now)
	in := 0
	for _, c := range w.calls {
		if !c.After(now) {
			in++
		}
	}
	if len(w.calls) > in { // calls booked for later count against now too
		in = len(w.calls)
	}
	return float64(w.n - in)
}

func (w *window) burst() int { return w.n }

func (w *window) reserve(now time.Time) (time.Duration, func(time.Time), bool) {
	if w.n < 1 {
		return 0, func(time.Time) {}, false
	}
	w.forget(now)
	at := now
	if len(w.calls) >= w.n {
		if free := w.calls[len(w.calls)-w.n].Add(w.span); free.After(at) {
			at = free
		}
	}
	if k := len(w.calls); k > 0 && w.calls[k-1].After(at) {
		at = w.calls[k-1]
	}
	w.calls = append(w.calls, at)
	return at.Sub(now), func(now time.Time) {
		if !at.After(now) {
			return // already made
		}
		if i := slices.IndexFunc(w.calls, func(c time.Time) bool { return c.Equal(at) }); i >= 0 {
			w.calls = slices.Delete(w.calls, i, i+1)
		}
	}, true
}

func (w *window) scale(_ time.Time, l Limit, f float64) { w.n = burstShare(l.Burst, f) }

package conversation

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// roundTrips counts Redis round trips: one per command or pipeline sent.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// Redis round trips per answered turn, with the per-user rate limit of the
// example config.yaml and answers' flights recorded, both for a message
// that mentions the bot and for the follow-ups in its thread that don't: 3
// (admit with lock, load and flight, the rate limit, save with unlock),
// under the budget of 4.
func TestRedisRoundTripsPerTurn(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.engine.limits.RequestsPerMinute = 20
		rg.engine.FinishOrphansWith("test", &finished{})
		rg.ask(t, msg("warm up")) // loads scripts
		h := &roundTrips{}
		rdb.AddHook(h)
		const turns = 5
		for _, mentioned := range []bool{true, false} {
			before := h.n.Load()
			for i := 0; i < turns; i++ {
				m := msg("question")
				m.Mentioned = mentioned
				if f := rg.ask(t, m).final(); f.Outcome != OutcomeDone {
					t.Fatalf("turn not answered: %+v", f)
				}
			}
			per := float64(h.n.Load()-before) / turns
			t.Logf("Redis round trips per turn (mentioned %v): %.1f", mentioned, per)
			if per > 3 {
				t.Errorf("%.1f round trips per turn (mentioned %v), want 3", per, mentioned)
			}
		}
	})
}

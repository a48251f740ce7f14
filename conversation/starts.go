package conversation

import (
	"context"
	"sync"
	"time"

	"github.com/arkbot/arkbot/metrics"
)

// startHold is the longest a message holds its set-up slot: a set-up that
// waits (on a rate-limited sign of life, a slow Redis, the lock of a
// thread still answering its previous message) lets the next one begin,
// so the gate smooths bursts without ever capping the bot below
// max_starting set-ups per startHold.
const startHold = 100 * time.Millisecond

// startGate bounds how many messages are being set up at once (admitted in
// Redis, given a sign of life, their request to Ark built and sent). A
// burst of new messages costs the bot more CPU than the answers already
// streaming; set up all at once, they queue every goroutine behind them,
// and the streams' next renders with them. Through the gate a burst waits
// in line instead, in arrival order, and the streams keep their pace
// (docs/decisions.md).
type startGate struct {
	slots chan struct{}
	hold  time.Duration
}

// newStartGate returns a gate for n set-ups at once; n <= 0: no gate (nil).
func newStartGate(n int, hold time.Duration) *startGate {
	if n <= 0 {
		return nil
	}
	return &startGate{slots: make(chan struct{}, n), hold: hold}
}

// enter waits for a slot, or for ctx to end. It returns the function that
// gives the slot back (idempotent, safe to call from any goroutine); the
// slot is given back by itself after the gate's hold. A nil gate lets
// every message in at once.
func (g *startGate) enter(ctx context.Context) (release func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		metrics.StartWait.Observe(0)
	default:
		began := time.Now()
		select {
		case g.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		metrics.StartWait.Observe(time.Since(began).Seconds())
	}
	var once sync.Once
	free := func() { once.Do(func() { <-g.slots }) }
	t := time.AfterFunc(g.hold, free)
	return func() {
		t.Stop()
		free()
	}, nil
}

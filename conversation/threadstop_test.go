package conversation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// StopThread is /stop for a platform's stop control: the same rules, the
// outcome for the adapter, and once per request however often it comes.
func TestStopThread(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		rg := newRig(t, rdb, prefix)
		stop := msg("/stop")
		for i, want := range []StopOutcome{StopNothing, StopRepeated} {
			out, notice, err := rg.engine.StopThread(ctx, stop)
			if err != nil || out != want || (want == StopNothing) != (notice == msgNothingToStop) {
				t.Fatalf("request %d: %v %q %v, want %v", i, out, notice, err, want)
			}
		}

		rg.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three ", "four"}, PerChunk: 300 * time.Millisecond})
		r := &recorder{t: t}
		answered := make(chan struct{})
		go func() { rg.engine.Handle(context.Background(), msg("count slowly"), r); close(answered) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) { // once "one " is on screen
			r.mu.Lock()
			shown := len(r.frames) > 0
			r.mu.Unlock()
			if shown {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		other := msg("/stop")
		other.User = User{ID: "u2", Name: "Grace"}
		if out, notice, err := rg.engine.StopThread(ctx, other); err != nil || out != StopRefused || notice != msgNotYours {
			t.Fatalf("someone else's stop: %v %q %v", out, notice, err)
		}
		if out, notice, err := rg.engine.StopThread(ctx, msg("/stop")); err != nil || out != StopRequested || notice != msgStopped {
			t.Fatalf("the asker's stop: %v %q %v", out, notice, err)
		}
		select {
		case <-answered:
		case <-time.After(5 * time.Second):
			t.Fatal("the answer did not stop")
		}
		if f := r.final(); f.Outcome != OutcomeStopped || strings.Contains(f.Text, "four") {
			t.Fatalf("stopped answer: %+v", f)
		}
	})
}

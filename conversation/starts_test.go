package conversation

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// entered runs g.enter in a goroutine and reports its release on the channel.
func entered(ctx context.Context, g *startGate) <-chan func() {
	ch := make(chan func(), 1)
	go func() {
		if rel, err := g.enter(ctx); err == nil {
			ch <- rel
		}
	}()
	return ch
}

func TestStartGate(t *testing.T) {
	ctx := context.Background()
	g := newStartGate(2, time.Hour)
	a, err := g.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.enter(ctx); err != nil {
		t.Fatal(err)
	}
	third := entered(ctx, g)
	select {
	case <-third:
		t.Fatal("a third set-up began while two held the gate's two slots")
	case <-time.After(50 * time.Millisecond):
	}
	a()
	a() // idempotent: gives back one slot, not two
	var c func()
	select {
	case c = <-third:
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not taken by the waiting set-up")
	}
	defer c()
	select {
	case <-entered(ctx, g):
		t.Fatal("releasing one slot twice freed two")
	case <-time.After(50 * time.Millisecond):
	}

	// A waiting set-up gives up with its context, saying why.
	cause := errors.New("shutting down")
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(cause)
	if _, err := g.enter(cctx); !errors.Is(err, cause) {
		t.Errorf("enter on a cancelled context: %v, want %v", err, cause)
	}

	// No limit: no gate, every set-up at once.
	var none *startGate = newStartGate(0, time.Hour)
	for range 100 {
		if _, err := none.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A set-up that holds its slot past the hold gives it back by itself.
func TestStartGateHold(t *testing.T) {
	g := newStartGate(1, 20*time.Millisecond)
	if _, err := g.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	select {
	case rel := <-entered(context.Background(), g):
		rel()
		if d := time.Since(begun); d < 15*time.Millisecond {
			t.Errorf("the slot was free after %v, before its hold ended", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a slot never released was not given back after its hold")
	}
}

// heldReply is a Reply whose sign of life waits until the test lets it go.
type heldReply struct {
	*recorder
	entered chan struct{}
	hold    chan struct{}
}

func (r *heldReply) Begin(ctx context.Context) error {
	close(r.entered)
	<-r.hold
	return r.recorder.Begin(ctx)
}

// With one slot, a second message's set-up waits for the first's, and
// begins as soon as the first has sent its request to Ark: well before that
// answer's first token, let alone its end.
func TestEngineSetsUpAnswersThroughTheGate(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.engine.starts = newStartGate(1, time.Hour)
		const ttft = time.Second
		rg.ark.SetHandler(func(arktest.Request) arktest.Response {
			return arktest.Response{Content: []string{"an ", "answer"}, TTFT: ttft}
		})
		replies := [2]*heldReply{}
		var wg sync.WaitGroup
		begun := time.Now()
		for i := range replies {
			replies[i] = &heldReply{recorder: &recorder{t: t}, entered: make(chan struct{}), hold: make(chan struct{})}
			m := msg("hello")
			m.Thread = m.ID // a thread each
			wg.Go(func() {
				if err := rg.engine.Handle(context.Background(), m, replies[i]); err != nil {
					t.Errorf("Handle: %v", err)
				}
			})
			if i == 0 {
				<-replies[0].entered // the first holds the slot in its sign of life
			}
		}
		select {
		case <-replies[1].entered:
			t.Fatal("the second message's set-up began while the first held the only slot")
		case <-time.After(100 * time.Millisecond):
		}
		close(replies[0].hold)
		select {
		case <-replies[1].entered:
			if d := time.Since(begun); d >= ttft {
				t.Errorf("the second set-up began %v in, after the first answer's first token", d)
			}
		case <-time.After(ttft):
			t.Fatal("the second set-up did not begin once the first had sent its request to Ark")
		}
		close(replies[1].hold)
		wg.Wait()
		for i, r := range replies {
			if f := r.final(); f.Text != "an answer" || f.Outcome != OutcomeDone {
				t.Errorf("answer %d: %+v", i, f)
			}
		}
	})
}

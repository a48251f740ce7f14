package conversation

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// panicky is a recorder whose Begin, Notice or Render (the first
// intermediate frame, or the first final one) panics once.
type panicky struct {
	*recorder
	on   string // "begin", "notice", "intermediate" or "final"
	once sync.Once
}

func (p *panicky) boom(when bool) {
	if when {
		p.once.Do(func() { panic("adapter bug: " + p.on) })
	}
}

func (p *panicky) Begin(ctx context.Context) error {
	p.boom(p.on == "begin")
	return p.recorder.Begin(ctx)
}

func (p *panicky) Render(ctx context.Context, f Frame) error {
	p.boom(p.on == "intermediate" && !f.Final || p.on == "final" && f.Final)
	return p.recorder.Render(ctx, f)
}

func (p *panicky) Notice(ctx context.Context, text string) error {
	p.boom(p.on == "notice")
	return p.recorder.Notice(ctx, text)
}

// A panic in a Reply's Begin, Notice, or Render (an intermediate frame
// from the pacer's goroutine, or the final frame) ends that answer as
// failed in the chat and releases the thread: the test binary lives on,
// and the next message in the thread is answered normally.
func TestReplyPanicsEndOnlyTheirAnswer(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		for _, on := range []string{"begin", "notice", "intermediate", "final"} {
			t.Run(on, func(t *testing.T) {
				rg := newRig(t, rdb, prefix+on)
				text := "count"
				switch on {
				case "notice":
					text = "/help"
				case "intermediate", "final":
					rg.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three ", "four"}, PerChunk: 20 * time.Millisecond})
				}
				r := &panicky{recorder: &recorder{t: t}, on: on}
				m := msg(text)
				err := rg.engine.Handle(context.Background(), m, r)
				// The pacer's goroutine logs an intermediate render's panic;
				// the answer then ends as any failed one.
				if _, ok := errors.AsType[*panicError](err); !ok && on != "intermediate" {
					t.Errorf("Handle returned %v, not the panic", err)
				}
				if on == "notice" {
					if n := r.notice(); n != msgCrashed {
						t.Errorf("notice after the panic: %q", n)
					}
				} else if f := r.final(); f.Outcome != OutcomeFailed || f.Note != msgCrashed {
					t.Errorf("final frame after the panic: %+v", f)
				}
				th, err := rg.store.Lock(context.Background(), m.ThreadKey(), "test:u1")
				if err != nil {
					t.Fatalf("the thread's lock is still held: %v", err)
				}
				th.Release(context.Background())
				if _, running := rg.engine.threads.Load(m.ThreadKey()); running {
					t.Error("the answer is still registered for /stop")
				}
				next := rg.ask(t, msg("and now?"))
				if f := next.final(); f.Outcome != OutcomeDone || !strings.Contains(f.Text, "and now?") {
					t.Errorf("the next answer in the thread: %+v", f)
				}
			})
		}
	})
}

// hangingFinal is a recorder whose final render waits for its ctx to end,
// as one waiting for a spent platform budget does.
type hangingFinal struct {
	*recorder
	waiting chan struct{} // closed once the final render waits
}

func (h *hangingFinal) Render(ctx context.Context, f Frame) error {
	if !f.Final {
		return h.recorder.Render(ctx, f)
	}
	close(h.waiting)
	<-ctx.Done()
	return ctx.Err()
}

// Shutdown's deadline ends renders that hang (neither /stop nor the grace
// does), Shutdown returns by it, and the interrupted answer's turn was
// saved before its final render began.
func TestShutdownDeadlineEndsHangingRenders(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Content: []string{"slow ", "answer ", "never ", "ends"}, PerChunk: time.Second})
		r := &hangingFinal{recorder: &recorder{t: t}, waiting: make(chan struct{})}
		m := msg("long job")
		handled := make(chan error, 1)
		go func() { handled <- rg.engine.Handle(context.Background(), m, r) }()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r.mu.Lock()
			shown := len(r.frames) > 0
			r.mu.Unlock()
			if shown {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the answer never rendered")
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		shut := make(chan struct{})
		go func() { rg.engine.Shutdown(ctx, 0); close(shut) }()
		<-r.waiting
		q, ok, err := rg.store.LastQuestion(context.Background(), m.ThreadKey())
		if err != nil || !ok || q.Text != "long job" {
			t.Errorf("the question was not saved before the final render: %+v %v %v", q, ok, err)
		}
		select {
		case <-shut:
			t.Fatal("Shutdown returned before its deadline with a render running")
		case <-time.After(50 * time.Millisecond):
		}
		cancel() // the deadline
		select {
		case <-shut:
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return at its deadline")
		}
		if err := <-handled; !errors.Is(err, context.Canceled) {
			t.Errorf("the hanging final render ended with %v", err)
		}
	})
}

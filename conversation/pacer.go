package conversation

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// pacer turns a flood of frames into few renders: the first frame renders at
// once, then at most one render per interval, never two at a time; frames
// that arrive meanwhile are coalesced into the latest. The final frame is
// rendered by finish, after any render in flight, so it always lands last.
// A render that panics is logged and calls onPanic; no intermediate frame
// is rendered after it, the final one still is.
type pacer struct {
	ctx      context.Context // bounds every render
	reply    Reply
	interval time.Duration
	log      *slog.Logger
	onPanic  func()

	mu        sync.Mutex
	latest    Frame
	dirty     bool
	final     bool
	stopped   bool      // stop was called: render nothing more
	panicked  bool      // a render panicked: render only the final frame
	rendering bool      // a render is in flight
	next      time.Time // the last render's end plus the interval
	finalErr  error
	shownText string // the text of the last frame rendered without error
	wake      chan struct{}
	done      chan struct{}
}

func newPacer(ctx context.Context, r Reply, interval time.Duration, log *slog.Logger, onPanic func()) *pacer {
	p := &pacer{ctx: ctx, reply: r, interval: interval, log: log, onPanic: onPanic,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

// shown is the text of the last frame rendered without error.
func (p *pacer) shown() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shownText
}

// update offers a newer frame; it never blocks.
func (p *pacer) update(f Frame) {
	p.mu.Lock()
	p.latest, p.dirty = f, true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// finish renders the final frame, respecting the interval after the last
// render, and stops the pacer. It returns the render's error.
func (p *pacer) finish(f Frame) error {
	p.mu.Lock()
	p.latest, p.dirty, p.final = f, true, true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
	return p.finalErr
}

// stop ends the pacer without a final render (an answer that panicked
// renders its own), not waiting for a render in flight. It does nothing
// after finish.
func (p *pacer) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pacer) run() {
	defer close(p.done)
	var last time.Time
	for range p.wake {
		if wait := time.Until(last.Add(p.interval)); !last.IsZero() && wait > 0 {
			time.Sleep(wait)
		}
		p.mu.Lock()
		f, dirty, final, stopped := p.latest, p.dirty, p.final, p.stopped
		p.dirty = false
		if stopped && !final {
			p.mu.Unlock()
			return
		}
		if !dirty || p.panicked && !final {
			p.mu.Unlock()
			continue
		}
		p.rendering = true
		p.mu.Unlock()
		err := p.render(f)
		last = time.Now()
		p.mu.Lock()
		p.rendering, p.next = false, last.Add(p.interval)
		if err == nil {
			p.shownText = f.Text
		}
		p.mu.Unlock()
		if final {
			p.finalErr = err
			return
		}
		if err != nil {
			p.log.Warn("render failed", "err", err)
		}
	}
}

// render renders f, recovering a panic in it.
func (p *pacer) render(f Frame) error {
	ctx, cancel := context.WithTimeout(p.ctx, renderTimeout)
	defer cancel()
	err := protect(func() error { return p.reply.Render(ctx, f) })
	if _, ok := errors.AsType[*panicError](err); ok {
		logPanic(p.log, err)
		p.mu.Lock()
		p.panicked = true
		p.mu.Unlock()
		if !f.Final {
			p.onPanic()
		}
	}
	return err
}

// quietUntil is the earliest moment the next render could start, as far as
// the pacer knows at now: before the first render, now (a frame shows at
// once); during a render, an interval from now at least, since the next
// one waits for its end; after one, its end plus the interval.
func (p *pacer) quietUntil(now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.rendering:
		return now.Add(p.interval)
	case p.next.After(now):
		return p.next
	}
	return now
}

// renderTimeout bounds one render, including an adapter's wait for its
// platform's rate budget.
const renderTimeout = 60 * time.Second

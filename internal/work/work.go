// Package work runs an adapter's jobs on a bounded pool: at most a fixed
// number at once, a bounded queue behind them (beyond it a job is refused,
// so the caller can have the platform deliver it again), each job guarded
// against panics, and a drain for shutdown.
package work

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/arkbot/arkbot/metrics"
)

var (
	// ErrFull refuses a job when every worker is busy and the queue is full.
	ErrFull = errors.New("work: too many jobs in flight")
	// ErrClosed refuses a job once Drain has begun.
	ErrClosed = errors.New("work: shutting down")
)

// Pool runs jobs on at most its number of workers. Workers start with the
// jobs and end when the queue is empty, so an idle pool holds no goroutine.
type Pool struct {
	platform string
	log      *slog.Logger
	workers  int
	stopWait time.Duration
	ctx      context.Context
	cancel   context.CancelFunc

	mu      sync.Mutex
	closed  bool
	running int   // workers alive
	queue   []job // ring buffer of waiting jobs
	head, n int
	wg      sync.WaitGroup
}

type job struct {
	what string
	fn   func(context.Context)
}

// Option configures a Pool.
type Option func(*options)

type options struct {
	log      *slog.Logger
	queue    int
	stopWait time.Duration
}

// WithLogger sets the logger for refused and panicking jobs (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithQueue sets how many jobs may wait for a worker (default DefaultQueue
// of the worker count); 0 refuses every job that finds all workers busy.
func WithQueue(n int) Option { return func(o *options) { o.queue = max(n, 0) } }

// WithStopWait sets how long before Drain's deadline it cancels the jobs'
// context, the time they have to wind up (default 2 s).
func WithStopWait(d time.Duration) Option { return func(o *options) { o.stopWait = max(d, 0) } }

// DefaultQueue is the queue length for a number of workers when WithQueue
// is not given: eight jobs per worker and 64 more.
func DefaultQueue(workers int) int { return 8*workers + 64 }

// New returns a pool of at most workers (at least 1) running jobs at once.
// Jobs run with a context derived from ctx, cancelled by Drain. platform
// labels the overload metric (metrics.Messages "overload") and the log.
func New(ctx context.Context, platform string, workers int, opts ...Option) *Pool {
	workers = max(workers, 1)
	o := options{queue: -1, stopWait: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.queue < 0 {
		o.queue = DefaultQueue(workers)
	}
	p := &Pool{platform: platform, log: o.log, workers: workers, stopWait: o.stopWait, queue: make([]job, o.queue)}
	p.ctx, p.cancel = context.WithCancel(ctx)
	return p
}

// Submit runs fn on a worker, at once if one is free, else after the jobs
// queued before it. It never blocks: it refuses the job with ErrFull when
// the queue is full (counted as overload) and with ErrClosed once Drain has
// begun. what names the job in logs. fn gets the pool's context: it ends
// when Drain gives up waiting, and may be cancelled already for a job that
// was queued when Drain cancelled, so that the job's own clean-up runs.
func (p *Pool) Submit(what string, fn func(ctx context.Context)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrClosed
	case p.running < p.workers:
		p.running++
		p.wg.Add(1)
		go p.work(job{what, fn})
		return nil
	case p.n == len(p.queue):
		metrics.Messages.WithLabelValues(p.platform, "overload").Inc()
		p.log.Warn("too many messages in flight; refusing one", "platform", p.platform, "what", what, "workers", p.workers, "queued", p.n)
		return ErrFull
	}
	p.queue[(p.head+p.n)%len(p.queue)] = job{what, fn}
	p.n++
	return nil
}

// work runs j, then queued jobs until none is left.
func (p *Pool) work(j job) {
	defer p.wg.Done()
	for {
		p.run(j)
		p.mu.Lock()
		if p.n == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		j, p.queue[p.head] = p.queue[p.head], job{}
		p.head = (p.head + 1) % len(p.queue)
		p.n--
		p.mu.Unlock()
	}
}

// run calls the job, logging a panic instead of crashing: the job's own
// deferred clean-up runs as the panic unwinds it.
func (p *Pool) run(j job) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic in a job", "platform", p.platform, "what", j.what, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	j.fn(p.ctx)
}

// Drain stops taking jobs and waits for those accepted (queued ones run
// too). If they are not done by the stop wait (WithStopWait) before ctx's
// deadline, or when ctx ends without one, it cancels their context and
// waits up to the stop wait more, never past the deadline. Jobs that ignore
// the cancellation are left running. Call it once.
func (p *Pool) Drain(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	defer p.cancel()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()

	deadline, hasDeadline := ctx.Deadline()
	var cancelAt <-chan time.Time
	if hasDeadline {
		t := time.NewTimer(time.Until(deadline) - p.stopWait)
		defer t.Stop()
		cancelAt = t.C
	}
	select {
	case <-done:
		return
	case <-ctx.Done():
	case <-cancelAt:
	}
	p.log.Warn("jobs still running at shutdown; cancelling them", "platform", p.platform)
	p.cancel()
	wait := p.stopWait
	if hasDeadline {
		wait = min(wait, time.Until(deadline))
	}
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.log.Error("jobs did not stop after cancellation; leaving them", "platform", p.platform)
	}
}

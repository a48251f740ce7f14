package work

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/arkbot/arkbot/metrics"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// gauge tracks how many jobs run at once and the most seen.
type gauge struct{ now, peak atomic.Int64 }

func (g *gauge) enter() {
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBoundsRunningAndQueued(t *testing.T) {
	const workers, queue = 3, 5
	p := New(context.Background(), "test-bounds", workers, WithQueue(queue), WithLogger(quiet))
	overload := metrics.Messages.WithLabelValues("test-bounds", "overload")
	before := count(t, overload)

	var g gauge
	release := make(chan struct{})
	var ran atomic.Int64
	var started sync.WaitGroup
	started.Add(workers)
	for i := range workers + queue {
		err := p.Submit("job", func(context.Context) {
			g.enter()
			defer g.leave()
			if i < workers {
				started.Done()
			}
			<-release
			ran.Add(1)
		})
		if err != nil {
			t.Fatalf("job %d refused: %v", i, err)
		}
	}
	started.Wait()
	for range 3 {
		if err := p.Submit("extra", func(context.Context) { t.Error("a refused job ran") }); !errors.Is(err, ErrFull) {
			t.Fatalf("submit beyond the queue: %v, want ErrFull", err)
		}
	}
	if got := count(t, overload) - before; got != 3 {
		t.Fatalf("overload counted %v times, want 3", got)
	}
	close(release)
	waitUntil(t, "every accepted job", func() bool { return ran.Load() == workers+queue })
	if g.peak.Load() != workers {
		t.Fatalf("%d jobs ran at once, want %d", g.peak.Load(), workers)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Drain(ctx)
	if err := p.Submit("late", func(context.Context) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after Drain: %v, want ErrClosed", err)
	}
}

func TestZeroQueueRefusesWhenBusy(t *testing.T) {
	p := New(context.Background(), "test", 1, WithQueue(0), WithLogger(quiet))
	release := make(chan struct{})
	done := make(chan struct{})
	if err := p.Submit("first", func(context.Context) { <-release; close(done) }); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit("second", func(context.Context) {}); !errors.Is(err, ErrFull) {
		t.Fatalf("second job: %v, want ErrFull", err)
	}
	close(release)
	<-done
	waitUntil(t, "the worker to end", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.running == 0 })
	ok := make(chan struct{})
	if err := p.Submit("third", func(context.Context) { close(ok) }); err != nil {
		t.Fatalf("a job after the worker is free: %v", err)
	}
	<-ok
}

func TestPanicIsContainedAndCleanupRuns(t *testing.T) {
	p := New(context.Background(), "test", 1, WithLogger(quiet))
	cleaned := make(chan struct{})
	if err := p.Submit("panics", func(context.Context) {
		defer close(cleaned)
		panic("boom")
	}); err != nil {
		t.Fatal(err)
	}
	<-cleaned
	next := make(chan struct{})
	if err := p.Submit("next", func(context.Context) { close(next) }); err != nil {
		t.Fatal(err)
	}
	<-next // the pool still works after a panic
}

func TestDrainWaitsForJobsInFlight(t *testing.T) {
	p := New(context.Background(), "test", 2, WithLogger(quiet), WithStopWait(time.Second))
	release := make(chan struct{})
	var finished, cancelled atomic.Int64
	for range 4 { // two run, two wait in the queue
		if err := p.Submit("job", func(ctx context.Context) {
			<-release
			if ctx.Err() != nil {
				cancelled.Add(1)
			}
			finished.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	drained := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p.Drain(ctx)
		close(drained)
	}()
	waitUntil(t, "Drain to close the pool", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.closed })
	select {
	case <-drained:
		t.Fatal("Drain returned with jobs in flight")
	default:
	}
	close(release)
	<-drained
	if finished.Load() != 4 || cancelled.Load() != 0 {
		t.Fatalf("finished %d (want 4), %d saw a cancelled context (want 0)", finished.Load(), cancelled.Load())
	}
}

func TestDrainCancelsAndReturnsByTheDeadline(t *testing.T) {
	p := New(context.Background(), "test", 1, WithLogger(quiet), WithStopWait(200*time.Millisecond))
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	running := make(chan struct{})
	var sawCancel atomic.Bool
	if err := p.Submit("slow", func(ctx context.Context) {
		close(running)
		<-ctx.Done()
		sawCancel.Store(true)
		<-stuck // ignores the cancellation past it
	}); err != nil {
		t.Fatal(err)
	}
	queuedCtx := make(chan error, 1)
	if err := p.Submit("queued", func(ctx context.Context) { queuedCtx <- ctx.Err() }); err != nil {
		t.Fatal(err)
	}
	<-running
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	p.Drain(ctx)
	if !sawCancel.Load() {
		t.Fatal("the job's context was not cancelled")
	}
	// Drain returns at the deadline; allow for a slow scheduler.
	if late := time.Since(deadline); late > time.Second {
		t.Fatalf("Drain returned %v after its deadline", late)
	}
	select {
	case err := <-queuedCtx:
		t.Fatalf("the queued job ran (ctx %v) while the stuck one held the only worker", err)
	default:
	}
}

func TestQueuedJobRunsWithCancelledContextAfterDrain(t *testing.T) {
	p := New(context.Background(), "test", 1, WithLogger(quiet), WithStopWait(time.Second))
	release := make(chan struct{})
	if err := p.Submit("first", func(ctx context.Context) { <-ctx.Done(); <-release }); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	if err := p.Submit("queued", func(ctx context.Context) { got <- ctx.Err() }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no deadline, already over: cancel at once, then wait the stop wait
	go func() { time.Sleep(10 * time.Millisecond); close(release) }()
	p.Drain(ctx)
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued job's context: %v, want cancelled", err)
		}
	default:
		t.Fatal("the queued job did not run within the stop wait")
	}
}

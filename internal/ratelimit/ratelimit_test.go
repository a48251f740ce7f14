package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakeClock's Sleep returns at once, moving the time on by what it slept.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	c.advance(d)
	c.mu.Lock()
	c.slept += d
	c.mu.Unlock()
	return nil
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// takeSlept returns the time slept since the last call.
func (c *fakeClock) takeSlept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.slept
	c.slept = 0
	return d
}

// errLimited and errBlip are a fake SDK's 429 and network failure.
type errLimited struct{ after time.Duration }

func (e errLimited) Error() string { return fmt.Sprintf("429, retry after %v", e.after) }

var errBlip = errors.New("connection reset")

func classify(err error) (Kind, time.Duration) {
	var l errLimited
	switch {
	case errors.As(err, &l):
		return RateLimited, l.after
	case errors.Is(err, errBlip):
		return Transient, 0
	}
	return Failed, 0
}

var testLimits = Limits{
	"chat.update":      {PerSecond: 10, Burst: 2, Scope: PerWorkspace},
	"chat.postMessage": {PerSecond: 1, Burst: 1, Scope: PerWorkspace | PerChannel},
}

func newTest(limits Limits, opts ...Option) (*Budget, *fakeClock) {
	clk := newFakeClock()
	return New("test", limits, append([]Option{WithClock(clk), WithClassifier(classify), WithLogger(slog.New(slog.DiscardHandler))}, opts...)...), clk
}

func call(method, team, channel string, p Priority) Call {
	return Call{Method: method, Workspace: team, Channel: channel, Priority: p}
}

func TestTokenAccounting(t *testing.T) {
	b, clk := newTest(testLimits)
	ctx := t.Context()
	allow := func(c Call) bool {
		err := b.acquire(ctx, c)
		if err != nil && !errors.Is(err, ErrSkipped) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !allow(call("chat.update", "T1", "C1", BestEffort)) || !allow(call("chat.update", "T1", "C2", BestEffort)) {
		t.Fatal("burst refused")
	}
	if allow(call("chat.update", "T1", "C1", BestEffort)) || b.Available(call("chat.update", "T1", "C3", BestEffort)) {
		t.Fatal("over the burst allowed")
	}
	if !allow(call("chat.update", "T2", "C1", BestEffort)) {
		t.Fatal("another workspace shares the budget")
	}
	if !allow(call("chat.postMessage", "T1", "C1", BestEffort)) || allow(call("chat.postMessage", "T1", "C1", BestEffort)) ||
		!allow(call("chat.postMessage", "T1", "C2", BestEffort)) {
		t.Fatal("postMessage budget is not per channel")
	}
	for range 5 {
		if !allow(call("users.list", "T1", "C1", BestEffort)) {
			t.Fatal("an unlisted method was limited")
		}
	}
	if clk.takeSlept() != 0 {
		t.Fatal("a best-effort call waited")
	}
	if err := b.acquire(ctx, call("chat.update", "T1", "C1", MustDeliver)); err != nil {
		t.Fatal(err)
	}
	if d := clk.takeSlept(); d != 100*time.Millisecond {
		t.Fatalf("waited %v for a token at 10/s, want 100ms", d)
	}
	clk.advance(200 * time.Millisecond)
	if !b.Available(call("chat.update", "T1", "", BestEffort)) || !allow(call("chat.update", "T1", "", BestEffort)) ||
		!allow(call("chat.update", "T1", "", BestEffort)) || allow(call("chat.update", "T1", "", BestEffort)) {
		t.Fatal("the bucket did not refill to its burst in 200ms at 10/s")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cctx, call("chat.update", "T1", "", MustDeliver)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a wait on a cancelled context: %v", err)
	}
	clk.advance(100 * time.Millisecond)
	if !allow(call("chat.update", "T1", "", BestEffort)) {
		t.Fatal("a cancelled wait kept its token")
	}
}

// TestRetryAfterBlocksEveryCaller: a 429 on one call blocks its key for
// every other call charged to it until Retry-After, and no other key.
func TestRetryAfterBlocksEveryCaller(t *testing.T) {
	b, clk := newTest(testLimits)
	ctx := t.Context()
	err := b.Do(ctx, call("chat.update", "T1", "C1", BestEffort), func(context.Context) error { return errLimited{2 * time.Second} })
	var l errLimited
	if !errors.Is(err, ErrSkipped) || !errors.As(err, &l) {
		t.Fatalf("a best-effort call answered 429: %v, want skipped and the 429", err)
	}
	other := call("chat.update", "T1", "C2", BestEffort)
	if b.Available(other) {
		t.Fatal("available during the Retry-After")
	}
	ran := false
	if err := b.Do(ctx, other, func(context.Context) error { ran = true; return nil }); !errors.Is(err, ErrSkipped) || ran {
		t.Fatalf("another best-effort caller ran during the Retry-After: %v", err)
	}
	if !b.Available(call("chat.update", "T2", "C1", BestEffort)) || !b.Available(call("chat.postMessage", "T1", "C1", BestEffort)) {
		t.Fatal("a 429 blocked another workspace or method")
	}
	other.Priority = MustDeliver
	if err := b.Do(ctx, other, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("a must-deliver call after the Retry-After: %v", err)
	}
	if d := clk.takeSlept(); d < 2*time.Second {
		t.Fatalf("a must-deliver caller waited %v through a 2s Retry-After", d)
	}
}

func TestMustDeliverRetries429sBounded(t *testing.T) {
	b, clk := newTest(testLimits, WithRetries(3, 0, 0))
	ctx := t.Context()
	n := 0
	err := b.Do(ctx, call("chat.update", "T1", "C1", MustDeliver), func(context.Context) error {
		if n++; n <= 2 {
			return errLimited{time.Second}
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("after two 429s: %v, %d attempts", err, n)
	}
	if d := clk.takeSlept(); d < 2*time.Second {
		t.Fatalf("slept %v for two 1s Retry-Afters", d)
	}
	n = 0
	err = b.Do(ctx, call("chat.update", "T1", "C1", MustDeliver), func(context.Context) error { n++; return errLimited{0} })
	var l errLimited
	if !errors.As(err, &l) || n != 4 {
		t.Fatalf("always 429: %v after %d attempts, want the 429 after 1+3", err, n)
	}
	if d := clk.takeSlept(); d < 3*defaultRetryAfter {
		t.Fatalf("a 429 without Retry-After waited %v", d)
	}
}

func TestTransientRetriesOnlyIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          Priority
		idempotent bool
		err        error
		attempts   int
		slept      time.Duration
	}{
		{"idempotent", MustDeliver, true, errBlip, 3, 250*time.Millisecond + 500*time.Millisecond},
		{"not idempotent", MustDeliver, false, errBlip, 1, 0},
		{"best effort", BestEffort, true, errBlip, 1, 0},
		{"not transient", MustDeliver, true, errors.New("channel_not_found"), 1, 0},
	} {
		b, clk := newTest(testLimits)
		c := call("chat.update", "T1", "C1", tc.p)
		c.Idempotent = tc.idempotent
		n := 0
		err := b.Do(t.Context(), c, func(context.Context) error { n++; return tc.err })
		if !errors.Is(err, tc.err) || n != tc.attempts {
			t.Errorf("%s: %v after %d attempts, want %d", tc.name, err, n, tc.attempts)
		}
		if d := clk.takeSlept(); d != tc.slept {
			t.Errorf("%s: slept %v, want %v", tc.name, d, tc.slept)
		}
	}
	b, _ := newTest(testLimits)
	c := call("chat.update", "T1", "C1", MustDeliver)
	c.Idempotent = true
	n := 0
	if err := b.Do(t.Context(), c, func(context.Context) error {
		if n++; n == 1 {
			return errBlip
		}
		return nil
	}); err != nil || n != 2 {
		t.Fatalf("a blip then success: %v after %d attempts", err, n)
	}
}

// TestChargedToSeveralLimits: a call charged to a channel limit and a
// global one takes both tokens or neither, and a best-effort call waits
// for the global one no longer than its Patience.
func TestChargedToSeveralLimits(t *testing.T) {
	b, clk := newTest(Limits{
		"channel": {PerSecond: 1, Burst: 1, Scope: PerChannel},
		"global":  {PerSecond: 10, Burst: 1, Patience: 100 * time.Millisecond},
	})
	ctx := t.Context()
	c := func(ch string, limits ...string) Call {
		if len(limits) == 0 {
			limits = []string{"channel", "global"}
		}
		return Call{Method: "messages.edit", Limits: limits, Channel: ch, Priority: BestEffort}
	}
	if err := b.acquire(ctx, c("a")); err != nil || clk.takeSlept() != 0 {
		t.Fatal("the first call waited or failed", err)
	}
	if err := b.acquire(ctx, c("b")); err != nil {
		t.Fatalf("the global token was not waited for within its patience: %v", err)
	}
	if d := clk.takeSlept(); d != 100*time.Millisecond {
		t.Fatalf("waited %v for the global token, want 100ms", d)
	}
	if err := b.acquire(ctx, c("a")); !errors.Is(err, ErrSkipped) {
		t.Fatalf("channel a's budget spent: %v", err)
	}
	if err := b.acquire(ctx, c("c")); err != nil || clk.takeSlept() != 100*time.Millisecond {
		t.Fatal("a skipped call took the global token", err)
	}
	// The global bucket two calls behind: more than its patience.
	b.mu.Lock()
	g := b.get(c("", "global"), clk.Now())[0]
	g.lim.ReserveN(clk.Now(), 1)
	g.lim.ReserveN(clk.Now(), 1)
	b.mu.Unlock()
	if err := b.acquire(ctx, c("d")); !errors.Is(err, ErrSkipped) || clk.takeSlept() != 0 {
		t.Fatalf("the global budget spent beyond patience, a best-effort call: %v", err)
	}
	clk.advance(300 * time.Millisecond)
	if err := b.acquire(ctx, c("d", "channel")); err != nil {
		t.Fatalf("a skipped call took channel d's token: %v", err)
	}
}

// TestShare: a replica's share divides rates and bursts, for buckets made
// before the share changed and after, and never leaves less than one call
// of burst.
func TestShare(t *testing.T) {
	b, clk := newTest(Limits{"chat.update": {PerSecond: 10, Burst: 5, Scope: PerWorkspace}, "chat.delete": {PerSecond: 10, Burst: 1, Scope: PerWorkspace}})
	b.Available(call("chat.update", "T1", "", BestEffort)) // made at share 1
	b.SetShare(0.5)
	if b.Share() != 0.5 {
		t.Fatalf("Share = %v", b.Share())
	}
	get := func(method, team string) *bucket {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.get(call(method, team, "", BestEffort), clk.Now())[0]
	}
	before, after, one := get("chat.update", "T1"), get("chat.update", "T2"), get("chat.delete", "T1")
	for name, k := range map[string]*bucket{"bucket made before": before, "bucket made after": after} {
		if k.lim.Limit() != 5 || k.lim.Burst() != 2 {
			t.Errorf("%s the share of 1/2: %v/s, burst %d; want 5/s, burst 2", name, k.lim.Limit(), k.lim.Burst())
		}
	}
	if one.lim.Burst() != 1 {
		t.Errorf("a burst of 1 split in two: %d, want 1", one.lim.Burst())
	}
	b.SetShare(1)
	if before.lim.Limit() != 10 || before.lim.Burst() != 5 {
		t.Errorf("back to the whole budget: %v/s, burst %d", before.lim.Limit(), before.lim.Burst())
	}
	if got := burstShare(10, 1.0/3); got != 3 {
		t.Errorf("burstShare(10, 1/3) = %d, want 3", got)
	}
}

// TestPruning: buckets full again and not blocked are forgotten, so a
// bot touching ever new channels keeps a bounded number.
func TestPruning(t *testing.T) {
	b, clk := newTest(testLimits)
	ctx := t.Context()
	if err := b.acquire(ctx, call("chat.postMessage", "T1", "busy", BestEffort)); err != nil {
		t.Fatal(err)
	}
	b.penalize(call("chat.postMessage", "T1", "blocked", BestEffort), time.Hour)
	for i := range 10 * pruneEvery {
		clk.advance(time.Millisecond) // a bucket is full again 1000 channels later
		if err := b.acquire(ctx, call("chat.postMessage", "T1", fmt.Sprint("c", i), BestEffort)); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		n := len(b.buckets)
		b.mu.Unlock()
		if n > 2*pruneEvery+2 {
			t.Fatalf("%d buckets after %d channels", n, i+1)
		}
	}
	b.mu.Lock()
	_, blocked := b.buckets[key("chat.postMessage", testLimits["chat.postMessage"], call("", "T1", "blocked", BestEffort))]
	b.mu.Unlock()
	if !blocked {
		t.Fatal("a blocked bucket was pruned")
	}
	if b.Available(call("chat.postMessage", "T1", "blocked", BestEffort)) {
		t.Fatal("the block was lost")
	}
}

func TestCountsEachAttempt(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	b, _ := newTest(testLimits, WithObserver(func(method, result string) {
		mu.Lock()
		got[method+" "+result]++
		mu.Unlock()
	}))
	n := 0
	_ = b.Do(t.Context(), call("chat.update", "T1", "", MustDeliver), func(context.Context) error {
		if n++; n == 1 {
			return errLimited{time.Second}
		}
		return nil
	})
	_ = b.Do(t.Context(), call("chat.delete", "T1", "", MustDeliver), func(context.Context) error { return errors.New("no") })
	want := map[string]int{"chat.update ratelimited": 1, "chat.update ok": 1, "chat.delete error": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}

// BenchmarkDo is the budget's cost per call: a best-effort call charged to
// a channel limit and a global one, over 10,000 channels.
func BenchmarkDo(b *testing.B) {
	bud := New("bench", Limits{
		"channel": {PerSecond: 1e9, Burst: 1 << 20, Scope: PerChannel},
		"global":  {PerSecond: 1e9, Burst: 1 << 20},
	})
	calls := make([]Call, 10000)
	for i := range calls {
		calls[i] = Call{Method: "messages.edit", Limits: []string{"channel", "global"}, Channel: fmt.Sprint("c", i)}
	}
	ok := func(context.Context) error { return nil }
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := bud.Do(ctx, calls[i%len(calls)], ok); err != nil {
			b.Fatal(err)
		}
	}
}

// waitClock's Sleep reports each wait on slept and blocks until its context
// ends; the time stands still.
type waitClock struct {
	now   time.Time
	slept chan time.Duration
}

func (c *waitClock) Now() time.Time { return c.now }

func (c *waitClock) Sleep(ctx context.Context, d time.Duration) error {
	c.slept <- d
	<-ctx.Done()
	return context.Cause(ctx)
}

// TestShareReachesWaitingCalls: a call already waiting for tokens at half
// the budget waits again at the whole budget when the share grows, as when
// another replica leaves.
func TestShareReachesWaitingCalls(t *testing.T) {
	clk := &waitClock{now: time.Unix(1_800_000_000, 0), slept: make(chan time.Duration, 1)}
	b := New("test", Limits{"chat.update": {PerSecond: 1, Burst: 2, Scope: PerWorkspace}},
		WithClock(clk), WithClassifier(classify), WithLogger(slog.New(slog.DiscardHandler)))
	b.SetShare(0.5) // 0.5 calls a second, burst 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := call("chat.update", "T1", "", MustDeliver)
	if err := b.acquire(ctx, c); err != nil { // the burst: no wait
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, c) }()
	if d := <-clk.slept; d != 2*time.Second {
		t.Fatalf("waits %v at half the budget, want 2s", d)
	}
	b.SetShare(1)
	select {
	case d := <-clk.slept:
		if d != time.Second {
			t.Fatalf("waits %v once the whole budget is this replica's, want 1s", d)
		}
	case err := <-done:
		t.Fatalf("the waiting call kept its old wait until its context ended (%v)", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire: %v, want context.Canceled", err)
	}
	// The cancelled wait gave its token back: after 1 s at 1/s there is one.
	clk.now = clk.now.Add(time.Second)
	if !b.Available(c) {
		t.Fatal("a cancelled wait kept its token")
	}
}

// TestClaims: a claimed token is kept from best-effort calls and from
// further claims until released; a call with a patience may spend it; a
// bucket with claims outstanding is not pruned.
func TestClaims(t *testing.T) {
	b, clk := newTest(Limits{"chat.stopStream": {PerSecond: 1, Burst: 2, Scope: PerWorkspace}})
	ctx := t.Context()
	stop := call("chat.stopStream", "T1", "", BestEffort)
	r1, ok1 := b.Claim(call("chat.stopStream", "T1", "", MustDeliver))
	r2, ok2 := b.Claim(call("chat.stopStream", "T1", "", MustDeliver))
	if !ok1 || !ok2 {
		t.Fatal("two claims on a bucket of two refused")
	}
	if _, ok := b.Claim(call("chat.stopStream", "T1", "", MustDeliver)); ok {
		t.Fatal("a third claim on a bucket of two granted")
	}
	if b.Available(stop) || !errors.Is(b.acquire(ctx, stop), ErrSkipped) {
		t.Fatal("a best-effort call took a claimed token")
	}
	if _, ok := b.Claim(call("chat.stopStream", "T2", "", MustDeliver)); !ok {
		t.Fatal("another workspace's claim refused")
	}
	// The claimant releases and spends its token with a patience.
	r1()
	r1() // twice is harmless
	patient := stop
	patient.Patience = time.Second
	if err := b.acquire(ctx, patient); err != nil {
		t.Fatalf("patient call after its release: %v", err)
	}
	// One token is left, and it is still claimed.
	if b.Available(stop) {
		t.Fatal("a best-effort call may take the token still claimed")
	}
	// A patient call may take a claimed token, and waits for one.
	if err := b.acquire(ctx, patient); err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(ctx, patient); err != nil {
		t.Fatal(err)
	}
	if d := clk.takeSlept(); d != time.Second {
		t.Fatalf("the patient call waited %v for a token at 1/s, want 1s", d)
	}
	// Pruning keeps a full bucket with a claim outstanding.
	clk.advance(time.Minute)
	b.mu.Lock()
	b.prune(clk.Now())
	_, kept := b.buckets[key("chat.stopStream", b.limits["chat.stopStream"], stop)]
	b.mu.Unlock()
	if !kept {
		t.Fatal("a bucket with a claim outstanding was pruned")
	}
	r2()
	if !b.Available(stop) {
		t.Fatal("released claims still hold the bucket")
	}
	b.mu.Lock()
	b.prune(clk.Now())
	_, kept = b.buckets[key("chat.stopStream", b.limits["chat.stopStream"], stop)]
	b.mu.Unlock()
	if kept {
		t.Fatal("a full bucket with no claims was not pruned")
	}
}

// TestPatientRetriesTransient: a best-effort call with a patience (a final
// render) is repeated after a transient failure, like a must-deliver one.
func TestPatientRetriesTransient(t *testing.T) {
	b, _ := newTest(testLimits)
	c := call("chat.update", "T1", "", BestEffort)
	c.Patience, c.Idempotent = time.Second, true
	n := 0
	err := b.Do(t.Context(), c, func(context.Context) error {
		if n++; n == 1 {
			return errBlip
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("Do = %v after %d attempts, want success on the second", err, n)
	}
}

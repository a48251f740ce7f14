package gcheadroom

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// The tests share the process's tuner and GC setting, so they run in order
// and leave both as they found them.

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return max(s[0].Value.Uint64(), 4<<20)
}

// tunable skips a test when GOGC=off, which turns the tuner off.
func tunable(t *testing.T) {
	if gcPercent() < 0 {
		t.Skip("GOGC=off: the tuner leaves the GC alone")
	}
}

func TestHeadroomFollowsWorkInFlight(t *testing.T) {
	tunable(t)
	base := gcPercent()
	tu := Process(1 << 20) // 1 MiB per unit
	t.Cleanup(func() { Process(0) })
	if got := gcPercent(); got != base {
		t.Fatalf("idle: GC percent %d, want the process's %d", got, base)
	}

	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() { defer wg.Done(); tu.Add(1) }()
	}
	wg.Wait()
	// 500 MiB of headroom over a live heap of a few MiB: a goal in the
	// thousands of percent, set by Add itself (an eighth's change at most
	// behind the count).
	want := float64(500<<20) / float64(liveHeap()) * 100 * 7 / 8
	if got := gcPercent(); float64(got) < want || got != tu.Percent() {
		t.Fatalf("500 units: GC percent %d (tuner says %d), want at least %.0f", got, tu.Percent(), want)
	}

	for range 500 {
		wg.Add(1)
		go func() { defer wg.Done(); tu.Add(-1) }()
	}
	wg.Wait()
	// The percent falls at the next collection, not before: lowering it now
	// could start one at once with the heap over its new goal.
	if got := gcPercent(); float64(got) < want {
		t.Fatalf("all done, before a collection: GC percent %d, want it kept at %.0f+", got, want)
	}
	collect(t, tu)
	if got := gcPercent(); got != base {
		t.Fatalf("all done and collected: GC percent %d, want the process's %d again", got, base)
	}
}

// collect runs collections until the tuner has seen two (the first may
// have begun before the call).
func collect(t *testing.T, tu *Tuner) {
	t.Helper()
	before := tu.cycles.Load()
	deadline := time.Now().Add(10 * time.Second)
	for tu.cycles.Load() < before+2 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if tu.cycles.Load() < before+2 {
		t.Fatalf("the tuner saw %d collections after 2+ runtime.GC calls", tu.cycles.Load()-before)
	}
}

func TestRetunesAfterEachCollection(t *testing.T) {
	tunable(t)
	runtime.GC() // what earlier tests left live is gone
	tu := Process(1 << 20)
	t.Cleanup(func() { Process(0) })
	tu.Add(100)
	defer tu.Add(-100)
	set := tu.Percent()
	// A heap ten times bigger after the next collection: the tuner must see
	// it and lower the percent to keep the same headroom in bytes.
	keep := make([][]byte, 0, 64)
	for range 64 {
		keep = append(keep, make([]byte, 1<<20))
	}
	collect(t, tu)
	if got := tu.Percent(); got >= set || got != gcPercent() {
		t.Fatalf("after the heap grew: percent %d (runtime %d), want below %d", got, gcPercent(), set)
	}
	runtime.KeepAlive(keep)
}

func TestZeroHeadroomKeepsGoPacing(t *testing.T) {
	base := gcPercent()
	tu := Process(0)
	tu.Add(1000)
	defer tu.Add(-1000)
	if got := gcPercent(); got != base {
		t.Fatalf("no headroom per unit, 1000 units: GC percent %d, want %d", got, base)
	}
}

// grow allocates 1 MiB of garbage every 10 ms, calling each first (when
// set), until done says stop (given the collections the runtime started on
// its own meanwhile) or 5 s pass. It returns that count and the MiB it
// allocated.
func grow(each func(), done func(automatic uint64) bool) (automatic uint64, mib int) {
	s := []metrics.Sample{{Name: "/gc/cycles/automatic:gc-cycles"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	var sink []byte
	for deadline := time.Now().Add(5 * time.Second); !done(automatic) && time.Now().Before(deadline); mib++ {
		if each != nil {
			each()
		}
		sink = make([]byte, 1<<20)
		time.Sleep(10 * time.Millisecond)
		metrics.Read(s)
		automatic = s[0].Value.Uint64() - before
	}
	runtime.KeepAlive(sink)
	return automatic, mib
}

func TestStartsCollectionsEarly(t *testing.T) {
	tunable(t)
	runtime.GC()
	tu := Process(1 << 20)
	t.Cleanup(func() { Process(0) })
	tu.Add(100) // 100 MiB of headroom
	before := tu.started.Load()
	// Work keeps starting: no lull. The runtime would start the collection
	// 4 MiB before the goal; the tuner must start it with 20 MiB left, and
	// not before (that is the lull's rule).
	busy := func() { tu.Add(1); tu.Add(-1) }
	auto, mib := grow(busy, func(uint64) bool { return tu.started.Load() > before })
	if tu.started.Load() == before || auto != 0 || mib < 70 {
		t.Fatalf("after %d MiB: the tuner started %d collections, the runtime %d; want the tuner first, after 70+ MiB",
			mib, tu.started.Load()-before, auto)
	}
	tu.Add(-100)
	pollStops(t, tu)
}

// pollStops waits for the tuner's poll to stop, as it must within a tick or
// two once no work is in flight.
func pollStops(t *testing.T, tu *Tuner) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for tu.polling.Load() && time.Now().Before(deadline) {
		time.Sleep(minPoll)
	}
	if tu.polling.Load() {
		t.Fatal("no work in flight: the tuner still polls the heap")
	}
}

func TestCollectsInLulls(t *testing.T) {
	tunable(t)
	runtime.GC()
	tu := Process(1 << 20)
	t.Cleanup(func() { Process(0) })
	tu.Add(100)
	defer tu.Add(-100)
	before := tu.started.Load()
	time.Sleep(lull + 100*time.Millisecond) // nothing starts: a lull
	auto, mib := grow(nil, func(uint64) bool { return tu.started.Load() > before })
	if tu.started.Load() == before || auto != 0 || mib > 60 {
		t.Fatalf("in a lull, after %d MiB: the tuner started %d collections, the runtime %d; want the tuner first, by ~40 MiB",
			mib, tu.started.Load()-before, auto)
	}
}

func TestNoEarlyCollectionAtGoPacing(t *testing.T) {
	tunable(t) // GOGC=off: the runtime collects nothing by itself either
	tu := Process(0)
	pollStops(t, tu) // an earlier test's
	tu.Add(100)
	defer tu.Add(-100)
	before := tu.started.Load()
	auto, _ := grow(nil, func(auto uint64) bool { return auto >= 2 })
	if n := tu.started.Load() - before; n != 0 || auto == 0 || tu.polling.Load() {
		t.Fatalf("no headroom per unit: the tuner started %d collections (want 0), the runtime %d (want some); polling %v (want not)",
			n, auto, tu.polling.Load())
	}
}

func TestNextLook(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		left, rate float64
		want       time.Duration
	}{
		{100 * mb, 1 * mb, maxPoll},                // far, and slow: the longest wait
		{13 * mb, 130 * mb, 50 * time.Millisecond}, // half the time to the mark
		{1 * mb, 130 * mb, minPoll},                // near: the shortest
		{-1 * mb, 130 * mb, minPoll},               // past it
		{10 * mb, 0, maxPoll},                      // nothing allocated
		{10 * mb, math.Inf(1), minPoll},            // the first look: rate unknown
		{0, 0, maxPoll},                            // NaN
	} {
		if got := nextLook(c.left, c.rate); got != c.want {
			t.Errorf("nextLook(%.0f MiB, %.0f MiB/s) = %v, want %v", c.left/mb, c.rate/mb, got, c.want)
		}
	}
}

// Package gcheadroom sizes the Go garbage collector's heap goal to the work
// in flight: every active unit of work (for the bot, an answer streaming)
// buys a fixed amount of garbage the heap may gather before the next
// collection. A busy process collects rarely, and a collection (its mark
// phase takes tens of milliseconds of two cores' time at a thousand
// answers) seldom lands on an answer's first token; an idle one keeps Go's
// default pacing and stays small.
//
// It adjusts GOGC (debug.SetGCPercent) as work starts and ends and after
// each collection, never below the process's own setting ($GOGC, default
// 100). GOGC=off disables it; GOMEMLIMIT keeps bounding the heap as usual.
//
// While it holds the percent raised, it also starts each collection itself:
// when a fifth of the headroom is left, or, in a lull (no work started for
// half a second), once 40% of it is used, so that the mark's CPU lands
// between bursts of new work rather than in one. Left to itself, the
// runtime would start it only 4 MiB before the goal when its last
// collection was small (it sizes that runway from the last collection's
// work, and a process that was idle until a burst had only small ones),
// and every allocating goroutine would then assist the marking, for tens
// of milliseconds at a thousand answers.
package gcheadroom

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// early is the share of the headroom left when the tuner starts a
	// collection: time for the mark to run in the background while the
	// heap keeps growing (a thousand answers allocate ~130 MB/s, a mark
	// takes ~100 ms of two cores' time).
	early = 0.2
	// In a lull, when no work has started for lull, the tuner starts the
	// collection once lullShare of the headroom is used.
	lull      = 500 * time.Millisecond
	lullShare = 0.4
	// While work is in flight the tuner looks at the heap every minPoll to
	// maxPoll: sooner the nearer the heap is to where it would start a
	// collection at the rate it grows. (A wake-up costs an otherwise idle
	// process ~0.1 ms of CPU.)
	minPoll = 10 * time.Millisecond
	maxPoll = 100 * time.Millisecond
)

// Tuner sets the process's GC percent from the units of work in flight.
// There is one per process: see Process.
type Tuner struct {
	perUnit atomic.Uint64 // bytes of headroom per unit; 0: none
	active  atomic.Int64
	tunedAt atomic.Int64 // the active count the percent was last set for
	startAt atomic.Int64 // when work last started, in ns since epoch

	mu      sync.Mutex
	base    int // the percent at rest; < 0 (GOGC=off): never tune
	percent int // the percent set last
	armed   bool
	sample  []metrics.Sample
	polling atomic.Bool   // a poll goroutine runs
	cycles  atomic.Uint64 // collections seen, for tests
	started atomic.Uint64 // collections the tuner started, for tests
}

var process = &Tuner{}

// epoch makes startAt monotonic.
var epoch = time.Now()

// Process returns the process's tuner, set to perUnit bytes of headroom per
// unit of work (0: none, Go's pacing alone). It starts following
// collections on first use.
func Process(perUnit uint64) *Tuner {
	t := process
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.armed {
		t.armed = true
		t.base = debug.SetGCPercent(100)
		debug.SetGCPercent(t.base)
		t.percent = t.base
		t.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		if t.base >= 0 {
			t.arm()
		}
	}
	if t.base < 0 {
		perUnit = 0 // GOGC=off: nothing to tune
	}
	t.perUnit.Store(perUnit)
	t.tuneLocked(true)
	return t
}

// Add records units of work starting (delta > 0) or ending (< 0). It is
// cheap: the GC percent rises at once when the count has grown by an eighth
// since it was last set, and falls only after the next collection: lowering
// it now could put the goal below the heap already gathered and make the
// collection start at once, with every allocating goroutine assisting it.
func (t *Tuner) Add(delta int) {
	n := t.active.Add(int64(delta))
	if delta > 0 {
		t.startAt.Store(time.Since(epoch).Nanoseconds())
	}
	if n > 0 && t.perUnit.Load() > 0 && !t.polling.Load() && t.polling.CompareAndSwap(false, true) {
		go t.poll()
	}
	if at := t.tunedAt.Load(); n-at > max(at/8, 8) {
		t.mu.Lock()
		t.tuneLocked(false)
		t.mu.Unlock()
	}
}

// Percent returns the GC percent the tuner set last (the base when it has
// set none).
func (t *Tuner) Percent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.percent
}

// tuneLocked sets the percent for the units active now and the heap live
// after the last collection: goal = live + max(live*base/100, units*perUnit).
// Unless lower is set, it only raises the percent.
func (t *Tuner) tuneLocked(lower bool) {
	n := t.active.Load()
	t.tunedAt.Store(n)
	if t.base < 0 {
		return
	}
	want := t.base
	if head := float64(max(n, 0)) * float64(t.perUnit.Load()); head > 0 {
		metrics.Read(t.sample)
		live := float64(max(t.sample[0].Value.Uint64(), 4<<20)) // a fresh process reports ~0
		want = max(t.base, int(min(math.Ceil(head/live*100), math.MaxInt32)))
	}
	if want > t.percent || (lower && want != t.percent) {
		debug.SetGCPercent(want)
		t.percent = want
	}
}

// sentinel is an object only a collection can free; its cleanup reports
// the collection and arms the next one. Its size keeps it out of the tiny
// allocator, whose blocks are freed together.
type sentinel struct{ _ [16]byte }

func (t *Tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *Tuner) {
		t.cycles.Add(1)
		t.mu.Lock()
		t.tuneLocked(true)
		t.arm()
		t.mu.Unlock()
	}, t)
}

// poll runs while work is in flight: when the percent is raised and the
// heap has used all but the early share of its headroom since the last
// collection, or lullShare of it in a lull, it starts the next collection.
// (runtime.GC returns once that collection and its sweep are done, so the
// next look sees the new live heap and cannot start a second one for the
// same growth.)
func (t *Tuner) poll() {
	timer := time.NewTimer(minPoll)
	defer timer.Stop()
	w := &heapWatch{s: []metrics.Sample{
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, // live, and garbage not yet swept
		{Name: "/gc/heap/live:bytes"},                // after the last collection
		{Name: "/gc/heap/allocs:bytes"},              // ever allocated: the growth rate
	}}
	for range timer.C {
		if t.active.Load() <= 0 {
			t.polling.Store(false)
			// Work that started meanwhile saw polling still set: carry on.
			if t.active.Load() <= 0 || !t.polling.CompareAndSwap(false, true) {
				return
			}
		}
		timer.Reset(t.check(w))
	}
}

// heapWatch is what poll keeps between looks at the heap.
type heapWatch struct {
	s      []metrics.Sample
	allocs uint64    // bytes ever allocated, at the last look
	at     time.Time // when that was; zero before the first
}

// check is one look at the heap (see poll); it returns when to look next.
func (t *Tuner) check(w *heapWatch) time.Duration {
	t.mu.Lock()
	raised := t.percent > t.base
	t.mu.Unlock()
	if !raised {
		return maxPoll
	}
	metrics.Read(w.s)
	now := time.Now()
	goal, heap, live, allocs := w.s[0].Value.Uint64(), w.s[1].Value.Uint64(), w.s[2].Value.Uint64(), w.s[3].Value.Uint64()
	rate := math.Inf(1) // bytes/s; unknown the first time: look again soon
	if !w.at.IsZero() {
		rate = float64(allocs-w.allocs) / now.Sub(w.at).Seconds()
	}
	w.allocs, w.at = allocs, now
	if goal <= live {
		return maxPoll
	}
	head := float64(goal - live)
	used := max(float64(heap)-float64(live), 0) / head
	quiet := time.Since(epoch)-time.Duration(t.startAt.Load()) >= lull
	if used >= 1-early || (quiet && used >= lullShare) {
		t.started.Add(1)
		runtime.GC() // concurrent: only this goroutine waits for it
		return minPoll
	}
	mark := 1 - early
	if used < lullShare {
		mark = lullShare
	}
	return nextLook((mark-used)*head, rate)
}

// nextLook is when to look at the heap again: in half the time it needs to
// grow by left bytes at rate bytes/s, within minPoll and maxPoll.
func nextLook(left, rate float64) time.Duration {
	switch secs := left / rate / 2; {
	case secs < minPoll.Seconds():
		return minPoll
	case secs < maxPoll.Seconds():
		return time.Duration(secs * float64(time.Second))
	default: // also NaN, and +Inf when nothing was allocated
		return maxPoll
	}
}

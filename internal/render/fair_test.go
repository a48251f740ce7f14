package render

import (
	"context"
	"errors"
	"testing"
)

func TestFairRoundRobin(t *testing.T) {
	var f Fair
	a, b, c := f.Join("T1"), f.Join("T1"), f.Join("T2")
	// a renders twice while nobody else waits.
	for range 2 {
		if !a.Turn() {
			t.Fatal("a alone was refused a render")
		}
		a.Rendered()
	}
	// b waits for its first text (its turn, but no budget): a may not take
	// a third render...
	if !b.Turn() {
		t.Fatal("b, with the fewest renders, was refused")
	}
	b.Missed()
	if a.Turn() {
		t.Fatal("a got its third render while b waited for its first")
	}
	// ...nor its second, until b has caught up to it; another workspace's
	// answer is not held back.
	if !c.Turn() {
		t.Fatal("an answer of another workspace was held back")
	}
	b.Rendered()
	b.Missed() // b, with 1 render, waits for its second
	if a.Turn() {
		t.Fatal("a (2 renders) went before b (1), which is waiting")
	}
	b.Rendered()
	if !a.Turn() {
		t.Fatal("a was refused although b caught up")
	}
	// An answer that leaves holds nobody back.
	b.Missed()
	a.Rendered()
	a.Rendered()
	if a.Turn() {
		t.Fatal("a went before waiting b")
	}
	b.Leave()
	b.Leave()
	if !a.Turn() || renders(a) != 4 {
		t.Fatalf("a after b left: turn refused or %d renders", renders(a))
	}
	a.Leave()
	c.Leave()
	if len(f.groups) != 0 {
		t.Errorf("groups left behind: %v", f.groups)
	}
	var none *Ticket
	if !none.Turn() || renders(none) != 0 {
		t.Error("a nil ticket is always given its turn")
	}
	none.Rendered()
	none.Leave()
}

// TestSyncFairShare: a live best-effort sync makes no call off its turn and
// counts a render when it makes one; a final sync is never held back.
func TestSyncFairShare(t *testing.T) {
	var f Fair
	ctx := context.Background()
	sa, sb := newFake(), newFake()
	ma := Messages{Fair: f.Join("T")}
	mb := Messages{Fair: f.Join("T")}

	if err := ma.Sync(ctx, sa, Want{Pieces: []string{"a1"}, Live: true, Priority: BestEffort}); err != nil {
		t.Fatal(err)
	}
	// b asks for its first render and does not get budget for it.
	sb.budget = 0
	if err := mb.Sync(ctx, sb, Want{Pieces: []string{"b1"}, Live: true, Priority: BestEffort}); err != nil {
		t.Fatal(err)
	}
	if renders(ma.Fair) != 1 || renders(mb.Fair) != 0 {
		t.Fatalf("renders a %d b %d, want 1 and 0", renders(ma.Fair), renders(mb.Fair))
	}
	// a's next intermediate render waits for b's first.
	if err := ma.Sync(ctx, sa, Want{Pieces: []string{"a1 a2"}, Live: true, Priority: BestEffort}); err != nil {
		t.Fatal(err)
	}
	if got := sa.shown(); len(got) != 1 || got[0] != "a1" || len(sa.calls) != 1 {
		t.Fatalf("a rendered off its turn: %v (calls %v)", got, sa.calls)
	}
	// An unchanged frame asks for nothing.
	if err := ma.Sync(ctx, sa, Want{Pieces: []string{"a1"}, Live: true, Priority: BestEffort}); err != nil || len(sa.calls) != 1 {
		t.Fatalf("unchanged frame: %v, calls %v", err, sa.calls)
	}
	// A final sync is not gated.
	if err := ma.Sync(ctx, sa, Want{Pieces: []string{"a1 a2 a3"}, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	if got := sa.shown(); len(got) != 1 || got[0] != "a1 a2 a3" {
		t.Fatalf("final = %v", got)
	}
	// b gets budget: its first render goes.
	sb.budget = -1
	if err := mb.Sync(ctx, sb, Want{Pieces: []string{"b1 b2"}, Live: true, Priority: BestEffort}); err != nil {
		t.Fatal(err)
	}
	if renders(mb.Fair) != 1 || len(sb.shown()) != 1 {
		t.Fatalf("b after budget: %d renders, shown %v", renders(mb.Fair), sb.shown())
	}
}

// TestSyncFinalSkipped: a final sync whose edit is skipped returns
// ErrSkipped, for the caller to show the answer another way; a live one
// returns nil.
func TestSyncFinalSkipped(t *testing.T) {
	ctx := context.Background()
	s := newFake()
	var m Messages
	if err := m.Sync(ctx, s, Want{Pieces: []string{"one"}, Live: true, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	s.budget = 0
	if err := m.Sync(ctx, s, Want{Pieces: []string{"one two"}, Live: true, Priority: BestEffort}); err != nil {
		t.Fatalf("live sync: %v", err)
	}
	skipping := skipSurface{s}
	if err := m.Sync(ctx, skipping, Want{Pieces: []string{"one two three"}, Priority: MustDeliver}); !errors.Is(err, ErrSkipped) {
		t.Fatalf("final sync with its edit skipped = %v, want ErrSkipped", err)
	}
}

// skipSurface skips every edit, as a final edit with a patience does when
// the budget is not free in time.
type skipSurface struct{ *fakeSurface }

func (s skipSurface) Edit(context.Context, Priority, string, Piece) error { return ErrSkipped }

// TestFairInFlight: an answer whose render is on its way (its turn granted,
// not yet shown) holds nobody back; only refused or skipped ones wait.
func TestFairInFlight(t *testing.T) {
	var f Fair
	a, b := f.Join("T"), f.Join("T")
	defer a.Leave()
	defer b.Leave()
	a.Rendered()
	a.Rendered()
	if !b.Turn() { // b's first render is now in flight
		t.Fatal("b refused")
	}
	if !a.Turn() {
		t.Fatal("a held back by b's render in flight")
	}
	if a.Others() != 1 || b.Others() != 1 {
		t.Fatalf("others: %d, %d", a.Others(), b.Others())
	}
}

// BenchmarkFairTurn: a render's turn in a workspace of 1,000 answers in
// flight costs the same as in a small one.
func BenchmarkFairTurn(b *testing.B) {
	var f Fair
	ts := make([]*Ticket, 1000)
	for i := range ts {
		ts[i] = f.Join("T")
		for range i % 4 {
			ts[i].Rendered()
		}
		if i%3 == 0 {
			ts[i].Missed()
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t := ts[i%len(ts)]
		if t.Turn() {
			t.Rendered()
			t.Missed()
		}
	}
}

// renders is how many intermediate renders t has shown (0 for nil).
func renders(t *Ticket) int {
	if t == nil {
		return 0
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.renders
}

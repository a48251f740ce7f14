package render

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeSurface is a channel of messages with a call budget.
type fakeSurface struct {
	msgs   map[string]Piece
	order  []string // IDs, in posting order
	calls  []string // "post m3 [prev m2]", "edit m1", "delete m2"
	budget int      // best-effort calls left; -1: unlimited
	failOn string   // a call ("post", "edit") that fails once
	n      int
}

func newFake() *fakeSurface { return &fakeSurface{msgs: map[string]Piece{}, budget: -1} }

func (f *fakeSurface) spend(p Priority, call string) error {
	if p == BestEffort && f.budget == 0 {
		return fmt.Errorf("%s: %w", call, ErrSkipped)
	}
	if p == BestEffort && f.budget > 0 {
		f.budget--
	}
	if f.failOn == call {
		f.failOn = ""
		return errors.New(call + " failed")
	}
	return nil
}

func (f *fakeSurface) Post(_ context.Context, p Priority, prev string, m Piece) (string, error) {
	if err := f.spend(p, "post"); err != nil {
		return "", err
	}
	f.n++
	id := fmt.Sprint("m", f.n)
	f.msgs[id] = m
	f.order = append(f.order, id)
	f.calls = append(f.calls, "post "+id+" after "+prev)
	return id, nil
}

func (f *fakeSurface) Edit(_ context.Context, p Priority, id string, m Piece) error {
	if err := f.spend(p, "edit"); err != nil {
		return err
	}
	f.calls = append(f.calls, "edit "+id)
	if _, ok := f.msgs[id]; !ok {
		return fmt.Errorf("unknown message: %w", ErrGone)
	}
	f.msgs[id] = m
	return nil
}

func (f *fakeSurface) Delete(_ context.Context, p Priority, id string) error {
	if err := f.spend(p, "delete"); err != nil {
		return err
	}
	f.calls = append(f.calls, "delete "+id)
	if _, ok := f.msgs[id]; !ok {
		return ErrGone
	}
	delete(f.msgs, id)
	return nil
}

// shown is what the channel shows, in posting order: content, and
// "[button]" if any.
func (f *fakeSurface) shown() []string {
	var out []string
	for _, id := range f.order {
		if m, ok := f.msgs[id]; ok {
			s := m.Content
			if m.Button != "" {
				s += "[" + m.Button + "]"
			}
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeSurface) takeCalls() string {
	s := strings.Join(f.calls, "; ")
	f.calls = nil
	return s
}

func TestSyncLiveThenFinal(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	var m Messages
	steps := []struct {
		want  Want
		calls string
		shown []string
	}{
		{Want{Pieces: []string{"⏳"}, Button: "stop", Live: true, Priority: MustDeliver},
			"post m1 after ", []string{"⏳[stop]"}},
		{Want{Pieces: []string{"a ▌"}, Button: "stop", Live: true},
			"edit m1", []string{"a ▌[stop]"}},
		{Want{Pieces: []string{"a ▌"}, Button: "stop", Live: true},
			"", []string{"a ▌[stop]"}}, // unchanged: no call
		// New text first, then the live message, then earlier pieces.
		{Want{Pieces: []string{"a b", "c", "d ▌"}, Button: "stop", Live: true},
			"post m2 after m1; post m3 after m2; edit m1", []string{"a b", "c", "d ▌[stop]"}},
		{Want{Pieces: []string{"a b", "c", "d e ▌"}, Button: "stop", Live: true},
			"edit m3", []string{"a b", "c", "d e ▌[stop]"}},
		// Final: edits in order, then posts; the button moves to the last.
		{Want{Pieces: []string{"a b", "c", "d e", "f"}, Button: "retry", Priority: MustDeliver},
			"edit m3; post m4 after m3", []string{"a b", "c", "d e", "f[retry]"}},
	}
	for i, s := range steps {
		if err := m.Sync(ctx, f, s.want); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := f.takeCalls(); got != s.calls {
			t.Errorf("step %d: calls %q, want %q", i, got, s.calls)
		}
		if got := f.shown(); !slices.Equal(got, s.shown) {
			t.Errorf("step %d: shown %q, want %q", i, got, s.shown)
		}
	}
	// A final frame shorter than what is shown deletes the surplus, last first.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"short"}, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	if got := f.takeCalls(); got != "edit m1; delete m4; delete m3; delete m2" {
		t.Errorf("calls %q", got)
	}
	if got := f.shown(); !slices.Equal(got, []string{"short"}) || len(m.List) != 1 {
		t.Errorf("shown %q, %d tracked", got, len(m.List))
	}
	// And no pieces at all takes the answer away.
	if err := m.Sync(ctx, f, Want{Priority: MustDeliver}); err != nil || len(f.shown()) != 0 || len(m.List) != 0 {
		t.Fatalf("err %v, shown %q", err, f.shown())
	}
}

func TestSyncSkipsOnASpentBudget(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	var m Messages
	if err := m.Sync(ctx, f, Want{Pieces: []string{"⏳"}, Live: true, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	f.budget = 1
	// One call's budget: the new piece is posted, the edit of the first skipped.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a", "b ▌"}, Live: true}); err != nil {
		t.Fatalf("a skip is no error: %v", err)
	}
	if got := f.shown(); !slices.Equal(got, []string{"⏳", "b ▌"}) {
		t.Fatalf("shown %q", got)
	}
	// No budget: nothing happens, no error.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a", "b c ▌"}, Live: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.takeCalls(); got != "post m1 after ; post m2 after m1" {
		t.Fatalf("calls %q", got)
	}
	// The final frame must deliver: it catches up.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a", "b c"}, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	if got := f.shown(); !slices.Equal(got, []string{"a", "b c"}) {
		t.Fatalf("shown %q", got)
	}
}

func TestSyncRepostsADeletedMessageOnTheFinalFrame(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	var m Messages
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a", "b ▌"}, Live: true, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	delete(f.msgs, "m1") // someone deletes the first message
	f.takeCalls()
	// A live frame finds it gone, and leaves it.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a!", "b c ▌"}, Live: true}); err == nil {
		t.Fatal("a failed best-effort edit is reported")
	}
	if !m.List[0].Gone {
		t.Fatal("the message is not marked gone")
	}
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a!!", "b c d ▌"}, Live: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.takeCalls(); got != "edit m2; edit m1; edit m2" {
		t.Fatalf("calls %q", got)
	}
	// The final frame posts it again.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a!!", "b c d"}, Button: "retry", Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	if got := f.takeCalls(); got != "post m3 after ; edit m2" {
		t.Fatalf("calls %q", got)
	}
	if got := f.shown(); !slices.Equal(got, []string{"b c d[retry]", "a!!"}) || m.List[0].ID != "m3" || m.List[0].Gone {
		t.Fatalf("shown %q, list %+v", got, m.List)
	}
}

func TestSyncStopsAtAFailedPost(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	var m Messages
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a ▌"}, Live: true, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	f.failOn = "post"
	err := m.Sync(ctx, f, Want{Pieces: []string{"a", "b", "c"}, Priority: MustDeliver})
	if err == nil || !strings.Contains(err.Error(), "post failed") {
		t.Fatalf("err = %v", err)
	}
	if got := f.takeCalls(); got != "edit m1" || len(m.List) != 1 {
		t.Fatalf("calls %q, %d tracked: later pieces must not be posted before the failed one", got, len(m.List))
	}
	// A failed edit doesn't stop a final sync.
	f.failOn = "edit"
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a.", "b", "c"}, Priority: MustDeliver}); err == nil {
		t.Fatal("the failed edit is not reported")
	}
	if got := f.shown(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("shown %q", got)
	}
}

func TestSyncMinEdit(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	m := Messages{MinEdit: time.Hour}
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a ▌"}, Live: true, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	// Too soon: a live frame leaves the message for a later frame.
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a b ▌"}, Live: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.shown(); !slices.Equal(got, []string{"a ▌"}) {
		t.Fatalf("shown %q", got)
	}
	// A final frame waits, as long as its context lets it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Sync(cctx, f, Want{Pieces: []string{"a b"}, Priority: MustDeliver}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	m.List[0].At = time.Now().Add(-time.Hour)
	if err := m.Sync(ctx, f, Want{Pieces: []string{"a b"}, Priority: MustDeliver}); err != nil {
		t.Fatal(err)
	}
	if got := f.shown(); !slices.Equal(got, []string{"a b"}) {
		t.Fatalf("shown %q", got)
	}
}

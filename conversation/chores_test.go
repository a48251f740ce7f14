package conversation

import (
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// TestChores: a due chore is taken once under its lease, due again when
// the lease ends (its taker died), put back for later, and forgotten when
// done; a chore not yet due is not taken.
func TestChores(t *testing.T) {
	rs := redistest.New(t)
	s := NewStore(rs.Client(), StoreOptions{Prefix: rs.Prefix})
	ctx := t.Context()
	now := time.Now()
	if err := s.AddChore(ctx, "slack-tidy", "a", []byte("job a"), now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddChore(ctx, "slack-tidy", "b", []byte("job b"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeChores(ctx, "slack-tidy", now, 30*time.Second, 10)
	if err != nil || len(got) != 1 || string(got["a"]) != "job a" {
		t.Fatalf("due chores = %q, %v; want a only", got, err)
	}
	if got, _ := s.TakeChores(ctx, "slack-tidy", now.Add(10*time.Second), 30*time.Second, 10); len(got) != 0 {
		t.Fatalf("a leased chore was taken again: %q", got)
	}
	// Its taker died: it is due again when the lease ends.
	if got, _ := s.TakeChores(ctx, "slack-tidy", now.Add(31*time.Second), 30*time.Second, 10); len(got) != 1 || got["a"] == nil {
		t.Fatalf("after the lease: %q", got)
	}
	// Put back for later, then done.
	if err := s.AddChore(ctx, "slack-tidy", "a", []byte("job a"), now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TakeChores(ctx, "slack-tidy", now.Add(90*time.Second), time.Second, 10); len(got) != 1 || got["b"] == nil {
		t.Fatalf("at 90 s: %q, want b only", got)
	}
	for _, id := range []string{"a", "b"} {
		if err := s.DoneChore(ctx, "slack-tidy", id); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.TakeChores(ctx, "slack-tidy", now.Add(time.Hour), time.Second, 10); len(got) != 0 {
		t.Fatalf("done chores taken: %q", got)
	}
}

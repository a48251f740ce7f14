package conversation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/metrics"
)

func TestFeedbackOneVotePerUserPerAnswerChangeable(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		r := newRig(t, rdb, prefix)
		up := metrics.Feedback.WithLabelValues("test", "doubao", "up")
		down := metrics.Feedback.WithLabelValues("test", "doubao", "down")
		up0, down0 := counterValue(up), counterValue(down)

		v := Vote{Platform: "test", Workspace: "w", Answer: "c1:a1", Thread: "test:w:c1:t1", User: "u1", Model: "doubao", Up: true}
		for i, want := range []bool{true, false} { // a click, then its redelivery
			changed, err := r.engine.Feedback(ctx, v)
			if err != nil || changed != want {
				t.Fatalf("vote %d: changed %v err %v, want %v", i, changed, err, want)
			}
		}
		other := v
		other.User = "u2"
		if changed, err := r.engine.Feedback(ctx, other); err != nil || !changed {
			t.Fatalf("second user's vote: %v %v", changed, err)
		}
		v.Up = false // u1 changes their mind
		if changed, err := r.engine.Feedback(ctx, v); err != nil || !changed {
			t.Fatalf("changed vote: %v %v", changed, err)
		}
		r1 := v
		r1.Model, r1.Answer = "deepseek-r1", "c1:a2"
		if _, err := r.engine.Feedback(ctx, r1); err != nil {
			t.Fatal(err)
		}

		tallies, err := r.store.Tallies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []Tally{{Model: "doubao", Up: 1, Down: 1}, {Model: "deepseek-r1", Down: 1}}
		if len(tallies) != len(want) || tallies[0] != want[0] || tallies[1] != want[1] {
			t.Fatalf("tallies %+v, want %+v", tallies, want)
		}
		if d := counterValue(up) - up0; d != 2 {
			t.Fatalf("arkbot_feedback_total up grew by %v, want 2 (the repeat not counted)", d)
		}
		if d := counterValue(down) - down0; d != 1 {
			t.Fatalf("arkbot_feedback_total down grew by %v, want 1", d)
		}

		if n := r.ask(t, msg("/feedback")).notice(); !strings.Contains(n, "Only the bot's admins") {
			t.Fatalf("non-admin /feedback: %q", n)
		}
		m := msg("/feedback")
		m.User.Admin = true
		n := r.ask(t, m).notice()
		if !strings.Contains(n, "**doubao**: 👍 1 · 👎 1 (50% positive)") || !strings.Contains(n, "**deepseek-r1**: 👍 0 · 👎 1 (0% positive)") ||
			strings.Index(n, "doubao") > strings.Index(n, "deepseek-r1") {
			t.Fatalf("admin /feedback:\n%s", n)
		}
	})
}

func TestFirstTimeMarksOnce(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		a, b := newRig(t, rdb, prefix), newRig(t, rdb, prefix) // two replicas on one Redis
		first, err := a.engine.FirstTime(ctx, "pane:T1:U1", time.Hour)
		if err != nil || !first {
			t.Fatalf("first: %v %v", first, err)
		}
		again, err := b.engine.FirstTime(ctx, "pane:T1:U1", time.Hour)
		if err != nil || again {
			t.Fatalf("second replica: %v %v", again, err)
		}
	})
}

// BenchmarkFeedback records one vote per op on a real Redis (a private
// redis-server): a new voter, or (repeat) the same vote again, which
// changes and counts nothing.
func BenchmarkFeedback(b *testing.B) {
	rs := redistest.New(b)
	r := newRig(b, rs.Client(), rs.Prefix)
	ctx := context.Background()
	for _, repeat := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "repeat"}[repeat], func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !repeat {
					i++
				}
				v := Vote{Platform: "test", Workspace: "w", Answer: "c1:a1", User: fmt.Sprint("u", i), Model: "doubao", Up: true}
				if _, err := r.engine.Feedback(ctx, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

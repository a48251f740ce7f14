package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// TestReplicasSplitTheBudgetsByLiveCount runs two replicas on one
// workspace, each with the whole of Slack's budgets, counting each other
// through a real Redis: each spends half, Slack's events go to either at
// random, and fifty answers streaming at once draw no 429. Without the
// count the same load draws 429s (checked by hand: 2 to 5 a run). When one
// replica stops, the other takes the whole budget back.
func TestReplicasSplitTheBudgetsByLiveCount(t *testing.T) {
	const answers, channels, scale = 50, 5, 20
	rs := redistest.New(t)
	store := conversation.NewStore(rs.Client(), conversation.StoreOptions{Prefix: rs.Prefix})
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	fs.SetRateLimits(&slacktest.RateLimits{Scale: scale})
	h := newScripted()
	h.frames, h.step = 12, 40*time.Millisecond
	h.answer = func(m conversation.Message) string {
		return strings.TrimSpace(strings.Repeat("Streaming answer for "+m.Text+". ", 12)) // a final render drops trailing blanks
	}
	fast := func(c *config.Slack) { c.EditInterval = config.Duration(100 * time.Millisecond) }
	opts := []Option{WithBudgets(DefaultBudgets().Scaled(scale)), WithPresence(store, 100*time.Millisecond)}
	a, _ := start(t, fs, h, fast, opts...)
	if s := a.budget.Share(); s != 1 {
		t.Fatalf("alone, the first replica spends %v of the budgets", s)
	}
	b, stopB := start(t, fs, h, fast, opts...)
	if s := b.budget.Share(); s != 0.5 {
		t.Fatalf("the second replica spends %v of the budgets from its start, want 0.5", s)
	}
	e := &env{t: t, fs: fs, a: a, h: h}
	e.waitFor("the first replica to count the second", 2*time.Second, func() bool { return a.budget.Share() == 0.5 })

	type q struct{ ch, ts string }
	var qs []q
	for i := range answers {
		ch := fmt.Sprintf("C%d", i%channels)
		ts := fs.NextTS()
		qs = append(qs, q{ch, ts})
		e.send(slacktest.EventOptions{}, slacktest.AppMention(ch, "U1", fmt.Sprintf("<@UBOT> question %d", i), ts, ""))
	}
	e.waitFor("all answers", 25*time.Second, func() bool { return h.finishedCount() == answers })
	for i, x := range qs {
		want := h.answer(conversation.Message{Text: fmt.Sprintf("question %d", i)})
		if got := visible(e.final(x.ch, x.ts)); got != want {
			t.Errorf("answer %d: %q", i, got)
		}
	}
	t.Logf("%d answers by two replicas: %d calls in all, %d answered 429", answers, len(fs.Calls()), fs.RateLimited())
	if n := fs.RateLimited(); n != 0 {
		for _, c := range fs.Calls() {
			if c.Result == "ratelimited" {
				t.Logf("429: %s %s at %s", c.Method, c.Params.Get("channel"), c.Time.Format("15:04:05.000"))
			}
		}
		t.Fatalf("%d calls were answered 429", n)
	}

	stopB()
	e.waitFor("the first replica to take the whole budget back", 2*time.Second, func() bool { return a.budget.Share() == 1 })
}

// presenceStub answers heartbeats with n alive, or err.
type presenceStub struct {
	n   int
	err error
}

func (p *presenceStub) Heartbeat(context.Context, string, string, time.Duration) (int, error) {
	return p.n, p.err
}

func (p *presenceStub) Leave(context.Context, string, string) error { return p.err }

func (p *presenceStub) Departures(ctx context.Context, _ string, _ func()) error {
	<-ctx.Done()
	return nil
}

// TestReplicaCountSurvivesStorageFailures: a failed heartbeat keeps the
// last count rather than spending the whole budget.
func TestReplicaCountSurvivesStorageFailures(t *testing.T) {
	p := &presenceStub{n: 3}
	a, err := New(config.Slack{BotToken: "xoxb-1", AppToken: "xapp-1"}, config.Limits{}, newScripted(),
		WithLogger(newTestLogger(t)), WithPresence(p, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a.countReplicas(ctx)
	if s := a.budget.Share(); s != 1.0/3 {
		t.Fatalf("three replicas: share %v", s)
	}
	p.err = errors.New("redis: connection refused")
	a.countReplicas(ctx)
	a.countReplicas(ctx)
	if s := a.budget.Share(); s != 1.0/3 {
		t.Fatalf("after failed heartbeats: share %v, want the last count's 1/3", s)
	}
	p.n, p.err = 0, nil // storage back, this replica's own entry not yet visible
	a.countReplicas(ctx)
	if s := a.budget.Share(); s != 1 {
		t.Fatalf("counted 0: share %v, want 1 (this replica at least)", s)
	}
}

// TestReplicaTakesBackALeaversShareAtOnce: with heartbeats a minute apart,
// a replica still counts again as soon as another leaves: the leaver's
// share is its at once (internal/ratelimit passes it to calls waiting).
func TestReplicaTakesBackALeaversShareAtOnce(t *testing.T) {
	rs := redistest.New(t)
	store := conversation.NewStore(rs.Client(), conversation.StoreOptions{Prefix: rs.Prefix})
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	ctx := context.Background()
	if _, err := store.Heartbeat(ctx, presenceGroup, "other", time.Hour); err != nil {
		t.Fatal(err)
	}
	a, _ := start(t, fs, newScripted(), nil, WithPresence(store, time.Minute))
	if s := a.budget.Share(); s != 0.5 {
		t.Fatalf("with another replica alive: share %v, want 0.5", s)
	}
	e := &env{t: t, fs: fs, a: a}
	// Subscribed once a Leave reaches a listener: retry the Leave until then.
	e.waitFor("the replica to count again when the other leaves", 5*time.Second, func() bool {
		if err := store.Leave(ctx, presenceGroup, "other"); err != nil {
			t.Fatal(err)
		}
		return a.budget.Share() == 1
	})
}

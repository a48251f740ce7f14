package slack

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
	"github.com/arkbot/arkbot/metrics"
)

// scarceUpdates is the test budgets with chat.update's spent after one
// call: a busy workspace where only one answer can be finished by an edit.
func scarceUpdates() Budgets {
	b := DefaultBudgets().Scaled(fastScale)
	b["chat.update"] = Budget{PerMinute: 1, Burst: 1}
	return b
}

// twoAnswersShowing mentions the bot in C1 and C2 (thread ts1, ts2) with
// h gated, lets both past Begin and waits until, with one chat.update to
// spare, one shows a placeholder (its edits wait for the final it
// claimed) and the other its first text; their finals wait for h.gate.
func twoAnswersShowing(e *env, h *scripted) (ts1, ts2 string) {
	e.t.Helper()
	ts1, ts2 = e.fs.NextTS(), e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> one", ts1, ""))
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C2", "U1", "<@UBOT> two", ts2, ""))
	for range 2 {
		<-h.began
	}
	h.gate <- struct{}{}
	h.gate <- struct{}{}
	e.waitFor("a placeholder and a first text", 5*time.Second, func() bool {
		r1, r2 := e.fs.Replies("C1", ts1), e.fs.Replies("C2", ts2)
		return len(r1) == 1 && len(r2) == 1 && (r1[0].Visible() == placeholderText) != (r2[0].Visible() == placeholderText)
	})
	return ts1, ts2
}

// TestFinalPostedInsteadOfEdited: of two answers streaming by post and edit
// in a workspace with one chat.update to spare, one claims it for its final
// edit; the other claims a chat.delete, and its final is posted whole after
// its partial message is deleted. Each thread ends with the whole answer
// once, and nothing waits for chat.update.
func TestFinalPostedInsteadOfEdited(t *testing.T) {
	h := newScripted()
	h.gate = make(chan struct{})
	e := setup(t, h, func(c *config.Slack) { c.Streaming = "update" }, WithBudgets(scarceUpdates()))

	deliveries := func(how string) float64 {
		return testutil.ToFloat64(metrics.Deliveries.WithLabelValues(conversation.PlatformSlack, how))
	}
	edits, instead := deliveries("edit"), deliveries("posted_instead")
	ts1, ts2 := twoAnswersShowing(e, h)
	start := time.Now()
	h.gate <- struct{}{}
	h.gate <- struct{}{}
	for ch, ts := range map[string]string{"C1": ts1, "C2": ts2} {
		msgs := e.final(ch, ts)
		want := "Answer to: " + map[string]string{"C1": "one", "C2": "two"}[ch]
		if len(msgs) != 1 || msgs[0].Visible() != want {
			t.Errorf("%s: thread = %q, want the answer once", ch, visible(msgs))
		}
		if len(msgs) == 1 && len(msgs[0].Buttons()) == 0 {
			t.Errorf("%s: no Retry button under the finished answer", ch)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the finals took %v: one waited for chat.update (one a minute)", took)
	}
	if n := e.fs.CallCount("chat.delete"); n != 1 {
		t.Errorf("chat.delete called %d times, want 1 (the partial answer under the posted one)", n)
	}
	if n := e.fs.CallCount("chat.update"); n != 1 {
		t.Errorf("chat.update called %d times, want 1 (the claimed final edit)", n)
	}
	if n := e.fs.RateLimited(); n != 0 {
		t.Errorf("%d calls answered 429", n)
	}
	if d1, d2 := deliveries("edit")-edits, deliveries("posted_instead")-instead; d1 != 1 || d2 != 1 {
		t.Errorf("deliveries counted: %v edited, %v posted instead; want 1 and 1", d1, d2)
	}
}

// TestPartialTidiedLater: when the partial message under a posted final
// can't be deleted at once (429), a tidy job deletes it once Slack allows.
func TestPartialTidiedLater(t *testing.T) {
	h := newScripted()
	h.gate = make(chan struct{})
	e := setup(t, h, func(c *config.Slack) { c.Streaming = "update" }, WithBudgets(scarceUpdates()))
	ts1, ts2 := twoAnswersShowing(e, h)
	e.fs.FailNext("chat.delete", slacktest.Failure{RetryAfter: 1})
	h.gate <- struct{}{}
	h.gate <- struct{}{}
	e.waitFor("the answers finished", 5*time.Second, func() bool { return h.finishedCount() == 2 })
	// The posted answer shows at once, above the partial left to tidy.
	twice := 0
	for ch, ts := range map[string]string{"C1": ts1, "C2": ts2} {
		if len(e.fs.Replies(ch, ts)) == 2 {
			twice++
		}
	}
	if twice != 1 {
		t.Fatalf("%d threads show a partial above the posted final, want 1 until tidied", twice)
	}
	for ch, ts := range map[string]string{"C1": ts1, "C2": ts2} {
		want := "Answer to: " + map[string]string{"C1": "one", "C2": "two"}[ch]
		e.waitFor("tidied "+ch, 5*time.Second, func() bool {
			msgs := e.fs.Replies(ch, ts)
			return len(msgs) == 1 && msgs[0].Visible() == want
		})
	}
	if n := e.fs.CallCount("chat.delete"); n != 2 {
		t.Errorf("chat.delete called %d times, want 2 (a 429, then the tidy job)", n)
	}
}

// TestNativeFinalAppendedWhenStopIsLate: a natively streamed answer whose
// chat.stopStream is refused (429) appends the rest of its text at once
// (Tier 4) and is stopped later, with its Retry button.
func TestNativeFinalAppendedWhenStopIsLate(t *testing.T) {
	h := newScripted()
	h.answer = func(m conversation.Message) string { return longAnswer }
	h.gate = make(chan struct{})
	e := setup(t, h, nil)
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", ts, ""))
	<-h.began
	h.gate <- struct{}{}
	e.waitFor("a stream", 5*time.Second, func() bool {
		msgs := e.fs.Replies("C1", ts)
		return len(msgs) == 1 && msgs[0].Streaming
	})
	e.fs.FailNext("chat.stopStream", slacktest.Failure{RetryAfter: 1})
	h.gate <- struct{}{}
	e.waitFor("the whole text, still streaming", 5*time.Second, func() bool {
		msgs := e.fs.Replies("C1", ts)
		return h.finishedCount() == 1 && len(msgs) == 1 && msgs[0].Visible() == longAnswer
	})
	if !e.fs.Replies("C1", ts)[0].Streaming {
		t.Fatal("the stream was stopped although chat.stopStream was refused")
	}
	msgs := e.final("C1", ts)
	if len(msgs) != 1 || msgs[0].Visible() != longAnswer || len(msgs[0].Buttons()) == 0 {
		t.Fatalf("thread = %q (buttons %v), want the answer once with Retry", visible(msgs), msgs[0].Buttons())
	}
	if n := e.fs.CallCount("chat.stopStream"); n != 2 {
		t.Errorf("chat.stopStream called %d times, want 2 (a 429, then the tidy job)", n)
	}
}

// TestTidyJobOutlivesItsReplica: a tidy job kept in Redis (WithChores) is
// made by another replica when the one that stored it is gone before it
// could: nothing is left for good under a posted final.
func TestTidyJobOutlivesItsReplica(t *testing.T) {
	rs := redistest.New(t)
	store := conversation.NewStore(rs.Client(), conversation.StoreOptions{Prefix: rs.Prefix})
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	h := newScripted()
	h.gate = make(chan struct{})
	update := func(c *config.Slack) { c.Streaming = "update" }
	opts := []Option{WithBudgets(scarceUpdates()), WithChores(store)}
	_, stopA := start(t, fs, h, update, opts...)
	e := &env{t: t, fs: fs, h: h}
	ts1, ts2 := twoAnswersShowing(e, h)
	// The partial under the posted final can't be deleted for a minute on
	// this replica (a 429), which then stops.
	fs.FailNext("chat.delete", slacktest.Failure{RetryAfter: 60})
	h.gate <- struct{}{}
	h.gate <- struct{}{}
	e.waitFor("the answers finished", 5*time.Second, func() bool { return h.finishedCount() == 2 })
	stopA()
	twice := func() int {
		n := 0
		for ch, ts := range map[string]string{"C1": ts1, "C2": ts2} {
			if len(fs.Replies(ch, ts)) == 2 {
				n++
			}
		}
		return n
	}
	if n := twice(); n != 1 {
		t.Fatalf("%d threads show a partial above the posted final after the first replica stopped, want 1", n)
	}
	// Another replica makes the stored job.
	start(t, fs, h, update, opts...)
	e.waitFor("the second replica to tidy", 10*time.Second, func() bool { return twice() == 0 })
}

package slack

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
	"github.com/arkbot/arkbot/metrics"
)

// botReplies lists the bot's messages in a thread.
func botReplies(fs *slacktest.Server, channel, thread string) []slacktest.Message {
	var out []slacktest.Message
	for _, m := range fs.Replies(channel, thread) {
		if m.User == fs.BotUserID() {
			out = append(out, m)
		}
	}
	return out
}

// ephemeralsTo lists the ephemeral messages user was sent.
func ephemeralsTo(fs *slacktest.Server, user string) []slacktest.Ephemeral {
	var out []slacktest.Ephemeral
	for _, e := range fs.Ephemerals() {
		if e.User == user {
			out = append(out, e)
		}
	}
	return out
}

func slowCount(ark *arktest.Server) {
	ark.Enqueue(arktest.Response{Content: arktest.SplitWords("one two three four five six seven eight nine ten"), PerChunk: 150 * time.Millisecond})
}

// Slack's Stop button: the session is processing while the answer streams,
// titled from the question; Slack stops the stream (an append is refused
// before the event arrives), agent_session_stopped stops the answer, which
// keeps its text in the one streamed message, and the session goes back to
// active. A redelivery of the event stops nothing more and says nothing.
func TestAgentSessionStopButton(t *testing.T) {
	engine, ark := engineFor(t)
	slowCount(ark)
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	_, stop := start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> count slowly\nplease", ts, ""))
	e.waitFor("the session processing and the answer streaming", 5*time.Second, func() bool {
		s, ok := fs.Session("C1", ts)
		r := botReplies(fs, "C1", ts)
		return ok && s.Status == "processing" && len(r) == 1 && r[0].Streaming && strings.Contains(r[0].Visible(), "one")
	})
	if s, _ := fs.Session("C1", ts); s.Title != "count slowly" || s.Initiator != "U1" {
		t.Fatalf("session %+v: want the question's first line as title, U1 as initiator", s)
	}

	ev := fs.StopSession("C1", ts, "U1")
	e.waitFor("an append refused on the stream Slack stopped", 5*time.Second, func() bool {
		return slices.ContainsFunc(fs.Calls("chat.appendStream"), func(c slacktest.Call) bool { return c.Error == "message_not_in_streaming_state" })
	})
	sent := e.send(slacktest.EventOptions{}, ev)
	e.waitFor("the answer stopped and the session active", 5*time.Second, func() bool {
		r := botReplies(fs, "C1", ts)
		s, _ := fs.Session("C1", ts)
		return len(r) == 1 && !r[0].Streaming && strings.Contains(r[0].Visible(), "Stopped.") && s.Status == "active"
	})
	if a := botReplies(fs, "C1", ts)[0].Visible(); !strings.HasPrefix(a, "one") || strings.Contains(a, "ten") {
		t.Fatalf("stopped answer %q", a)
	}
	e.send(slacktest.EventOptions{EventID: sent.EventID, RetryAttempt: 1, RetryReason: "timeout"}, ev)
	stop() // the adapter drains: the redelivery is handled
	if n := ephemeralsTo(fs, "U1"); len(n) != 1 || !strings.Contains(n[0].Text, "Stopped the answer") {
		t.Fatalf("notices to the clicker %+v: want one saying it stopped", n)
	}
	if r := botReplies(fs, "C1", ts); len(r) != 1 {
		t.Fatalf("%d bot messages in the thread, want the stopped answer only", len(r))
	}
	if n := len(ark.Requests()); n != 1 {
		t.Fatalf("%d requests to Ark", n)
	}
}

// The Stop button works whichever replica gets the event: here the answer
// runs on a Socket Mode replica and the event reaches an HTTP one, which
// asks the other through Redis; the same event redelivered to the first
// replica is dropped as seen.
func TestAgentSessionStopOnAnotherReplica(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	slowCount(ark)
	engines := enginetest.Replicas(t, ark, 2, conversation.WithRenderInterval(conversation.PlatformSlack, 20*time.Millisecond))
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	_, stopA := start(t, fs, engines[0], nil)
	b, stopB := start(t, fs, engines[1], func(c *config.Slack) { c.AppToken, c.SigningSecret = "", "s3cret" })
	srv := httptest.NewServer(b.HTTPHandler())
	t.Cleanup(srv.Close)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> count slowly", ts, ""))
	e.waitFor("the answer streaming", 5*time.Second, func() bool {
		r := botReplies(fs, "C1", ts)
		return len(r) == 1 && r[0].Streaming && strings.Contains(r[0].Visible(), "one")
	})
	o := slacktest.EventOptions{}
	ev := fs.StopSession("C1", ts, "U1")
	body := fs.EventCallback(&o, ev)
	if code, _, _ := httpPost(t, srv.URL+"/slack/events", "application/json", body, slacktest.Sign("s3cret", time.Now(), body)); code != 200 {
		t.Fatalf("stop event over HTTP: %d", code)
	}
	e.waitFor("the answer stopped", 5*time.Second, func() bool {
		r := botReplies(fs, "C1", ts)
		return len(r) == 1 && !r[0].Streaming && strings.Contains(r[0].Visible(), "Stopped.")
	})
	e.send(slacktest.EventOptions{EventID: o.EventID}, ev)
	stopA()
	stopB()
	if n := ephemeralsTo(fs, "U1"); len(n) != 1 || !strings.Contains(n[0].Text, "Stopped the answer") {
		t.Fatalf("notices %+v: want one, from the replica that took the event", n)
	}
	if a := botReplies(fs, "C1", ts)[0].Visible(); strings.Contains(a, "ten") {
		t.Fatalf("answer ran to its end: %q", a)
	}
}

// A workspace that refuses agent sessions keeps today's behaviour: the
// assistant status with the loading messages, answers as before, and the
// refusal is remembered: the next answer does not ask again.
func TestWorkspaceWithoutAgentSessions(t *testing.T) {
	e := setup(t, newScripted(), nil)
	e.fs.RefuseAgentSessions("unknown_method")
	for range 2 {
		ts := e.fs.NextTS()
		e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", ts, ""))
		if got := visible(e.final("C1", ts)); got != "Answer to: hi" {
			t.Fatalf("answer %q", got)
		}
	}
	if n := e.fs.CallCount("agents.sessions.setStatus"); n != 1 {
		t.Fatalf("agents.sessions.setStatus called %d times, want once (then remembered)", n)
	}
	st := e.fs.Statuses()
	if len(st) == 0 || !slices.Equal(st[0].LoadingMessages, config.DefaultLoadingMessages()) {
		t.Fatalf("statuses %+v: want the loading messages", st)
	}
}

// The agent pane: a new assistant thread is greeted once with the
// suggested prompts, however often the event comes; opening the Messages
// tab greets a person once at the top of the DM; the Home tab does not.
// A DM thread is titled from its first question only.
func TestAgentPane(t *testing.T) {
	engine, _ := engineFor(t)
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	fs.RefuseAgentSessions("feature_disabled")
	_, stop := start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	thread := fs.NextTS()
	started := slacktest.AssistantThreadStarted("U1", "D1", thread, fs.TeamID())
	sent := e.send(slacktest.EventOptions{}, started)
	e.send(slacktest.EventOptions{EventID: sent.EventID, RetryAttempt: 1}, started)
	e.send(slacktest.EventOptions{}, started) // another replica's copy, another ID
	e.send(slacktest.EventOptions{}, slacktest.AppHomeOpened("U1", "D1", "messages", fs.NextTS()))
	e.send(slacktest.EventOptions{}, slacktest.AppHomeOpened("U1", "D1", "messages", fs.NextTS()))
	e.send(slacktest.EventOptions{}, slacktest.AppHomeOpened("U1", "D1", "home", fs.NextTS()))

	greetings := func() int {
		n := 0
		for _, m := range fs.Messages("D1") {
			if strings.Contains(m.Visible(), "👋 Hi!") {
				n++
			}
		}
		return n
	}
	e.waitFor("the greetings and their prompts", 5*time.Second, func() bool { return greetings() == 2 && len(fs.SuggestedPrompts()) == 2 })

	q1, q2 := fs.NextTS(), fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("D1", "im", "U1", "What is a monad, really?", q1, thread))
	answers(t, fs, "D1", thread, 2) // the greeting and the answer
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("D1", "im", "U1", "And a functor?", q2, thread))
	answers(t, fs, "D1", thread, 3)
	stop()

	if n := greetings(); n != 2 {
		t.Fatalf("%d greetings, want one in the new thread and one at the top of the DM", n)
	}
	if g := fs.Replies("D1", thread)[0]; !strings.Contains(g.Visible(), "👋 Hi!") {
		t.Fatalf("first message in the new thread %q, want the greeting", g.Visible())
	}
	prompts := fs.SuggestedPrompts()
	if len(prompts) != 2 || prompts[0].Channel != "D1" || len(prompts[0].Prompts) != len(config.DefaultSuggestedPrompts()) {
		t.Fatalf("suggested prompts %+v: want the defaults, once per greeting", prompts)
	}
	if !slices.ContainsFunc(prompts, func(p slacktest.PromptsCall) bool { return p.ThreadTS == thread }) {
		t.Fatalf("suggested prompts %+v: none in the new thread", prompts)
	}
	if titles := fs.Titles(); len(titles) != 1 || titles[0].ThreadTS != thread || titles[0].Title != "What is a monad, really?" {
		t.Fatalf("titles %+v: want one, from the first question", titles)
	}
}

// Finished answers carry 👍/👎 naming the model, streamed or edited; a
// click is acknowledged privately and counted once per user per answer, a
// repeated click not, a changed vote again (👎 pointing at Retry), and
// admins read the tally with !feedback.
func TestFeedbackButtons(t *testing.T) {
	for _, streaming := range []string{"auto", "update"} {
		t.Run(streaming, func(t *testing.T) {
			engine, _ := engineFor(t)
			fs := slacktest.New(slacktest.Options{})
			t.Cleanup(fs.Close)
			fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
			fs.AddUser(slacktest.User{ID: "U2", Name: "bob"})
			_, stop := start(t, fs, engine, func(c *config.Slack) { c.Streaming = streaming })
			e := &env{t: t, fs: fs}

			ts := fs.NextTS()
			e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hello", ts, ""))
			ans := answers(t, fs, "C1", ts, 1)[0]
			fb, ok := ans.Feedback()
			if !ok || fb.Positive != "up:doubao" || fb.Negative != "down:doubao" {
				t.Fatalf("feedback buttons %+v on %q (blocks %s)", fb, ans.Visible(), ans.Blocks)
			}
			retryButton(t, ans)
			if streaming == "auto" && !ans.Streamed {
				t.Fatal("the answer was not streamed")
			}

			up := metrics.Feedback.WithLabelValues("slack", "doubao", "up")
			down := metrics.Feedback.WithLabelValues("slack", "doubao", "down")
			up0, down0 := counterValue(up), counterValue(down)
			click := func(positive bool) {
				if _, err := fs.SendInteractive(fs.FeedbackAction("U1", ans, positive)); err != nil {
					t.Fatal(err)
				}
			}
			click(true)
			e.waitFor("the thanks", 5*time.Second, func() bool { return len(ephemeralsTo(fs, "U1")) == 1 })
			click(false)
			e.waitFor("the thanks for 👎", 5*time.Second, func() bool { return len(ephemeralsTo(fs, "U1")) == 2 })
			click(false) // repeated: nothing
			if n := ephemeralsTo(fs, "U1")[1].Text; !strings.Contains(n, "Retry") {
				t.Fatalf("👎 acknowledged with %q: want it to point at Retry", n)
			}
			e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U2", "!feedback", fs.NextTS(), ts))
			e.waitFor("the tally", 5*time.Second, func() bool {
				return strings.Contains(visible(botReplies(fs, "C1", ts)), "**doubao**: 👍 0 · 👎 1")
			})
			stop()
			if n := len(ephemeralsTo(fs, "U1")); n != 2 {
				t.Fatalf("%d acknowledgements, want 2 (the repeated click says nothing)", n)
			}
			if du, dd := counterValue(up)-up0, counterValue(down)-down0; du != 1 || dd != 1 {
				t.Fatalf("arkbot_feedback_total grew by up %v, down %v; want 1 and 1", du, dd)
			}
		})
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// An answer longer than one message stops its first stream message, which
// leaves the session active (chat.stopStream's default): the session is
// set processing again, so the Stop button stays until the answer ends.
func TestLongAnswerKeepsTheSessionProcessing(t *testing.T) {
	h := newScripted()
	words := strings.Repeat("word ", 150) // 750 bytes: four messages of 200
	h.answer = func(conversation.Message) string { return words }
	h.frames, h.step = 10, 20*time.Millisecond
	e := setup(t, h, nil, WithMessageLimit(200))
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> talk", ts, ""))
	msgs := e.final("C1", ts)
	if len(msgs) < 3 || !msgs[0].Streamed {
		t.Fatalf("%d messages: want a streamed answer over several", len(msgs))
	}
	var s slacktest.Session
	e.waitFor("the session active at the end", 5*time.Second, func() bool {
		s, _ = e.fs.Session("C1", ts)
		return len(s.History) > 0 && s.History[len(s.History)-1] == "active" && e.fs.CallCount("agents.sessions.setStatus") >= 3
	})
	// processing, then for each stream message stopped mid-answer: active
	// (by the stop) and processing again; active at the end.
	if s.History[0] != "processing" || !slices.Contains(s.History[1:len(s.History)-1], "processing") {
		t.Fatalf("session statuses %v: want processing again after a stream message stopped mid-answer", s.History)
	}
}

// Someone else's click on the Stop button is refused privately: the answer
// runs on to its end and its session stays processing until then.
func TestAgentSessionStopRefusedForSomeoneElse(t *testing.T) {
	engine, ark := engineFor(t)
	slowCount(ark)
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	fs.AddUser(slacktest.User{ID: "U3", Name: "carl"})
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> count slowly", ts, ""))
	e.waitFor("the answer streaming", 5*time.Second, func() bool {
		r := botReplies(fs, "C1", ts)
		return len(r) == 1 && r[0].Streaming && strings.Contains(r[0].Visible(), "one")
	})
	e.send(slacktest.EventOptions{}, slacktest.StopSessionEvent("C1", ts, "U3", fs.NextTS()))
	e.waitFor("the refusal", 5*time.Second, func() bool { return len(ephemeralsTo(fs, "U3")) == 1 })
	if n := ephemeralsTo(fs, "U3")[0].Text; !strings.Contains(n, "Only the person who asked") {
		t.Fatalf("notice %q", n)
	}
	if s, _ := fs.Session("C1", ts); s.Status != "processing" {
		t.Fatalf("session %+v after a refused stop: want it processing", s)
	}
	e.waitFor("the whole answer", 10*time.Second, func() bool {
		r := botReplies(fs, "C1", ts)
		return len(r) == 1 && !r[0].Streaming && strings.Contains(r[0].Visible(), "ten")
	})
}

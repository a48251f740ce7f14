package slack

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

const longAnswer = "Here is **the** answer, in several sentences that grow as the model writes them. " +
	"It has `code`, a [link](https://example.com) and a list:\n\n- one\n- two\n\n```go\nfmt.Println(\"hi\")\n```\n\nDone."

func TestMentionStreamsNatively(t *testing.T) {
	h := newScripted()
	h.answer = func(conversation.Message) string { return longAnswer }
	e := setup(t, h, nil)
	ts := e.fs.NextTS()
	start := time.Now()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> explain this", ts, ""))

	// A sign of life at once: the assistant status in the mention's thread.
	e.waitFor("thinking status", time.Second, func() bool { return len(e.fs.Statuses()) > 0 })
	st := e.fs.Statuses()[0]
	if st.Channel != "C1" || st.ThreadTS != ts || st.Status != thinkingStatus {
		t.Fatalf("status = %+v", st)
	}
	if d := st.Time.Sub(start); d > time.Second {
		t.Fatalf("status after %v", d)
	}
	msgs := e.final("C1", ts)
	if len(msgs) != 1 || msgs[0].Visible() != longAnswer || !msgs[0].Streamed {
		t.Fatalf("thread = %+v", msgs)
	}
	if n := e.fs.CallCount("chat.startStream"); n != 1 {
		t.Errorf("startStream calls = %d", n)
	}
	if n := e.fs.CallCount("chat.appendStream"); n < 2 {
		t.Errorf("appendStream calls = %d, want several (streamed)", n)
	}
	if n := e.fs.CallCount("chat.stopStream"); n != 1 {
		t.Errorf("stopStream calls = %d", n)
	}
	if n := e.fs.CallCount("chat.update"); n != 0 {
		t.Errorf("chat.update calls = %d in native mode", n)
	}
	start1 := e.fs.Calls("chat.startStream")[0].Params
	if start1.Get("thread_ts") != ts || start1.Get("recipient_user_id") != "U1" || start1.Get("recipient_team_id") != e.fs.TeamID() {
		t.Errorf("startStream params = %v", start1)
	}

	m := h.messages()[0]
	want := conversation.Message{
		Platform: "slack", Workspace: e.fs.TeamID(), Channel: "C1", Thread: ts, ID: "C1:" + ts,
		User: conversation.User{ID: "U1", Name: "Ann", CanSwitchModel: true},
		Text: "explain this", Mentioned: true, Time: m.Time,
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("message\n got %+v\nwant %+v", m, want)
	}
	if m.Time.IsZero() || m.Time.Unix() != parseTS(ts).Unix() {
		t.Errorf("time = %v", m.Time)
	}
}

func TestFallsBackToUpdateWhenStreamingUnavailable(t *testing.T) {
	h := newScripted()
	h.answer = func(conversation.Message) string { return longAnswer }
	h.note = "The model stopped early: it reached max_tokens."
	e := setup(t, h, nil)
	e.fs.SetNativeStreaming(false)

	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> one", ts, ""))
	msgs := e.final("C1", ts)
	wantText := longAnswer + "\n\n> ⚠️ " + h.note
	if len(msgs) != 1 || msgs[0].Visible() != wantText || msgs[0].Streamed {
		t.Fatalf("thread = %q", visible(msgs))
	}
	if n := e.fs.CallCount("chat.startStream"); n != 1 {
		t.Fatalf("startStream calls = %d, want 1 (refused, then remembered)", n)
	}
	if msgs[0].Edits == 0 {
		t.Errorf("no chat.update: the answer did not stream")
	}

	// The next answer in this workspace doesn't try streaming: a placeholder
	// is posted at once, then edited.
	h.gate = make(chan struct{})
	ts2 := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U2", "<@UBOT> two", ts2, ""))
	e.waitFor("placeholder", time.Second, func() bool { return len(e.fs.Replies("C1", ts2)) == 1 })
	if got := e.fs.Replies("C1", ts2)[0].Visible(); got != placeholderText {
		t.Fatalf("placeholder = %q", got)
	}
	h.gate <- struct{}{} // after Begin
	e.waitFor("streamed text with a cursor", 3*time.Second, func() bool {
		v := e.fs.Replies("C1", ts2)[0].Visible()
		return strings.HasPrefix(v, "Here is") && strings.HasSuffix(v, cursorMark)
	})
	h.gate <- struct{}{} // before the final frame
	msgs = e.final("C1", ts2)
	if msgs[0].Visible() != wantText {
		t.Fatalf("second answer = %q", msgs[0].Visible())
	}
	if n := e.fs.CallCount("chat.startStream"); n != 1 {
		t.Fatalf("startStream calls = %d after the fallback was remembered", n)
	}
	// The notification text is mrkdwn.
	if got := msgs[0].Text; !strings.Contains(got, "Here is *the* answer") || !strings.Contains(got, "<https://example.com|link>") {
		t.Errorf("fallback text = %q", got)
	}
}

func TestUpdateModeEditsAtMostOncePerInterval(t *testing.T) {
	h := newScripted()
	h.answer = func(conversation.Message) string { return strings.Repeat("word ", 200) }
	h.frames, h.step = 30, 2*time.Millisecond
	e := setup(t, h, func(c *config.Slack) {
		c.Streaming = "update"
		c.EditInterval = config.Duration(50 * time.Millisecond)
	})
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> go", ts, ""))
	msgs := e.final("C1", ts)
	if got := msgs[0].Visible(); got != strings.TrimSpace(strings.Repeat("word ", 200)) && got != strings.Repeat("word ", 200) {
		t.Fatalf("final = %q", got)
	}
	if e.fs.CallCount("assistant.threads.setStatus") != 0 || e.fs.CallCount("chat.startStream") != 0 {
		t.Fatal("update mode used native streaming")
	}
	calls := e.fs.Calls("chat.update")
	for i := 1; i < len(calls); i++ {
		if d := calls[i].Time.Sub(calls[i-1].Time); d < 45*time.Millisecond {
			t.Fatalf("two edits %v apart, interval 50ms", d)
		}
	}
	if len(calls) > 30*2/50+3 {
		t.Logf("%d edits for 30 frames", len(calls))
	}
}

func TestThreadFollowUp(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	root := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> first", root, ""))
	e.final("C1", root)

	// A follow-up in the thread, without a mention.
	reply := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U1", "and then?", reply, root))
	e.waitDone("C1", reply)
	msgs := h.messages()
	m := msgs[len(msgs)-1]
	if m.Mentioned || !m.InThread || m.Thread != root || m.ID != "C1:"+reply || m.Text != "and then?" {
		t.Fatalf("follow-up = %+v", m)
	}
	if m.ThreadKey() != msgs[0].ThreadKey() {
		t.Fatalf("thread keys differ: %s vs %s", m.ThreadKey(), msgs[0].ThreadKey())
	}
	e.waitFor("second answer", 5*time.Second, func() bool {
		r := e.fs.Replies("C1", root)
		return len(r) == 2 && r[1].Visible() == "Answer to: and then?"
	})

	// A message in someone else's thread reaches the engine unmentioned, and it stays quiet.
	other, reply2 := e.fs.NextTS(), e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U2", "unrelated", reply2, other))
	e.waitDone("C1", reply2)
	if r := e.fs.Replies("C1", other); len(r) != 0 {
		t.Fatalf("answered in a thread it wasn't part of: %+v", r)
	}
	// A top-level channel message without a mention never reaches the engine.
	top := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U1", "hello all", top, ""))
	time.Sleep(50 * time.Millisecond)
	for _, m := range h.messages() {
		if m.ID == "C1:"+top {
			t.Fatal("top-level channel chatter reached the engine")
		}
	}
	// A mention inside an existing thread starts the bot there.
	t0, t1 := e.fs.NextTS(), e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U2", "<@UBOT> join us", t1, t0))
	if msgs := e.final("C1", t0); msgs[0].Visible() != "Answer to: join us" {
		t.Fatalf("mention in a thread: %+v", msgs)
	}
}

func TestDirectMessages(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("D1", "im", "U1", "hi bot", ts, ""))
	e.waitDone("D1", ts)
	top := e.fs.Replies("D1", "")
	e.waitFor("DM answer", 5*time.Second, func() bool {
		top = e.fs.Replies("D1", "")
		return len(top) == 1 && top[0].Visible() == "Answer to: hi bot"
	})
	m := h.messages()[0]
	if !m.DM || !m.Mentioned || m.InThread || m.Thread != "" || m.ThreadKey() != "slack:"+e.fs.TeamID()+":D1:" {
		t.Fatalf("DM message = %+v (key %s)", m, m.ThreadKey())
	}
	// Top-level DM answers can't stream natively (no thread): post + update.
	if e.fs.CallCount("chat.startStream") != 0 {
		t.Error("top-level DM answer used chat.startStream")
	}

	// A thread inside the DM is its own conversation, and streams.
	th, in := e.fs.NextTS(), e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("D1", "im", "U1", "in a thread", in, th))
	msgs := e.final("D1", th)
	if msgs[0].Visible() != "Answer to: in a thread" || !msgs[0].Streamed {
		t.Fatalf("DM thread answer = %+v", msgs)
	}
	m = h.messages()[1]
	if m.Thread != th || !m.InThread || !m.DM || !m.Mentioned || m.ThreadKey() != "slack:"+e.fs.TeamID()+":D1:"+th {
		t.Fatalf("DM thread message = %+v", m)
	}
}

func TestRedeliveryAndDoubleDeliveryAnsweredOnce(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	ts := e.fs.NextTS()
	mention := slacktest.AppMention("C1", "U1", "<@UBOT> once", ts, "")
	first := e.send(slacktest.EventOptions{}, mention)
	// Slack redelivers the same event (same event_id, a new envelope).
	e.send(slacktest.EventOptions{EventID: first.EventID, RetryAttempt: 1, RetryReason: "timeout"}, mention)
	// And the message.channels event for the same message.
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U1", "<@UBOT> once", ts, ""))
	e.final("C1", ts)
	e.waitFor("both deliveries handled", 5*time.Second, func() bool { return len(h.messages()) >= 2 })
	time.Sleep(50 * time.Millisecond)
	msgs := h.messages()
	if len(msgs) != 2 {
		t.Fatalf("Handle calls = %d, want 2 (mention + redelivery; the message event is left to app_mention)", len(msgs))
	}
	if msgs[0].DedupeKey() != msgs[1].DedupeKey() || msgs[0].DedupeKey() != e.key("C1", ts) {
		t.Fatalf("dedupe keys %q and %q", msgs[0].DedupeKey(), msgs[1].DedupeKey())
	}
	if r := e.fs.Replies("C1", ts); len(r) != 1 {
		t.Fatalf("%d answers", len(r))
	}

	// In a DM both events may come: same key, one answer.
	dts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("D2", "im", "U1", "<@UBOT> hey", dts, ""))
	e.send(slacktest.EventOptions{}, slacktest.AppMention("D2", "U1", "<@UBOT> hey", dts, ""))
	e.final("D2", "")
	e.waitFor("both DM deliveries", 5*time.Second, func() bool { return len(h.messages()) == 4 })
	msgs = h.messages()
	if msgs[2].DedupeKey() != msgs[3].DedupeKey() || msgs[2].ThreadKey() != msgs[3].ThreadKey() || msgs[2].Text != "hey" {
		t.Fatalf("DM double delivery: %+v / %+v", msgs[2], msgs[3])
	}
	time.Sleep(50 * time.Millisecond)
	if r := e.fs.Replies("D2", ""); len(r) != 1 {
		t.Fatalf("%d DM answers", len(r))
	}
}

func TestIgnoresBotsEditsAndOtherSubtypes(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	root := e.fs.NextTS()
	var sends []map[string]any
	own := slacktest.UserMessage("C1", "channel", "UBOT", "my own answer", e.fs.NextTS(), root)
	own["bot_id"] = "BBOT"
	sends = append(sends, own)
	other := slacktest.UserMessage("C1", "channel", "U9", "another bot", e.fs.NextTS(), root)
	other["bot_id"], other["subtype"] = "B9", "bot_message"
	sends = append(sends, other)
	selfNoBotID := slacktest.UserMessage("D1", "im", "UBOT", "me", e.fs.NextTS(), "")
	sends = append(sends, selfNoBotID)
	botMention := slacktest.AppMention("C1", "U9", "<@UBOT> bots talking", e.fs.NextTS(), "")
	botMention["bot_id"] = "B9"
	sends = append(sends, botMention)
	for _, sub := range []string{"message_changed", "message_deleted", "channel_join", "channel_topic", "me_message"} {
		ev := slacktest.UserMessage("D1", "im", "U1", "edited", e.fs.NextTS(), "")
		ev["subtype"] = sub
		sends = append(sends, ev)
	}
	sends = append(sends, map[string]any{"type": "reaction_added", "user": "U1", "reaction": "eyes"})
	for _, ev := range sends {
		e.send(slacktest.EventOptions{}, ev)
	}
	time.Sleep(100 * time.Millisecond)
	if msgs := h.messages(); len(msgs) != 0 {
		t.Fatalf("%d ignored events reached the engine: %+v", len(msgs), msgs)
	}
	if n := len(e.fs.Calls("chat.postMessage", "chat.startStream")); n != 0 {
		t.Fatalf("%d posts for ignored events", n)
	}
}

func TestAllowLists(t *testing.T) {
	h := newScripted()
	e := setup(t, h, func(c *config.Slack) {
		c.AllowedChannels = config.StringList{"C1"}
		c.AllowedUsers = config.StringList{"U1"}
		off := false
		c.AllowDMs = &off
	})
	for _, ev := range []map[string]any{
		slacktest.AppMention("C2", "U1", "<@UBOT> wrong channel", e.fs.NextTS(), ""),
		slacktest.AppMention("C1", "U2", "<@UBOT> wrong user", e.fs.NextTS(), ""),
		slacktest.UserMessage("D1", "im", "U1", "a DM", e.fs.NextTS(), ""),
	} {
		e.send(slacktest.EventOptions{}, ev)
	}
	cmd := e.fs.NewSlashCommand("/models", "", "C2", "U1")
	id, err := e.fs.SendSlashCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("slash ack", 3*time.Second, func() bool { return e.fs.Acked(id) })
	if ack, _ := e.fs.AckOf(id); !strings.Contains(string(ack.Payload), "not available here") {
		t.Errorf("refused slash command ack = %s", ack.Payload)
	}
	ok := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> allowed", ok, ""))
	e.final("C1", ok)
	if msgs := h.messages(); len(msgs) != 1 || msgs[0].Text != "allowed" {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestSlashCommandsAndInThreadCommands(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	cmd := e.fs.NewSlashCommand("/model", "deepseek-r1", "C1", "U2")
	id, err := e.fs.SendSlashCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("slash ack", 3*time.Second, func() bool { return e.fs.Acked(id) })
	e.waitFor("ephemeral reply", 5*time.Second, func() bool { return len(e.fs.Ephemerals()) == 1 })
	eph := e.fs.Ephemerals()[0]
	if eph.Via != "response_url" || eph.ResponseType != "ephemeral" || eph.Text != "*Model* set: `/model deepseek-r1`" ||
		!strings.HasSuffix(cmd.ResponseURL, eph.ResponseID) {
		t.Fatalf("ephemeral = %+v", eph)
	}
	m := h.messages()[0]
	if m.Text != "/model deepseek-r1" || m.Thread != "" || m.InThread || !m.Mentioned || m.Channel != "C1" ||
		m.Workspace != e.fs.TeamID() || m.ID != "cmd:"+cmd.TriggerID || m.User.ID != "U2" || !m.User.Admin || m.User.Name != "Bob Example" {
		t.Fatalf("slash message = %+v", m)
	}
	if m.ThreadKey() != "slack:"+e.fs.TeamID()+":C1:" || m.ChannelKey() != "slack:"+e.fs.TeamID()+":C1" {
		t.Fatalf("keys %s %s", m.ThreadKey(), m.ChannelKey())
	}

	// The same command typed in a thread applies to the thread, answered there.
	root, in := e.fs.NextTS(), e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> /model deepseek-r1", in, root))
	e.waitDone("C1", in)
	m = h.messages()[1]
	if m.Text != "/model deepseek-r1" || m.Thread != root || !m.InThread || !m.Mentioned {
		t.Fatalf("in-thread command = %+v", m)
	}
	e.waitFor("notice in the thread", 3*time.Second, func() bool {
		r := e.fs.Replies("C1", root)
		return len(r) == 1 && r[0].Visible() == "**Model** set: `/model deepseek-r1`"
	})
	if len(e.fs.Ephemerals()) != 1 {
		t.Fatal("in-thread notice was ephemeral")
	}
}

func TestRateLimitedCallsWaitAndRetry(t *testing.T) {
	for _, mode := range []string{"update", "native"} {
		t.Run(mode, func(t *testing.T) {
			h := newScripted()
			h.answer = func(conversation.Message) string { return longAnswer }
			e := setup(t, h, func(c *config.Slack) { c.Streaming = mode })
			method := map[string]string{"update": "chat.update", "native": "chat.stopStream"}[mode]
			e.fs.FailNext(method, slacktest.Failure{RetryAfter: 1})
			e.fs.FailNext("chat.postMessage", slacktest.Failure{RetryAfter: 1})
			ts := e.fs.NextTS()
			e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", ts, ""))
			msgs := e.final("C1", ts)
			if len(msgs) != 1 || msgs[0].Visible() != longAnswer {
				t.Fatalf("final = %q", visible(msgs))
			}
			if e.fs.RateLimited() == 0 {
				t.Fatal("no 429 was served")
			}
			calls := e.fs.Calls(method)
			var limitedAt time.Time
			for _, c := range calls {
				if c.Result == "ratelimited" {
					limitedAt = c.Time
				} else if !limitedAt.IsZero() && c.Time.Sub(limitedAt) < 900*time.Millisecond {
					t.Fatalf("%s retried %v after a 429 with Retry-After: 1", method, c.Time.Sub(limitedAt))
				}
			}
		})
	}
}

func TestFiftyConcurrentAnswersStayWithinBudget(t *testing.T) {
	const answers, channels, scale = 50, 5, 20
	h := newScripted()
	h.frames, h.step = 12, 40*time.Millisecond
	h.answer = func(m conversation.Message) string {
		return strings.TrimSpace(strings.Repeat("Streaming answer for "+m.Text+". ", 12)) // a final render drops trailing blanks
	}
	e := setup(t, h, func(c *config.Slack) {
		c.EditInterval = config.Duration(100 * time.Millisecond)
	}, WithBudgets(DefaultBudgets().Scaled(scale)))
	e.fs.SetRateLimits(&slacktest.RateLimits{Scale: scale})

	type q struct{ ch, ts string }
	var qs []q
	for i := range answers {
		ch := fmt.Sprintf("C%d", i%channels)
		ts := e.fs.NextTS()
		qs = append(qs, q{ch, ts})
		e.send(slacktest.EventOptions{}, slacktest.AppMention(ch, "U1", fmt.Sprintf("<@UBOT> question %d", i), ts, ""))
	}
	e.waitFor("all answers", 25*time.Second, func() bool { return h.finishedCount() == answers })
	edits, native := 0, 0
	for i, x := range qs {
		msgs := e.final(x.ch, x.ts)
		want := h.answer(conversation.Message{Text: fmt.Sprintf("question %d", i)})
		if got := visible(msgs); got != want {
			t.Errorf("answer %d: %q", i, got)
		}
		for _, m := range msgs {
			edits += m.Edits
			if m.Streamed {
				native++
			}
		}
	}
	t.Logf("%d answers (%d streamed natively): %.1f edits/appends per answer, %d calls in all, %d answered 429",
		answers, native, float64(edits)/answers, len(e.fs.Calls()), e.fs.RateLimited())
	if n := e.fs.RateLimited(); n != 0 {
		for _, c := range e.fs.Calls() {
			if c.Result == "ratelimited" {
				t.Logf("429: %s %s at %s", c.Method, c.Params.Get("channel"), c.Time.Format("15:04:05.000"))
			}
		}
		t.Fatalf("%d calls were answered 429", n)
	}
}

func TestLongAnswerSplitsWithoutBreakingCode(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 30000; i++ {
		fmt.Fprintf(&b, "Paragraph %d explains the next piece of code in some detail, with words enough to wrap.\n\n", i)
		fmt.Fprintf(&b, "```go\n")
		for j := range 12 {
			fmt.Fprintf(&b, "\tx%d := compute(%d, %d) // step %d of block %d\n", j, i, j, j, i)
		}
		fmt.Fprintf(&b, "```\n\n")
	}
	text := b.String()
	for _, mode := range []string{"update", "native"} {
		t.Run(mode, func(t *testing.T) {
			h := newScripted()
			h.answer = func(conversation.Message) string { return text }
			h.frames, h.step = 20, 5*time.Millisecond
			e := setup(t, h, func(c *config.Slack) { c.Streaming = mode })
			ts := e.fs.NextTS()
			e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> long", ts, ""))
			msgs := e.final("C1", ts)
			if len(msgs) < 3 {
				t.Fatalf("%d messages for %d characters", len(msgs), len(text))
			}
			for i, m := range msgs {
				v := m.Visible()
				if n := utf8.RuneCountInString(v); n > 12000 {
					t.Errorf("message %d has %d characters", i, n)
				}
				if _, open := conversation.OpenFence(v); open {
					t.Errorf("message %d leaves a code fence open:\n%s", i, v[max(0, len(v)-200):])
				}
				if mode == "native" && !m.Streamed {
					t.Errorf("message %d not streamed", i)
				}
			}
			if got, want := words(visible(msgs)), words(text); got != want {
				t.Fatalf("text changed in splitting (%d vs %d words)", len(strings.Fields(got)), len(strings.Fields(want)))
			}
		})
	}
}

// words is text without fence lines, as words: what splitting must preserve.
func words(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			continue
		}
		out = append(out, strings.Fields(line)...)
	}
	return strings.Join(out, " ")
}

func TestImagesAndFiles(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{1}, 100)...)
	files := []any{
		e.fs.AddFile("cat.png", "image/png", png),
		e.fs.AddFile("notes.md", "text/markdown", []byte("# Notes\nremember this")),
		e.fs.AddFile("main.go", "application/octet-stream", []byte("package main\n")),
		e.fs.AddFile("huge.png", "image/png", bytes.Repeat([]byte{2}, 65<<10)),
		e.fs.AddFile("report.pdf", "application/pdf", []byte("%PDF-1.4")),
	}
	ts := e.fs.NextTS()
	ev := slacktest.AppMention("C1", "U1", "<@UBOT> look", ts, "")
	ev["files"] = files
	e.send(slacktest.EventOptions{}, ev)
	e.waitDone("C1", ts)
	m := h.messages()[0]
	if len(m.Images) != 1 || m.Images[0].URL != "data:image/png;base64,"+base64.StdEncoding.EncodeToString(png) {
		t.Fatalf("images = %v", m.Images)
	}
	if len(m.Files) != 2 || m.Files[0] != (conversation.File{Name: "notes.md", Text: "# Notes\nremember this"}) || m.Files[1].Name != "main.go" {
		t.Fatalf("files = %+v", m.Files)
	}
	if strings.Join(m.Ignored, "|") != "huge.png (larger than 64 KB)|report.pdf" {
		t.Fatalf("ignored = %q", m.Ignored)
	}
	for _, c := range e.fs.Calls("files.download") {
		if c.Result != "ok" || c.Team != e.fs.TeamID() {
			t.Fatalf("download without the bot token: %+v", c)
		}
	}
	if n := e.fs.CallCount("files.download"); n != 3 {
		t.Fatalf("%d downloads, want 3 (the oversized image is skipped by its size)", n)
	}

	// A file shared in a DM (subtype file_share) is read too.
	dts := e.fs.NextTS()
	dm := slacktest.UserMessage("D1", "im", "U1", "", dts, "")
	dm["subtype"], dm["files"] = "file_share", []any{e.fs.AddFile("a.txt", "text/plain", []byte("hello"))}
	e.send(slacktest.EventOptions{}, dm)
	e.waitDone("D1", dts)
	if m := h.messages()[1]; len(m.Files) != 1 || m.Files[0].Text != "hello" {
		t.Fatalf("file_share = %+v", m)
	}
}

// Slack's disconnect, then a connection dropped without a word: the
// adapter reconnects after each and keeps answering.
func TestReconnects(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	refresh := func() { e.fs.Disconnect(200 * time.Millisecond) }
	for i, drop := range []func(){refresh, e.fs.DropConnections} {
		drop()
		e.waitFor("reconnect", 10*time.Second, func() bool { return e.fs.Connections() >= 1 && e.fs.CallCount("apps.connections.open") >= 2+i })
		e.waitFor("ready again", 5*time.Second, e.a.Ready)
		ts := e.fs.NextTS()
		e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> still there?", ts, ""))
		if msgs := e.final("C1", ts); msgs[0].Visible() != "Answer to: still there?" {
			t.Fatalf("after reconnect %d: %+v", i, msgs)
		}
	}
}

// When Slack replaces a connection, the next one opens before the old one
// closes: there is never a moment with no connection for an event to take,
// and an event sent while both are open, or just after the old one closed,
// is answered.
func TestRefreshKeepsAConnection(t *testing.T) {
	h := newScripted()
	e := setup(t, h, nil)
	for round := 1; round <= 3; round++ {
		opens := e.fs.CallCount("apps.connections.open")
		e.fs.Disconnect(300 * time.Millisecond)
		e.waitFor("the next connection", 5*time.Second, func() bool {
			return e.fs.CallCount("apps.connections.open") == opens+1 && e.fs.Connections() == 2
		})
		during := e.fs.NextTS()
		e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> during", during, ""))
		e.waitFor("the old connection closed", 5*time.Second, func() bool { return e.fs.Connections() == 1 })
		after := e.fs.NextTS()
		e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> after", after, ""))
		for ts, want := range map[string]string{during: "Answer to: during", after: "Answer to: after"} {
			if msgs := e.final("C1", ts); msgs[0].Visible() != want {
				t.Fatalf("round %d: %+v", round, msgs)
			}
		}
		if g := e.fs.Gaps(); g != 0 {
			t.Fatalf("round %d: %d moments without a connection", round, g)
		}
		if !e.a.Ready() {
			t.Fatalf("round %d: not ready", round)
		}
	}
}

// A disconnect for too many connections is not answered with another one
// at once: the adapter backs off, then connects again.
func TestTooManyWebsockets(t *testing.T) {
	e := setup(t, newScripted(), nil)
	opens := e.fs.CallCount("apps.connections.open")
	if err := e.fs.SendEnvelope(map[string]any{"type": "disconnect", "reason": "too_many_websockets"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := e.fs.CallCount("apps.connections.open"); n != opens {
		t.Fatalf("reconnected at once: %d opens", n-opens)
	}
	e.waitFor("the connection after the backoff", 5*time.Second, func() bool {
		return e.fs.CallCount("apps.connections.open") == opens+1 && e.fs.Connections() == 1
	})
	e.waitFor("ready again", 5*time.Second, e.a.Ready)
}

// An app token Slack refuses stops the adapter with an error that says
// what to fix; no retry would mend it.
func TestRefusedAppToken(t *testing.T) {
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	cfg := config.Slack{BotToken: config.Secret(fs.BotToken()), AppToken: "xapp-1-wrong", APIURL: fs.APIURL(),
		ReplyInThreads: "mentioned", Streaming: "auto", EditInterval: config.Duration(20 * time.Millisecond)}
	a, err := New(cfg, config.Limits{}, newScripted(), WithLogger(newTestLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "slack.app_token") || ctx.Err() != nil {
		t.Fatalf("Run with a refused app token: %v", err)
	}
}

// ---- HTTP mode ----

func httpEnv(t *testing.T, h *scripted) (*env, *httptest.Server) {
	e := setup(t, h, func(c *config.Slack) {
		c.AppToken = ""
		c.SigningSecret = "s3cret"
	})
	srv := httptest.NewServer(e.a.HTTPHandler())
	t.Cleanup(srv.Close)
	return e, srv
}

func httpPost(t *testing.T, url, ctype string, body []byte, hdr http.Header) (int, string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

func TestHTTPEventsAPI(t *testing.T) {
	h := newScripted()
	h.step = 50 * time.Millisecond
	e, srv := httpEnv(t, h)
	url := srv.URL + "/slack/events"

	challenge := []byte(`{"token":"x","challenge":"c-123","type":"url_verification"}`)
	code, body, _ := httpPost(t, url, "application/json", challenge, slacktest.Sign("s3cret", time.Now(), challenge))
	if code != 200 || !strings.Contains(body, `"challenge":"c-123"`) {
		t.Fatalf("url_verification: %d %s", code, body)
	}
	for name, hdr := range map[string]http.Header{
		"forged":  slacktest.Sign("wrong", time.Now(), challenge),
		"stale":   slacktest.Sign("s3cret", time.Now().Add(-6*time.Minute), challenge),
		"future":  slacktest.Sign("s3cret", time.Now().Add(6*time.Minute), challenge),
		"missing": {},
	} {
		if code, _, _ := httpPost(t, url, "application/json", challenge, hdr); code != http.StatusUnauthorized {
			t.Errorf("%s signature: %d, want 401", name, code)
		}
	}
	if code, _, _ := httpPost(t, url, "application/json", append(challenge, ' '), slacktest.Sign("s3cret", time.Now(), challenge)); code != http.StatusUnauthorized {
		t.Errorf("altered body: %d, want 401", code)
	}

	ts := e.fs.NextTS()
	o := slacktest.EventOptions{}
	ev := e.fs.EventCallback(&o, slacktest.AppMention("C1", "U1", "<@UBOT> over http", ts, ""))
	code, _, took := httpPost(t, url, "application/json", ev, slacktest.Sign("s3cret", time.Now(), ev))
	if code != 200 || took > time.Second {
		t.Fatalf("event: %d after %v", code, took)
	}
	msgs := e.final("C1", ts)
	if msgs[0].Visible() != "Answer to: over http" {
		t.Fatalf("answer = %+v", msgs)
	}
	// Slack's retry of the same event: acknowledged, deduped by key.
	hdr := slacktest.Sign("s3cret", time.Now(), ev)
	hdr.Set("X-Slack-Retry-Num", "1")
	hdr.Set("X-Slack-Retry-Reason", "http_timeout")
	if code, _, _ := httpPost(t, url, "application/json", ev, hdr); code != 200 {
		t.Fatalf("retry: %d", code)
	}
	e.waitFor("retry handled", 3*time.Second, func() bool { return len(h.messages()) == 2 })
	if m := h.messages(); m[0].DedupeKey() != m[1].DedupeKey() {
		t.Fatal("retry got another dedupe key")
	}
}

func TestHTTPSlashCommand(t *testing.T) {
	h := newScripted()
	e, srv := httpEnv(t, h)
	cmd := e.fs.NewSlashCommand("/model", "deepseek-r1", "C1", "U1")
	form := []byte(cmd.Form().Encode())
	code, body, took := httpPost(t, srv.URL+"/slack/commands", "application/x-www-form-urlencoded", form, slacktest.Sign("s3cret", time.Now(), form))
	if code != 200 || body != "" || took > time.Second {
		t.Fatalf("command: %d %q after %v", code, body, took)
	}
	e.waitFor("ephemeral reply", 5*time.Second, func() bool { return len(e.fs.Ephemerals()) == 1 })
	if eph := e.fs.Ephemerals()[0]; eph.Via != "response_url" || !strings.Contains(eph.Text, "/model deepseek-r1") {
		t.Fatalf("ephemeral = %+v", eph)
	}
	if m := h.messages()[0]; m.Text != "/model deepseek-r1" || m.Thread != "" || m.InThread {
		t.Fatalf("message = %+v", m)
	}
	if code, _, _ := httpPost(t, srv.URL+"/slack/commands", "application/x-www-form-urlencoded", form, slacktest.Sign("other", time.Now(), form)); code != 401 {
		t.Fatalf("forged command: %d", code)
	}
	// Without response_url the notice goes through chat.postEphemeral.
	cmd2 := e.fs.NewSlashCommand("/help", "", "C1", "U1")
	cmd2.ResponseURL = ""
	form = []byte(cmd2.Form().Encode())
	httpPost(t, srv.URL+"/slack/commands", "application/x-www-form-urlencoded", form, slacktest.Sign("s3cret", time.Now(), form))
	e.waitFor("postEphemeral", 5*time.Second, func() bool { return len(e.fs.Ephemerals()) == 2 })
	if eph := e.fs.Ephemerals()[1]; eph.Via != "chat.postEphemeral" || eph.User != "U1" || eph.Channel != "C1" {
		t.Fatalf("ephemeral = %+v", eph)
	}
}

func TestShutdownWaitsForAnswers(t *testing.T) {
	h := newScripted()
	h.frames, h.step = 10, 30*time.Millisecond
	fs := slacktest.New(slacktest.Options{})
	defer fs.Close()
	cfg := config.Slack{BotToken: config.Secret(fs.BotToken()), AppToken: config.Secret(fs.AppToken()), APIURL: fs.APIURL(), EditInterval: config.Duration(10 * time.Millisecond), MaxConcurrent: 64}
	a, err := New(cfg, config.Limits{}, h, WithLogger(newTestLogger(t)), WithShutdownGrace(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := slacktest.WaitFor(wctx, a.Ready); err != nil {
		t.Fatal("not ready")
	}
	ts := fs.NextTS()
	if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> slow", ts, "")); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	if err := slacktest.WaitFor(wctx, func() bool { return len(h.messages()) == 1 }); err != nil {
		t.Fatal(err)
	}
	once.Do(cancel)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if a.Ready() {
		t.Fatal("still ready after Run returned")
	}
	if r := fs.Replies("C1", ts); len(r) != 1 || r[0].Visible() != "Answer to: slow" || r[0].Streaming {
		t.Fatalf("answer in flight at shutdown = %+v", r)
	}
}

func TestNativeStreamBreakingMidAnswerContinuesByPost(t *testing.T) {
	h := newScripted()
	h.answer = func(conversation.Message) string { return longAnswer }
	h.frames, h.step = 8, 30*time.Millisecond
	// Without agent sessions: in one, Slack's Stop button ends streams so
	// (see TestAgentSessionStopButton).
	e := setup(t, h, func(c *config.Slack) { c.AgentSessions = new(false) })
	// The second append fails as if Slack had ended the stream.
	e.fs.FailNext("chat.appendStream", slacktest.Failure{}, slacktest.Failure{Error: "message_not_in_streaming_state"})
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", ts, ""))
	msgs := e.final("C1", ts)
	if len(msgs) != 2 || !msgs[0].Streamed || msgs[1].Streamed {
		t.Fatalf("thread = %+v", msgs)
	}
	if got := msgs[0].Visible() + msgs[1].Visible(); got != longAnswer {
		t.Fatalf("streamed + posted = %q", got)
	}
	// The workspace still streams: the failure was not "unavailable".
	ts2 := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> again", ts2, ""))
	if msgs := e.final("C1", ts2); len(msgs) != 1 || !msgs[0].Streamed || msgs[0].Visible() != longAnswer {
		t.Fatalf("next answer = %+v", msgs)
	}
}

func TestTransientStopFailureIsRetriedInPlace(t *testing.T) {
	h := newScripted()
	h.answer = func(conversation.Message) string { return longAnswer }
	h.frames, h.step = 4, 30*time.Millisecond
	e := setup(t, h, nil)
	e.fs.FailNext("chat.stopStream", slacktest.Failure{Status: 502})
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", ts, ""))
	msgs := e.final("C1", ts)
	if len(msgs) != 1 || !msgs[0].Streamed || msgs[0].Visible() != longAnswer {
		t.Fatalf("thread = %+v", msgs)
	}
	if n := e.fs.CallCount("chat.stopStream"); n != 2 {
		t.Fatalf("chat.stopStream called %d times, want a failure and one retry", n)
	}
}

func TestWholeAnswerInOneFramePostsInsteadOfStreaming(t *testing.T) {
	h := newScripted()
	h.frames = -1
	h.note = "Stopped."
	e := setup(t, h, nil)
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> quick", ts, ""))
	msgs := e.final("C1", ts)
	if len(msgs) != 1 || msgs[0].Streamed || msgs[0].Visible() != "Answer to: quick\n\n> ⚠️ Stopped." {
		t.Fatalf("thread = %+v", msgs)
	}
	if e.fs.CallCount("chat.startStream") != 0 || e.fs.CallCount("chat.update") != 0 || e.fs.CallCount("chat.postMessage") != 1 {
		t.Fatalf("calls: start %d update %d post %d", e.fs.CallCount("chat.startStream"), e.fs.CallCount("chat.update"), e.fs.CallCount("chat.postMessage"))
	}
}

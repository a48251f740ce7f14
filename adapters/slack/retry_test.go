package slack

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// engineFor is the real engine on an embedded Redis and a fake Ark whose
// answers are numbered takes: "take N on <question>".
func engineFor(t *testing.T) (*conversation.Engine, *arktest.Server) {
	t.Helper()
	ark := arktest.New()
	t.Cleanup(ark.Close)
	enginetest.Takes(ark)
	return enginetest.New(t, ark, conversation.WithRenderInterval(conversation.PlatformSlack, 20*time.Millisecond)), ark
}

// retryButton returns the Retry button of m, failing the test if it has none.
func retryButton(t *testing.T, m slacktest.Message) slacktest.Button {
	t.Helper()
	for _, b := range m.Buttons() {
		if b.ActionID == retryActionID {
			return b
		}
	}
	t.Fatalf("no Retry button on %q (blocks %s)", m.Visible(), m.Blocks)
	return slacktest.Button{}
}

// answers waits until the thread (or, with thread "", the channel's top
// level) holds n finished bot messages and returns them.
func answers(t *testing.T, fs *slacktest.Server, channel, thread string, n int) []slacktest.Message {
	t.Helper()
	var got []slacktest.Message
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := slacktest.WaitFor(ctx, func() bool {
		got = got[:0]
		msgs := fs.Messages(channel)
		if thread != "" {
			msgs = fs.Replies(channel, thread)
		}
		for _, m := range msgs {
			if m.User != fs.BotUserID() {
				continue
			}
			if m.Streaming || strings.HasSuffix(m.Visible(), cursorMark) || strings.Contains(m.Visible(), "Thinking…") {
				return false
			}
			got = append(got, m)
		}
		return len(got) == n
	})
	if err != nil {
		var vis []string
		for _, m := range got {
			vis = append(vis, m.Visible())
		}
		t.Fatalf("want %d finished answers, have %q", n, vis)
	}
	return got
}

func TestRetryButtonInAThread(t *testing.T) {
	engine, ark := engineFor(t)
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	fs.AddUser(slacktest.User{ID: "U2", Name: "bob"})
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> first question", ts, ""))
	a1 := answers(t, fs, "C1", ts, 1)[0]
	if a1.Visible() != "take 1 on first question" || !a1.Streamed {
		t.Fatalf("first answer %+v", a1)
	}
	if b := retryButton(t, a1); b.Value != "C1:"+ts {
		t.Fatalf("Retry names %q, want the question C1:%s", b.Value, ts)
	}

	// A double click: two clicks (each its own trigger) moments apart.
	for range 2 {
		clickOver(t, fs, fs.BlockAction("U2", a1, retryActionID))
	}
	got := answers(t, fs, "C1", ts, 2)
	a2 := got[1]
	if !strings.HasPrefix(a2.Visible(), "take 2 on first question") || !strings.Contains(a2.Visible(), "A new answer to: “first question”") {
		t.Fatalf("the new answer: %q", a2.Visible())
	}
	retryButton(t, a2)
	time.Sleep(200 * time.Millisecond) // a second retry would be under way by now
	if n := len(ark.Requests()); n != 2 {
		t.Fatalf("%d requests to Ark: a double click asked twice", n)
	}

	// A newer question; then the older answer's Retry is refused privately.
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> second question", fs.NextTS(), ts))
	answers(t, fs, "C1", ts, 3)
	clickOver(t, fs, fs.BlockAction("U1", a2, retryActionID))
	e.waitFor("a private refusal", 5*time.Second, func() bool {
		for _, eph := range fs.Ephemerals() {
			if eph.User == "U1" && eph.ThreadTS == ts && strings.Contains(eph.Text, "Only the latest answer") {
				return true
			}
		}
		return false
	})
	if len(answers(t, fs, "C1", ts, 3)) != 3 || len(ark.Requests()) != 3 {
		t.Fatal("a superseded answer was redone")
	}
}

// clickOver sends a click over Socket Mode and waits for its ack.
func clickOver(t *testing.T, fs *slacktest.Server, payload map[string]any) {
	t.Helper()
	sent, err := fs.SendInteractive(payload)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := fs.WaitAck(ctx, sent.EnvelopeID); err != nil {
		t.Fatalf("click not acked: %v", err)
	}
}

// TestRetryButtonOverHTTP: in HTTP mode a click arrives as a signed form
// on slack.interactivity_path; an unsigned one is refused. In a top-level
// DM the answer is posted and edited (update mode), and the clicked
// message loses its button; the new answer doesn't wait for that removal,
// made slow here (as a spent chat.update budget would).
func TestRetryButtonOverHTTP(t *testing.T) {
	engine, _ := engineFor(t)
	const slow = 1500 * time.Millisecond
	var slowTS atomic.Value // the clicked answer's ts, once known
	slowTS.Store("")
	fs := slacktest.New(slacktest.Options{OnCall: func(c slacktest.Call) {
		if c.Method == "chat.update" && c.Params.Get("ts") == slowTS.Load() { // the fake answers when this returns
			time.Sleep(slow)
		}
	}})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	a, _ := start(t, fs, engine, func(c *config.Slack) { c.AppToken, c.SigningSecret = "", "s3cret" })
	hs := httptest.NewServer(a.HTTPHandler())
	t.Cleanup(hs.Close)
	srv := hs.URL
	e := &env{t: t, fs: fs}

	ev := fs.EventCallback(&slacktest.EventOptions{}, slacktest.UserMessage("D1", "im", "U1", "hello there", fs.NextTS(), ""))
	if code, _, _ := httpPost(t, srv+"/slack/events", "application/json", ev, slacktest.Sign("s3cret", time.Now(), ev)); code != 200 {
		t.Fatalf("event: %d", code)
	}
	a1 := answers(t, fs, "D1", "", 1)[0]
	if a1.Streamed || a1.Visible() != "take 1 on hello there" {
		t.Fatalf("answer %+v", a1)
	}
	retryButton(t, a1)

	payload, _ := json.Marshal(fs.BlockAction("U1", a1, retryActionID))
	form := []byte(url.Values{"payload": {string(payload)}}.Encode())
	if code, _, _ := httpPost(t, srv+"/slack/interactivity", "application/x-www-form-urlencoded", form, slacktest.Sign("wrong", time.Now(), form)); code != 401 {
		t.Fatalf("badly signed click: %d, want 401", code)
	}
	slowTS.Store(a1.TS)
	clicked := time.Now()
	if code, _, _ := httpPost(t, srv+"/slack/interactivity", "application/x-www-form-urlencoded", form, slacktest.Sign("s3cret", time.Now(), form)); code != 200 {
		t.Fatalf("click: %d", code)
	}
	got := answers(t, fs, "D1", "", 2)
	if d := time.Since(clicked); d >= slow {
		t.Errorf("the new answer took %v: it waited for the button's removal", d)
	}
	if !strings.HasPrefix(got[1].Visible(), "take 2 on hello there") {
		t.Fatalf("the new answer: %q", got[1].Visible())
	}
	retryButton(t, got[1])
	e.waitFor("the button off the clicked answer", 5*time.Second, func() bool {
		m, _ := fs.Message("D1", a1.TS)
		return len(m.Buttons()) == 0 && m.Visible() == a1.Visible()
	})
}

func TestRetryID(t *testing.T) {
	a := retryID("1700000000.000100", "1700000010.100000", "trig-1")
	if b := retryID("1700000000.000100", "1700000010.900000", "trig-2"); a != b {
		t.Errorf("a double click: %q and %q, want one ID", a, b)
	}
	if b := retryID("1700000000.000100", "1700000031.000000", "trig-3"); a == b {
		t.Errorf("a click 20 s later has the same ID %q", a)
	}
	if b := retryID("1700000000.000200", "1700000010.100000", "trig-4"); a == b {
		t.Errorf("another message's button has the same ID %q", a)
	}
	if b := retryID("", "1700000010.100000", "trig-5"); b != "trig-5" {
		t.Errorf("without the message's ts: %q, want the trigger", b)
	}
}

// !stop typed in the thread, without a mention, ends the thread's first
// answer while it streams, keeping what it wrote, and says so in the thread.
func TestStopInAThread(t *testing.T) {
	engine, ark := engineFor(t)
	ark.Enqueue(arktest.Response{Content: arktest.SplitWords("one two three four five six seven eight nine ten"), PerChunk: 150 * time.Millisecond})
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> count slowly", ts, ""))
	bot := func() []slacktest.Message {
		var out []slacktest.Message
		for _, m := range fs.Replies("C1", ts) {
			if m.User == fs.BotUserID() {
				out = append(out, m)
			}
		}
		return out
	}
	e.waitFor("the answer streaming", 5*time.Second, func() bool {
		r := bot()
		return len(r) == 1 && r[0].Streaming && strings.Contains(r[0].Visible(), "one")
	})
	e.send(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U1", "!stop", fs.NextTS(), ts))
	e.waitFor("the answer stopped and the notice", 5*time.Second, func() bool {
		r := bot()
		return len(r) == 2 && !r[0].Streaming && strings.Contains(r[0].Visible(), "Stopped.") && strings.Contains(r[1].Visible(), "Stopped the answer in progress")
	})
	if a := bot()[0].Visible(); !strings.HasPrefix(a, "one") || strings.Contains(a, "ten") {
		t.Fatalf("stopped answer %q", a)
	}
	if n := len(ark.Requests()); n != 1 {
		t.Fatalf("%d requests to Ark: !stop was taken for a question", n)
	}
}

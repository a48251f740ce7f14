package discord

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
)

// TestWithRealEngine runs the adapter against the real engine, an embedded
// Redis and a fake Ark: the seams between adapter and core.
func TestWithRealEngine(t *testing.T) {
	ark := arktest.New(arktest.WithTiming(5*time.Millisecond, 5*time.Millisecond))
	t.Cleanup(ark.Close)
	engine := enginetest.New(t, ark, conversation.WithRenderInterval(conversation.PlatformDiscord, 50*time.Millisecond))
	hs := start(t, setup{engine: engine})

	final := func(channel, id string) []discordtest.Message {
		t.Helper()
		var msgs []discordtest.Message
		err := hs.fake.WaitFor(10*time.Second, func() bool {
			msgs = hs.answerTo(channel, id)
			if len(msgs) == 0 {
				return false
			}
			last := msgs[len(msgs)-1]
			return !strings.Contains(last.Content, cursor) && last.Content != placeholder && !hasStop(last)
		})
		if err != nil {
			t.Fatalf("no finished answer to %s: %q", id, texts(msgs))
		}
		return msgs
	}

	u1 := hs.mention(alice, channelID, "hello engine")
	if got := final(channelID, u1.ID); got[0].Content != "You said: hello engine" {
		t.Fatalf("answer = %q", texts(got))
	}
	// A reply continues the conversation: Ark sees the earlier turns.
	u2 := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "second", ReplyTo: hs.answerTo(channelID, u1.ID)[0].ID})
	if got := final(channelID, u2.ID); got[0].Content != "You said: second" {
		t.Fatalf("answer = %q", texts(got))
	}
	reqs := ark.Requests()
	if n := len(reqs[len(reqs)-1].Messages); n < 4 {
		t.Fatalf("second request had %d messages; want the first exchange in context", n)
	}
	// A redelivered message is answered once (dedupe in Redis).
	hs.post(discordtest.MessageSpec{ID: u2.ID})
	final(otherChan, hs.mention(alice, otherChan, "sentinel").ID)
	if got := hs.answerTo(channelID, u2.ID); len(got) != 1 {
		t.Fatalf("redelivery answered again: %q", texts(got))
	}
	// A thread follow-up where the bot holds no conversation is ignored.
	f := hs.post(discordtest.MessageSpec{ChannelID: threadID, Author: alice, Content: "people chatting"})
	final(otherChan, hs.mention(alice, otherChan, "sentinel").ID)
	if got := hs.answerTo(threadID, f.ID); len(got) != 0 {
		t.Fatalf("unaddressed thread message answered: %q", texts(got))
	}
	// /model switches, ephemerally.
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice,
		Command: "model", Options: []discordtest.CommandOption{{Name: "name", Type: 3, Value: "deepseek-r1"}}})
	var orig discordtest.Message
	err := hs.fake.WaitFor(5*time.Second, func() bool {
		orig, _ = hs.fake.OriginalResponse(ref.ID)
		return orig.Content != ""
	})
	if err != nil || !orig.Ephemeral() || !strings.Contains(orig.Content, "deepseek-r1") {
		t.Fatalf("/model answer = %+v (%v)", orig, err)
	}
	// /ask streams through the engine too.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: otherChan, User: bob,
		Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "via slash"}}})
	err = hs.fake.WaitFor(5*time.Second, func() bool { _, ok := hs.fake.OriginalResponse(ref.ID); return ok })
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := hs.fake.OriginalResponse(ref.ID)
	if got := final(otherChan, echo.ID); got[0].Content != "You said: via slash" {
		t.Fatalf("/ask answer = %q", texts(got))
	}

	// The Stop button stops the engine's generation and keeps what was written.
	ark.Enqueue(arktest.Response{Content: arktest.SplitWords(strings.Repeat("slowly streaming ", 300)), PerChunk: 10 * time.Millisecond})
	u3 := hs.mention(alice, channelID, "go on and on")
	var live discordtest.Message
	err = hs.fake.WaitFor(10*time.Second, func() bool {
		a := hs.answerTo(channelID, u3.ID)
		if len(a) > 0 && len(a[0].CustomIDs()) == 1 && strings.HasPrefix(a[0].Content, "slowly") {
			live = a[0]
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, User: alice,
		CustomID: live.CustomIDs()[0], MessageID: live.ID})
	got := final(channelID, u3.ID)
	last := got[len(got)-1].Content
	if !strings.HasPrefix(got[0].Content, "slowly") || !strings.Contains(last, "\n-# ") || len(strings.Join(texts(got), "")) > 300*17 {
		t.Fatalf("stopped answer = %q", texts(got))
	}
	t.Logf("stopped answer ends with %q", last[max(0, len(last)-80):])
}

// TestRetryButton: a finished answer carries Retry; a click takes the
// button off at once and the engine answers the same question again, as a
// reply to the old answer, which then carries Retry itself. After a newer
// question, an older answer's Retry is refused in a private notice.
func TestRetryButton(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	enginetest.Takes(ark)
	hs := start(t, setup{engine: enginetest.New(t, ark)})

	// finished waits for the answer replying to id to be done and returns it.
	finished := func(id string) discordtest.Message {
		t.Helper()
		var a []discordtest.Message
		if err := hs.fake.WaitFor(10*time.Second, func() bool {
			a = hs.answerTo(channelID, id)
			return len(a) == 1 && !hasStop(a[0]) && a[0].Content != placeholder
		}); err != nil {
			t.Fatalf("no finished answer to %s: %q", id, texts(a))
		}
		return a[0]
	}
	q1 := hs.mention(alice, channelID, "first question")
	a1 := finished(q1.ID)
	if a1.Content != "take 1 on first question" || !slices.Equal(a1.CustomIDs(), answerButtons(q1.ID)) {
		t.Fatalf("first answer %q with buttons %v", a1.Content, a1.CustomIDs())
	}

	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, GuildID: guildID,
		User: bob, CustomID: a1.CustomIDs()[0], MessageID: a1.ID})
	if cb, err := hs.fake.WaitCallback(ref.ID, 5*time.Second); err != nil || cb.Type != discordtest.CallbackUpdateMessage {
		t.Fatalf("the click's callback: %+v, %v", cb, err)
	}
	a1b := finished(a1.ID)
	if !strings.HasPrefix(a1b.Content, "take 2 on first question") || !strings.Contains(a1b.Content, "A new answer to: “first question”") ||
		!slices.Equal(a1b.CustomIDs(), answerButtons(q1.ID)) {
		t.Fatalf("the new answer %q with buttons %v", a1b.Content, a1b.CustomIDs())
	}
	if old, _ := hs.fake.Message(a1.ID); len(old.CustomIDs()) != 0 || old.Content != a1.Content {
		t.Errorf("the clicked answer: %q with buttons %v; want its text, without the button", old.Content, old.CustomIDs())
	}

	// A reply to the new answer continues the same conversation: Ark sees
	// the first question once, with the second take only.
	q2 := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "second question", ReplyTo: a1b.ID})
	finished(q2.ID)
	reqs := ark.Requests()
	var sent []string
	for _, m := range reqs[len(reqs)-1].Messages[1:] {
		sent = append(sent, m.Text)
	}
	if want := []string{"first question", "take 2 on first question", "second question"}; !slices.Equal(sent, want) {
		t.Fatalf("context after a retry: %q, want %q", sent, want)
	}

	// Retry on the superseded answer: a private notice, no new answer.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, GuildID: guildID,
		User: alice, CustomID: a1b.CustomIDs()[0], MessageID: a1b.ID})
	var notice discordtest.Message
	if err := hs.fake.WaitFor(5*time.Second, func() bool {
		for _, m := range hs.fake.Messages(channelID) {
			if m.InteractionID == ref.ID && m.Ephemeral() {
				notice = m
				return true
			}
		}
		return false
	}); err != nil || !strings.Contains(notice.Content, "Only the latest answer") {
		t.Fatalf("notice %q, %v", notice.Content, err)
	}
	if len(ark.Requests()) != len(reqs) || len(hs.answerTo(channelID, a1b.ID)) != 0 {
		t.Fatalf("a superseded answer was redone: %d requests, was %d; answers to it %q", len(ark.Requests()), len(reqs), texts(hs.answerTo(channelID, a1b.ID)))
	}
}

// answerButtons are the CustomIDs under a finished answer to question by
// the default model: Retry, 👍 and 👎.
func answerButtons(question string) []string {
	return []string{retryPrefix + question, voteUpPrefix + "doubao", voteDownPrefix + "doubao"}
}

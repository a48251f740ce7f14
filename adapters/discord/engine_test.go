package discord

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/fakeark"
	"github.com/arkbot/arkbot/internal/fakediscord"
)

// TestWithRealEngine runs the adapter against the real engine, an embedded
// Redis and a fake Ark: the seams between adapter and core.
func TestWithRealEngine(t *testing.T) {
	mr, err := embedredis.Start()
	if err != nil {
		t.Fatal(err)
	}
	rdb := mr.Client()
	t.Cleanup(func() { rdb.Close(); mr.Close() })
	ark := fakeark.New(fakeark.WithTiming(5*time.Millisecond, 5*time.Millisecond))
	t.Cleanup(ark.Close)
	cfg, err := config.Parse([]byte(`
ark: {api_key: k}
models:
  - {name: doubao, id: doubao-seed-1-6-250615, vision: true}
  - {name: deepseek-r1, id: deepseek-r1-250528}
`))
	if err != nil {
		t.Fatal(err)
	}
	client, err := arkclient.New(ark.URL, "k", arkclient.WithRetries(1, time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	store := conversation.NewStore(rdb, conversation.StoreOptions{Prefix: "e2e", TTL: time.Hour, MaxTurns: 20,
		LockTTL: 5 * time.Second, LockWait: 10 * time.Second, DedupeTTL: time.Hour})
	engine := conversation.NewEngine(cfg, store, client, conversation.WithLogger(slog.New(slog.DiscardHandler)),
		conversation.WithRenderInterval(conversation.PlatformDiscord, 50*time.Millisecond))
	hs := start(t, setup{engine: engine})

	final := func(channel, id string) []fakediscord.Message {
		t.Helper()
		var msgs []fakediscord.Message
		err := hs.fake.WaitFor(10*time.Second, func() bool {
			msgs = hs.answerTo(channel, id)
			if len(msgs) == 0 {
				return false
			}
			last := msgs[len(msgs)-1]
			return !strings.Contains(last.Content, cursor) && last.Content != placeholder && len(last.CustomIDs()) == 0
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
	u2 := hs.post(fakediscord.MessageSpec{ChannelID: channelID, Author: alice, Content: "second", ReplyTo: hs.answerTo(channelID, u1.ID)[0].ID})
	if got := final(channelID, u2.ID); got[0].Content != "You said: second" {
		t.Fatalf("answer = %q", texts(got))
	}
	reqs := ark.Requests()
	if n := len(reqs[len(reqs)-1].Messages); n < 4 {
		t.Fatalf("second request had %d messages; want the first exchange in context", n)
	}
	// A redelivered message is answered once (dedupe in Redis).
	hs.post(fakediscord.MessageSpec{ID: u2.ID})
	final(otherChan, hs.mention(alice, otherChan, "sentinel").ID)
	if got := hs.answerTo(channelID, u2.ID); len(got) != 1 {
		t.Fatalf("redelivery answered again: %q", texts(got))
	}
	// A thread follow-up where the bot holds no conversation is ignored.
	f := hs.post(fakediscord.MessageSpec{ChannelID: threadID, Author: alice, Content: "people chatting"})
	final(otherChan, hs.mention(alice, otherChan, "sentinel").ID)
	if got := hs.answerTo(threadID, f.ID); len(got) != 0 {
		t.Fatalf("unaddressed thread message answered: %q", texts(got))
	}
	// /model switches, ephemerally.
	ref := hs.interact(fakediscord.InteractionSpec{Type: fakediscord.InteractionApplicationCommand, ChannelID: channelID, User: alice,
		Command: "model", Options: []fakediscord.CommandOption{{Name: "name", Type: 3, Value: "deepseek-r1"}}})
	var orig fakediscord.Message
	err = hs.fake.WaitFor(5*time.Second, func() bool {
		orig, _ = hs.fake.OriginalResponse(ref.ID)
		return orig.Content != ""
	})
	if err != nil || !orig.Ephemeral() || !strings.Contains(orig.Content, "deepseek-r1") {
		t.Fatalf("/model answer = %+v (%v)", orig, err)
	}
	// /ask streams through the engine too.
	ref = hs.interact(fakediscord.InteractionSpec{Type: fakediscord.InteractionApplicationCommand, ChannelID: otherChan, User: bob,
		Command: "ask", Options: []fakediscord.CommandOption{{Name: "prompt", Type: 3, Value: "via slash"}}})
	err = hs.fake.WaitFor(5*time.Second, func() bool { _, ok := hs.fake.OriginalResponse(ref.ID); return ok })
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := hs.fake.OriginalResponse(ref.ID)
	if got := final(otherChan, echo.ID); got[0].Content != "You said: via slash" {
		t.Fatalf("/ask answer = %q", texts(got))
	}

	// The Stop button stops the engine's generation and keeps what was written.
	ark.Enqueue(fakeark.Response{Content: fakeark.SplitWords(strings.Repeat("slowly streaming ", 300)), PerChunk: 10 * time.Millisecond})
	u3 := hs.mention(alice, channelID, "go on and on")
	var live fakediscord.Message
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
	hs.interact(fakediscord.InteractionSpec{Type: fakediscord.InteractionMessageComponent, ChannelID: channelID, User: alice,
		CustomID: live.CustomIDs()[0], MessageID: live.ID})
	got := final(channelID, u3.ID)
	last := got[len(got)-1].Content
	if !strings.HasPrefix(got[0].Content, "slowly") || !strings.Contains(last, "\n-# ") || len(strings.Join(texts(got), "")) > 300*17 {
		t.Fatalf("stopped answer = %q", texts(got))
	}
	t.Logf("stopped answer ends with %q", last[max(0, len(last)-80):])
}

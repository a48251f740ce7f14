package discord

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/transport"
)

// slowReads delays every GET the adapter makes (channel look-ups,
// reply-chain fetches, attachment downloads) and counts how many are in
// flight at once.
type slowReads struct {
	base      http.RoundTripper
	delay     time.Duration
	now, peak atomic.Int64
	total     atomic.Int64
}

func (s *slowReads) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		n := s.now.Add(1)
		defer s.now.Add(-1)
		s.total.Add(1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		time.Sleep(s.delay)
	}
	return s.base.RoundTrip(r)
}

// A flood of MESSAGE_CREATE events, each with an attachment to download
// and in a channel the adapter must look up, holds no more downloads and
// look-ups in flight than discord.max_concurrent: each event takes a work
// slot before any I/O.
func TestEventFloodBoundsIOByMaxConcurrent(t *testing.T) {
	const workers, events = 3, 40
	reads := &slowReads{base: transport.New(64), delay: 20 * time.Millisecond}
	hs := start(t, setup{
		cfg:  func(c *config.Discord) { c.MaxConcurrent = workers },
		opts: []Option{WithHTTPClient(&http.Client{Transport: reads, Timeout: 20 * time.Second})},
		handler: func(h *scriptHandler) {
			h.answer = func(m conversation.Message) string { return fmt.Sprintf("%d file(s)", len(m.Files)) }
			h.frames = 0
		},
	})
	before := reads.total.Load()
	bot := hs.fake.Bot()
	var ids []string
	for i := range events {
		ch := fmt.Sprintf("41000000000000%04d", i) // not in the adapter's cache: looked up over REST
		hs.fake.AddChannel(discordtest.Channel{ID: ch, GuildID: guildID, Name: "c" + ch, Type: discordtest.ChannelText})
		att := hs.fake.AddAttachment(fmt.Sprintf("f%d.txt", i), "text/plain", []byte("hello"))
		m := hs.post(discordtest.MessageSpec{ChannelID: ch, Author: alice, Content: "<@" + bot.ID + "> read this",
			Mentions: []discordtest.User{bot}, Attachments: []discordtest.Attachment{att}})
		ids = append(ids, m.ID)
	}
	for _, id := range ids {
		if m := hs.h.waitCall(t, id); len(m.Files) != 1 || m.Files[0].Text != "hello" {
			t.Fatalf("message %s: files %+v, ignored %v", id, m.Files, m.Ignored)
		}
	}
	if n := reads.total.Load() - before; n < events {
		t.Fatalf("%d reads for %d events: the flood did not exercise the look-ups and downloads", n, events)
	}
	// Each job makes its reads one at a time; the constant allows for a
	// read of the adapter's own outside the events (none expected).
	if peak := reads.peak.Load(); peak > workers+1 {
		t.Fatalf("%d reads in flight at once, want at most %d (discord.max_concurrent)", peak, workers)
	}
}

// With every worker busy and no queue, interactions are still acknowledged
// at once: a /ask is told the bot is busy, and the running answer's Stop
// button works; once the worker is free, /ask is answered.
func TestInteractionsWhileBusy(t *testing.T) {
	hs := start(t, setup{
		cfg:  func(c *config.Discord) { c.MaxConcurrent = 1 },
		opts: []Option{WithWorkQueue(0)},
		handler: func(h *scriptHandler) {
			h.answer = func(conversation.Message) string { return strings.Repeat("streaming words ", 200) }
			h.frames, h.interval = 400, 20*time.Millisecond
		},
	})
	u := hs.mention(alice, channelID, "talk forever")
	m := hs.h.waitCall(t, u.ID)
	var live discordtest.Message
	if err := hs.fake.WaitFor(5*time.Second, func() bool {
		a := hs.answerTo(channelID, u.ID)
		if len(a) > 0 && len(a[0].CustomIDs()) == 1 {
			live = a[0]
			return true
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}

	ask := func(prompt string) discordtest.InteractionRef {
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID,
			User: alice, Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: prompt}}})
		if cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second); err != nil || cb.Type != discordtest.CallbackDeferredChannelMessage {
			t.Fatalf("/ask %q: callback %+v, %v", prompt, cb, err)
		}
		return ref
	}
	busy := ask("while busy")
	if err := hs.fake.WaitFor(5*time.Second, func() bool {
		r, ok := hs.fake.OriginalResponse(busy.ID)
		return ok && strings.Contains(r.Content, "busy")
	}); err != nil {
		r, _ := hs.fake.OriginalResponse(busy.ID)
		t.Fatalf("the refused /ask's response = %q", r.Content)
	}
	if n := len(hs.h.callsFor(busy.ID)); n != 0 {
		t.Fatalf("the refused /ask reached the engine %d times", n)
	}

	stop := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, User: alice,
		CustomID: live.CustomIDs()[0], MessageID: live.ID})
	if cb, err := hs.fake.WaitCallback(stop.ID, 3*time.Second); err != nil || cb.Type != discordtest.CallbackDeferredUpdate {
		t.Fatalf("Stop while busy: %+v, %v", cb, err)
	}
	hs.h.waitDone(t, m.DedupeKey())

	// The worker may still be winding up the stopped answer: ask until
	// an /ask is not refused.
	hs.h.set(nil)
	for range 20 {
		later := ask("later")
		refused := false
		if err := hs.fake.WaitFor(5*time.Second, func() bool {
			r, _ := hs.fake.OriginalResponse(later.ID)
			refused = strings.Contains(r.Content, "busy")
			return refused || len(hs.h.callsFor(later.ID)) == 1
		}); err != nil {
			t.Fatal(err)
		}
		if !refused {
			hs.h.waitDone(t, hs.h.waitCall(t, later.ID).DedupeKey())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("/ask still refused once the worker was free")
}

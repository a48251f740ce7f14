package discord

import (
	"fmt"
	"net/http"
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

package discord

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

// catching is a scriptHandler keeping each answer's Reply by dedupe key.
type catching struct {
	*scriptHandler
	mu      sync.Mutex
	replies map[string]conversation.Reply
}

func (c *catching) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	c.mu.Lock()
	c.replies[m.DedupeKey()] = r
	c.mu.Unlock()
	return c.scriptHandler.Handle(ctx, m, r)
}

// checkFinished checks that m shows text and the restart note, with the
// Retry button for question instead of Stop.
func checkFinished(t *testing.T, m discordtest.Message, text, question string) {
	t.Helper()
	if !strings.Contains(m.Content, text) || !strings.Contains(m.Content, conversation.OrphanNote) || strings.Contains(m.Content, cursor) {
		t.Errorf("orphan's message = %q", m.Content)
	}
	if ids := m.CustomIDs(); !slices.Equal(ids, []string{retryPrefix + question}) {
		t.Errorf("orphan's buttons = %q, want Retry for %s", ids, question)
	}
}

// FinishOrphan edits the answer's message at its location to show what
// was shown, the note and Retry; without a location it posts them.
func TestFinishOrphan(t *testing.T) {
	sh := newScriptHandler()
	stalled, release := make(chan struct{}), make(chan struct{})
	sh.beforeFinal = func() { close(stalled); <-release } // the replica dies here
	c := &catching{scriptHandler: sh, replies: map[string]conversation.Reply{}}
	hs := start(t, setup{engine: c})
	defer close(release)

	q := hs.mention(alice, channelID, "go")
	select {
	case <-stalled:
	case <-time.After(5 * time.Second):
		t.Fatal("the answer never streamed")
	}
	msgs := hs.answerTo(channelID, q.ID)
	if len(msgs) != 1 || !hasStop(msgs[0]) {
		t.Fatalf("answer in progress = %+v", msgs)
	}
	c.mu.Lock()
	r := c.replies["discord:"+guildID+":"+q.ID]
	c.mu.Unlock()
	loc, ok := r.(conversation.Located).Location()
	if want := "c:" + channelID + ":" + msgs[0].ID; !ok || loc != want {
		t.Fatalf("location = %q, %v; want %q", loc, ok, want)
	}
	o := conversation.Orphan{Platform: conversation.PlatformDiscord, Workspace: guildID, Channel: channelID, Thread: q.ID,
		Asker: alice.ID, Question: q.ID, Location: loc, Shown: "Answer to: go"}
	if err := hs.a.FinishOrphan(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got, _ := hs.fake.Message(msgs[0].ID)
	checkFinished(t, got, "Answer to: go", q.ID)
	if n := len(hs.answerTo(channelID, q.ID)); n != 1 {
		t.Errorf("%d answer messages after finishing, want the one", n)
	}

	// Without a location: in the thread channel, or replying to the chain's root.
	root := hs.post(discordtest.MessageSpec{ChannelID: otherChan, Author: alice, Content: "a chain's root"})
	for _, tc := range []struct{ name, thread, in, replyTo string }{
		{"thread", threadID, threadID, ""},
		{"reply chain", root.ID, otherChan, root.ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := conversation.Orphan{Platform: conversation.PlatformDiscord, Workspace: guildID, Channel: otherChan, Thread: tc.thread,
				Asker: alice.ID, Question: "700000000000000009"}
			if err := hs.a.FinishOrphan(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			var posted []discordtest.Message
			for _, m := range hs.fake.Messages(tc.in) {
				if m.Author.ID == hs.fake.Bot().ID && strings.Contains(m.Content, conversation.OrphanNote) {
					posted = append(posted, m)
				}
			}
			if len(posted) != 1 || posted[0].ReferenceID != tc.replyTo {
				t.Fatalf("bot messages in %s: %+v, want the note replying to %q", tc.in, posted, tc.replyTo)
			}
			checkFinished(t, posted[0], "", o.Question)
		})
	}
}

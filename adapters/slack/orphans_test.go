package slack

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// catching is scripted, keeping each answer's Reply by dedupe key.
type catching struct {
	*scripted
	mu      sync.Mutex
	replies map[string]conversation.Reply
}

func (c *catching) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	c.mu.Lock()
	c.replies[m.DedupeKey()] = r
	c.mu.Unlock()
	return c.scripted.Handle(ctx, m, r)
}

func (c *catching) location(t *testing.T, key string) string {
	t.Helper()
	c.mu.Lock()
	r := c.replies[key]
	c.mu.Unlock()
	loc, ok := r.(conversation.Located).Location()
	if !ok {
		t.Fatal("the answer has no location")
	}
	return loc
}

// orphanEnv starts a fake Slack and an adapter whose answers stop before
// their final frame until gate is sent to (a second time).
func orphanEnv(t *testing.T, streaming string) (*env, *catching) {
	h := newScripted()
	h.gate = make(chan struct{})
	h.answer = func(conversation.Message) string { return "Partial answer" }
	c := &catching{scripted: h, replies: map[string]conversation.Reply{}}
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example"})
	a, _ := start(t, fs, c, func(cfg *config.Slack) { cfg.Streaming = streaming })
	t.Cleanup(func() { close(h.gate) }) // lets the dead answer's goroutine end
	return &env{t: t, fs: fs, a: a, h: h}, c
}

// checkFinished checks that m shows text, the restart note and a Retry
// button for question, and no cursor.
func checkFinished(t *testing.T, m slacktest.Message, text, question string) {
	t.Helper()
	v := m.Visible()
	if !strings.Contains(v, text) || !strings.Contains(v, conversation.OrphanNote) || strings.Contains(v, cursorMark) || m.Streaming {
		t.Errorf("orphan's message = %q (streaming %v)", v, m.Streaming)
	}
	if b := m.Buttons(); len(b) != 1 || b[0].ActionID != retryActionID || b[0].Value != question {
		t.Errorf("orphan's buttons = %+v, want Retry for %s", b, question)
	}
}

// In update mode, FinishOrphan edits the answer's message at its location
// to show what was shown, the note and Retry.
func TestFinishOrphanEditsTheAnswer(t *testing.T) {
	e, c := orphanEnv(t, "update")
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> go", ts, ""))
	e.h.gate <- struct{}{} // after Begin
	e.waitFor("text with a cursor", 3*time.Second, func() bool {
		r := e.fs.Replies("C1", ts)
		return len(r) == 1 && strings.HasSuffix(r[0].Visible(), cursorMark) && strings.Contains(r[0].Visible(), "Partial")
	})
	msg := e.fs.Replies("C1", ts)[0]
	loc := c.location(t, e.key("C1", ts))
	if loc != "u:0:"+msg.TS {
		t.Fatalf("location = %q, want u:0:%s", loc, msg.TS)
	}
	o := conversation.Orphan{Platform: conversation.PlatformSlack, Workspace: e.fs.TeamID(), Channel: "C1", Thread: ts,
		Asker: "U1", Question: ts, Location: loc, Shown: "Partial answer"}
	if err := e.a.FinishOrphan(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got := e.fs.Replies("C1", ts)
	if len(got) != 1 {
		t.Fatalf("%d messages in the thread, want the answer's one", len(got))
	}
	checkFinished(t, got[0], "Partial answer", ts)
}

// With native streaming, FinishOrphan stops the open stream with the note
// and Retry.
func TestFinishOrphanStopsTheStream(t *testing.T) {
	e, c := orphanEnv(t, "native")
	ts := e.fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> go", ts, ""))
	e.h.gate <- struct{}{} // after Begin
	e.waitFor("a stream", 3*time.Second, func() bool {
		r := e.fs.Replies("C1", ts)
		return len(r) == 1 && r[0].Streaming
	})
	msg := e.fs.Replies("C1", ts)[0]
	loc := c.location(t, e.key("C1", ts))
	if loc != "s:"+msg.TS {
		t.Fatalf("location = %q, want s:%s", loc, msg.TS)
	}
	o := conversation.Orphan{Platform: conversation.PlatformSlack, Workspace: e.fs.TeamID(), Channel: "C1", Thread: ts,
		Asker: "U1", Question: ts, Location: loc, Shown: msg.Visible()}
	if err := e.a.FinishOrphan(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got := e.fs.Replies("C1", ts)
	if len(got) != 1 {
		t.Fatalf("%d messages in the thread, want the answer's one", len(got))
	}
	checkFinished(t, got[0], msg.Visible(), ts) // what streamed stays
}

// Without a location, FinishOrphan posts the note and Retry in the thread.
func TestFinishOrphanWithoutLocationPostsTheNote(t *testing.T) {
	e, _ := orphanEnv(t, "update")
	ts := e.fs.NextTS()
	o := conversation.Orphan{Platform: conversation.PlatformSlack, Workspace: e.fs.TeamID(), Channel: "C1", Thread: ts,
		Asker: "U1", Question: ts}
	if err := e.a.FinishOrphan(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	got := e.fs.Replies("C1", ts)
	if len(got) != 1 {
		t.Fatalf("%d messages in the thread, want the note", len(got))
	}
	checkFinished(t, got[0], "", ts)
}

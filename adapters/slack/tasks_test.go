package slack

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

func TestTaskText(t *testing.T) {
	for in, want := range map[string]string{"Searching the web…": "Searching the web", " Reading\n pages... ": "Reading pages", "…": "Working", "": "Working"} {
		if got := taskTitle(in); got != want {
			t.Errorf("taskTitle(%q) = %q, want %q", in, got, want)
		}
	}
	got := taskSources([]conversation.Source{
		{Title: "Ark\n news", URL: "https://news.example.com/a?b=1&c=2"},
		{Title: "", URL: "http://example.org/x"},
		{Title: "script", URL: "javascript:alert(1)"},
		{Title: "relative", URL: "/a"},
		{Title: "spaced", URL: "https://example.com/a b"},
	})
	if len(got) != 2 || got[0].Text != "Ark news" || got[0].URL != "https://news.example.com/a?b=1&c=2" || got[1].Text != "example.org" || got[0].Type != "url" {
		t.Errorf("taskSources = %+v", got)
	}
	many := make([]conversation.Source, 15)
	for i := range many {
		many[i] = conversation.Source{Title: strings.Repeat("t", 200), URL: "https://example.com/"}
	}
	if got := taskSources(many); len(got) != maxTaskSources || utf8.RuneCountInString(got[0].Text) != maxSourceText {
		t.Errorf("15 long sources: %d, first %q", len(got), got[0].Text)
	}
}

// FuzzTaskText: a task's title and sources, built from what the model and
// the web pages it found say, are what Slack accepts: valid UTF-8 on one
// line within its bounds, and http(s) URLs with a text.
func FuzzTaskText(f *testing.F) {
	f.Add("Searching the web…", "Ark | news", "https://news.example.com/a")
	f.Add("", "", "http://x")
	f.Add("\xff…", "\n\t", "https://h/\x00")
	f.Fuzz(func(t *testing.T, activity, title, link string) {
		tt := taskTitle(activity)
		if tt == "" || !utf8.ValidString(tt) || strings.ContainsAny(tt, "\n\r\t") || utf8.RuneCountInString(tt) > maxTaskTitle {
			t.Fatalf("taskTitle(%q) = %q", activity, tt)
		}
		for _, s := range taskSources([]conversation.Source{{Title: title, URL: link}}) {
			u, err := url.Parse(s.URL)
			if s.Type != "url" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
				s.Text == "" || !utf8.ValidString(s.Text) || strings.ContainsAny(s.Text, "\n\r\t") || utf8.RuneCountInString(s.Text) > maxSourceText {
				t.Fatalf("taskSources(%q, %q) = %+v", title, link, s)
			}
		}
	})
}

// taskReply is a reply in a new thread of e's workspace, closed when the test ends.
func taskReply(t *testing.T, e *env) (*reply, string) {
	ts := e.fs.NextTS()
	r := e.a.newReply(replyTarget{team: e.fs.TeamID(), channel: "C1", thread: ts, user: "U1"}, newTestLogger(t))
	t.Cleanup(r.close)
	return r, ts
}

// TestTaskCardFailed: a search that ends without any text leaves its card
// failed, with the note under it.
func TestTaskCardFailed(t *testing.T) {
	e := setup(t, newScripted(), nil)
	r, ts := taskReply(t, e)
	ctx := context.Background()
	if err := r.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Render(ctx, conversation.Frame{Activity: "Searching the web…"}); err != nil {
		t.Fatal(err)
	}
	msgs := e.fs.Replies("C1", ts)
	if len(msgs) != 1 || !msgs[0].Streaming || len(msgs[0].Tasks) != 1 || msgs[0].Tasks[0].Status != "in_progress" || msgs[0].Visible() != "" {
		t.Fatalf("while searching: %+v", msgs)
	}
	if err := r.Render(ctx, conversation.Frame{Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark is unreachable."}); err != nil {
		t.Fatal(err)
	}
	m, _ := e.fs.Message("C1", msgs[0].TS)
	if task, _ := m.Task(taskID); m.Streaming || task.Status != "error" || !strings.Contains(m.Visible(), "Ark is unreachable.") {
		t.Fatalf("after the failure: %+v", m)
	}
}

// TestTaskCardOnALongAnswer: an answer longer than one message completes
// the card with the first message; the sources are listed at the end.
func TestTaskCardOnALongAnswer(t *testing.T) {
	e := setup(t, newScripted(), nil, WithMessageLimit(200))
	r, ts := taskReply(t, e)
	ctx := context.Background()
	if err := r.Render(ctx, conversation.Frame{Activity: "Searching the web…"}); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("A sentence of the answer. ", 20)
	src := []conversation.Source{{Title: "Ark news", URL: "https://news.example.com/a"}}
	if err := r.Render(ctx, conversation.Frame{Text: text, Final: true, Outcome: conversation.OutcomeDone, Sources: src}); err != nil {
		t.Fatal(err)
	}
	msgs := e.fs.Replies("C1", ts)
	if len(msgs) < 2 || !strings.HasSuffix(msgs[len(msgs)-1].Visible(), "1. [Ark news](https://news.example.com/a)") {
		t.Fatalf("thread %q", visible(msgs))
	}
	task, ok := msgs[0].Task(taskID)
	if !ok || task.Status != "complete" || msgs[0].Streaming {
		t.Errorf("first message's card %+v", msgs[0])
	}
	for _, m := range msgs[1:] {
		if len(m.Tasks) != 0 || m.Streaming {
			t.Errorf("a later message %+v", m)
		}
	}
}

// TestTaskSourcesWhenStopIsLate: when chat.stopStream is refused, the
// append of the rest carries the card's completion with its sources.
func TestTaskSourcesWhenStopIsLate(t *testing.T) {
	e := setup(t, newScripted(), nil)
	r, ts := taskReply(t, e)
	ctx := context.Background()
	if err := r.Render(ctx, conversation.Frame{Activity: "Searching the web…"}); err != nil {
		t.Fatal(err)
	}
	e.fs.FailNext("chat.stopStream", slacktest.Failure{RetryAfter: 1})
	src := []conversation.Source{{Title: "Ark news", URL: "https://news.example.com/a"}}
	if err := r.Render(ctx, conversation.Frame{Text: "Fresh facts.", Final: true, Outcome: conversation.OutcomeDone, Sources: src}); err != nil {
		t.Fatal(err)
	}
	msgs := e.fs.Replies("C1", ts)
	if len(msgs) != 1 {
		t.Fatalf("thread %q", visible(msgs))
	}
	task, _ := msgs[0].Task(taskID)
	if task.Status != "complete" || len(task.Sources) != 1 || !strings.HasPrefix(msgs[0].Visible(), "Fresh facts.") {
		t.Errorf("message %+v", msgs[0])
	}
	msgs = e.final("C1", ts)
	if len(msgs) != 1 || msgs[0].Streaming {
		t.Errorf("not stopped later: %+v", msgs)
	}
}

// TestTaskCardOfAnOrphan: an answer whose replica died while it searched
// is finished from its location with its card marked failed, not left in
// progress.
func TestTaskCardOfAnOrphan(t *testing.T) {
	e := setup(t, newScripted(), nil)
	r, ts := taskReply(t, e)
	ctx := context.Background()
	if err := r.Render(ctx, conversation.Frame{Activity: "Searching the web…"}); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Location()
	if !ok || !strings.HasPrefix(loc, "t:") || !strings.HasSuffix(loc, ":Searching the web") {
		t.Fatalf("location %q", loc)
	}
	o := conversation.Orphan{Platform: conversation.PlatformSlack, Workspace: e.fs.TeamID(), Channel: "C1", Thread: ts, Asker: "U1", Location: loc}
	if err := e.a.FinishOrphan(ctx, o); err != nil {
		t.Fatal(err)
	}
	msgs := e.fs.Replies("C1", ts)
	if len(msgs) != 1 || msgs[0].Streaming || !strings.Contains(msgs[0].Visible(), conversation.OrphanNote) {
		t.Fatalf("thread %+v", msgs)
	}
	if task, _ := msgs[0].Task(taskID); task.Status != "error" || task.Title != "Searching the web" {
		t.Errorf("card %+v", task)
	}
}

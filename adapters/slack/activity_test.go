package slack

import (
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

func TestSourcesInSlackLinkSyntax(t *testing.T) {
	f := render.WithSources(conversation.Frame{Text: "Fresh.", Final: true,
		Sources: []conversation.Source{{Title: "Ark | news", URL: "https://news.example.com/a?b=1&c=2"}}}, render.SourcesMarkdown)
	got := MarkdownToMrkdwn(f.Text)
	if want := "*Sources*\n1. <https://news.example.com/a?b=1&amp;c=2|Ark news>"; !strings.HasSuffix(got, want) {
		t.Errorf("mrkdwn:\n%s", got)
	}
	if lowerFirst("Searching the web…") != "searching the web…" {
		t.Error("lowerFirst")
	}
}

// TestSearchedAnswerWithTheRealEngine: a question in a thread is answered
// after a web search, shown as a task card in progress on the stream
// (before any text), complete with its URL sources at the end, the
// sources listed under the answer too; the next turn in the thread
// continues Ark's chain.
func TestSearchedAnswerWithTheRealEngine(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	engine := enginetest.NewSearching(t, ark, conversation.WithRenderInterval(conversation.PlatformSlack, 20*time.Millisecond))
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ark.Enqueue(arktest.Response{
		Searches: []arktest.Search{{Query: "ark", Sources: []arktest.Citation{{Title: "Ark news", URL: "https://news.example.com/a"}}}},
		Content:  []string{"Fresh ", "facts."}, PerChunk: 30 * time.Millisecond,
	})
	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> what's new?", ts, ""))
	a := answers(t, fs, "C1", ts, 1)[0]
	if want := "Fresh facts.\n\n**Sources**\n1. [Ark news](https://news.example.com/a)"; a.Visible() != want {
		t.Fatalf("answer %q, want %q", a.Visible(), want)
	}
	task, ok := a.Task(taskID)
	if !ok || len(a.Tasks) != 1 || task.Title != "Searching the web" || task.Status != "complete" || a.TaskDisplayMode != "timeline" ||
		len(task.Sources) != 1 || task.Sources[0] != (slacktest.TaskSource{URL: "https://news.example.com/a", Text: "Ark news"}) {
		t.Fatalf("task card %+v in %+v", task, a)
	}
	starts := fs.Calls("chat.startStream")
	if len(starts) != 1 || starts[0].Params.Get("markdown_text") != "" ||
		!strings.Contains(starts[0].Params.Get("chunks"), `"status":"in_progress"`) || strings.Contains(starts[0].Params.Get("chunks"), "markdown_text") {
		t.Errorf("the stream did not start with the task in progress alone: %+v", starts)
	}
	for _, s := range fs.Statuses() {
		if s.Status == "is searching the web…" {
			t.Errorf("the search showed as the status too: %+v", fs.Statuses())
		}
	}
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> more?", fs.NextTS(), ts))
	answers(t, fs, "C1", ts, 2)
	if req := ark.Requests()[1]; req.PreviousResponseID == "" || len(req.Messages) != 1 || req.WebSearch == nil {
		t.Errorf("second turn: previous %q, %d messages, tool %v", req.PreviousResponseID, len(req.Messages), req.WebSearch)
	}
}

// TestSearchStatusWithoutNativeStreaming: in a workspace without native
// streaming the search shows as the assistant status, and the answer,
// posted and edited, lists its sources.
func TestSearchStatusWithoutNativeStreaming(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	engine := enginetest.NewSearching(t, ark, conversation.WithRenderInterval(conversation.PlatformSlack, 20*time.Millisecond))
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	fs.SetNativeStreaming(false)
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ark.Enqueue(arktest.Response{
		Searches: []arktest.Search{{Query: "ark", Sources: []arktest.Citation{{Title: "Ark news", URL: "https://news.example.com/a"}}}},
		Content:  []string{"Fresh ", "facts."}, PerChunk: 30 * time.Millisecond,
	})
	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> what's new?", ts, ""))
	a := answers(t, fs, "C1", ts, 1)[0]
	if want := "Fresh facts.\n\n**Sources**\n1. [Ark news](https://news.example.com/a)"; a.Visible() != want || a.Streamed || len(a.Tasks) != 0 {
		t.Fatalf("answer %+v, want %q posted", a, want)
	}
	searching := false
	for _, s := range fs.Statuses() {
		searching = searching || s.Status == "is searching the web…"
	}
	if !searching {
		t.Errorf("no search status among %+v", fs.Statuses())
	}
}

// TestSearchStatusWhenNoStreamCanStart: of two searched answers in a
// workspace with one chat.stopStream to spare, one claims it and shows its
// search as a task card; the other, which no stream could end, shows the
// search as the assistant status and posts its answer. Both list their
// sources.
func TestSearchStatusWhenNoStreamCanStart(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	engine := enginetest.NewSearching(t, ark, conversation.WithRenderInterval(conversation.PlatformSlack, 20*time.Millisecond))
	fs := slacktest.New(slacktest.Options{})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	budgets := DefaultBudgets().Scaled(fastScale)
	budgets["chat.stopStream"] = Budget{PerMinute: 1, Burst: 1}
	start(t, fs, engine, nil, WithBudgets(budgets))
	e := &env{t: t, fs: fs}

	threads := []string{fs.NextTS(), fs.NextTS()}
	for _, ts := range threads {
		ark.Enqueue(arktest.Response{
			Searches: []arktest.Search{{Query: "ark", Sources: []arktest.Citation{{Title: "Ark news", URL: "https://news.example.com/a"}}}},
			Content:  []string{"Fresh ", "facts."}, PerChunk: 60 * time.Millisecond,
		})
		e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> what's new?", ts, ""))
	}
	cards, statuses := 0, 0
	for _, ts := range threads {
		a := answers(t, fs, "C1", ts, 1)[0]
		if want := "Fresh facts.\n\n**Sources**\n1. [Ark news](https://news.example.com/a)"; a.Visible() != want {
			t.Errorf("answer %q, want %q", a.Visible(), want)
		}
		searching := false
		for _, s := range fs.Statuses() {
			searching = searching || s.ThreadTS == ts && s.Status == "is searching the web…"
		}
		task, ok := a.Task(taskID)
		switch {
		case ok && task.Status == "complete" && len(task.Sources) == 1 && !searching:
			cards++
		case !ok && !a.Streamed && searching:
			statuses++
		default:
			t.Errorf("thread %s: task %+v (streamed %v), search status %v", ts, task, a.Streamed, searching)
		}
	}
	if cards != 1 || statuses != 1 {
		t.Errorf("%d task cards and %d search statuses, want one each", cards, statuses)
	}
}

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
// after a web search, with the assistant status saying so and the sources
// under the answer; the next turn in the thread continues Ark's chain.
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
	searching := false
	for _, s := range fs.Statuses() {
		searching = searching || s.Status == "is searching the web…"
	}
	if !searching {
		t.Errorf("no search status among %+v", fs.Statuses())
	}
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> more?", fs.NextTS(), ts))
	answers(t, fs, "C1", ts, 2)
	if req := ark.Requests()[1]; req.PreviousResponseID == "" || len(req.Messages) != 1 || req.WebSearch == nil {
		t.Errorf("second turn: previous %q, %d messages, tool %v", req.PreviousResponseID, len(req.Messages), req.WebSearch)
	}
}

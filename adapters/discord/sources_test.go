package discord

import (
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
)

func TestSourcesSuppressEmbeds(t *testing.T) {
	f := render.WithSources(conversation.Frame{Text: "Fresh.", Final: true,
		Sources: []conversation.Source{{Title: "News", URL: "https://news.example.com/a"}}}, render.SourcesDiscord)
	pieces := render.Layout(style, f)
	if got := strings.Join(pieces, "\n"); !strings.Contains(got, "1. [News](<https://news.example.com/a>)") {
		t.Errorf("layout:\n%s", got)
	}
	if got := render.Layout(style, conversation.Frame{Activity: "Searching the web…"}); len(got) != 1 || !strings.Contains(got[0], "🔎") {
		t.Errorf("activity: %q", got)
	}
}

// TestSearchedAnswerWithTheRealEngine: a mention is answered after a web
// search, with its sources as links that embed nothing.
func TestSearchedAnswerWithTheRealEngine(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	ark.Enqueue(arktest.Response{
		Searches: []arktest.Search{{Query: "ark", Sources: []arktest.Citation{{Title: "Ark news", URL: "https://news.example.com/a"}}}},
		Content:  []string{"Fresh ", "facts."},
	})
	hs := start(t, setup{engine: enginetest.NewSearching(t, ark, conversation.WithRenderInterval(conversation.PlatformDiscord, 50*time.Millisecond))})
	u := hs.mention(alice, channelID, "what's new?")
	var msgs []discordtest.Message
	err := hs.fake.WaitFor(10*time.Second, func() bool {
		msgs = hs.answerTo(channelID, u.ID)
		return len(msgs) == 1 && strings.Contains(msgs[0].Content, "Sources")
	})
	if want := "Fresh facts.\n\n**Sources**\n1. [Ark news](<https://news.example.com/a>)"; err != nil || msgs[0].Content != want {
		t.Fatalf("answer %q (%v), want %q", texts(msgs), err, want)
	}
	if req := ark.Requests()[0]; req.WebSearch == nil || req.Path != arktest.ResponsesPath {
		t.Errorf("request to %s with tool %v", req.Path, req.WebSearch)
	}
}

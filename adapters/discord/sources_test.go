package discord

import (
	"strings"
	"testing"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
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

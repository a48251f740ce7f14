package slack

import (
	"strings"
	"testing"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
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

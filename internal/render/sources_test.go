package render

import (
	"strings"
	"testing"

	"github.com/arkbot/arkbot/conversation"
)

func TestWithSources(t *testing.T) {
	sources := []conversation.Source{
		{Title: "Ark [beta] *launch*", URL: "https://news.example.com/a (1)"},
		{Title: "", URL: "https://blog.example.com/post"},
	}
	final := conversation.Frame{Text: "The answer.\n", Final: true, Sources: sources}
	for _, tc := range []struct {
		format SourceFormat
		want   string
	}{
		{SourcesMarkdown, "The answer.\n\n**Sources**\n1. [Ark beta launch](https://news.example.com/a%20%281%29)\n2. [blog.example.com](https://blog.example.com/post)"},
		{SourcesDiscord, "The answer.\n\n**Sources**\n1. [Ark beta launch](<https://news.example.com/a%20%281%29>)\n2. [blog.example.com](<https://blog.example.com/post>)"},
		{SourcesFootnotes, "The answer.\n\nSources:\n[1] Ark beta launch: https://news.example.com/a (1)\n[2] blog.example.com: https://blog.example.com/post"},
	} {
		if got := WithSources(final, tc.format).Text; got != tc.want {
			t.Errorf("format %d:\n%s\nwant\n%s", tc.format, got, tc.want)
		}
	}
	// Only final frames with text get them; the frame passed in is unchanged.
	for _, f := range []conversation.Frame{
		{Text: "streaming", Sources: sources},
		{Final: true, Outcome: conversation.OutcomeFailed, Note: "no", Sources: sources},
		{Text: "no sources", Final: true},
	} {
		if got := WithSources(f, SourcesMarkdown); got.Text != f.Text {
			t.Errorf("%+v became %q", f, got.Text)
		}
	}
	if final.Text != "The answer.\n" {
		t.Error("WithSources changed its argument")
	}
	many := final
	many.Sources = nil
	for range 15 {
		many.Sources = append(many.Sources, conversation.Source{Title: strings.Repeat("long ", 40), URL: "https://x.example"})
	}
	got := WithSources(many, SourcesMarkdown).Text
	if n := strings.Count(got, "](https://x.example)"); n != maxSources || !strings.Contains(got, "…](") {
		t.Errorf("more than %d sources listed:\n%s", maxSources, got)
	}
}

func TestLayoutShowsTheActivity(t *testing.T) {
	s := Style{Limit: 100, Cursor: " ▍", Placeholder: "…", NoteSep: "\n", Note: func(_ conversation.Outcome, n string, _ bool) string { return n }}
	if got := Layout(s, conversation.Frame{Activity: "Searching the web…"}); len(got) != 1 || got[0] != "🔎 _Searching the web…_" {
		t.Errorf("before text: %q", got)
	}
	if got := Layout(s, conversation.Frame{Text: "Some text", Activity: "Searching the web…"}); len(got) != 1 || got[0] != "Some text ▍\n🔎 _Searching the web…_" {
		t.Errorf("with text: %q", got)
	}
	// No room under a full piece: the line is left out rather than overflow.
	full := strings.Repeat("x", 97)
	if got := Layout(s, conversation.Frame{Text: full, Activity: "Searching the web…"}); strings.Contains(got[len(got)-1], "🔎") {
		t.Errorf("activity overflowed: %q", got)
	}
	if got := Layout(s, conversation.Frame{Text: "Done", Final: true, Activity: "Searching the web…"}); got[0] != "Done" {
		t.Errorf("final frame: %q", got)
	}
}

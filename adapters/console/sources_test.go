package console

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/conversation"
)

// searching answers after a web search, citing a source.
type searching struct{ scripted }

func (s *searching) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	r.Begin(ctx)
	r.Render(ctx, conversation.Frame{Activity: "Searching the web…", Model: "doubao"})
	r.Render(ctx, conversation.Frame{Text: "Fresh.", Model: "doubao"})
	return r.Render(ctx, conversation.Frame{Text: "Fresh.", Model: "doubao", Final: true,
		Sources: []conversation.Source{{Title: "News", URL: "https://news.example.com/a"}}})
}

func TestSourcesAsFootnotes(t *testing.T) {
	var out bytes.Buffer
	if err := New(&searching{}, strings.NewReader("news?\n"), &out).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "> news?\ndoubao: Fresh.\n\nSources:\n[1] News: https://news.example.com/a\n"
	if out.String() != want {
		t.Fatalf("output:\n%q\nwant\n%q", out.String(), want)
	}
}

func TestInteractiveShowsTheSearch(t *testing.T) {
	var out bytes.Buffer
	New(&searching{}, strings.NewReader("news?\n/quit\n"), &out, Interactive(true)).Run(context.Background())
	s := out.String()
	search := strings.Index(s, dim+"🔎 Searching the web…")
	if search < 0 || search > strings.Index(s, "Fresh.") || !strings.Contains(s, "[1] News: https://news.example.com/a") {
		t.Errorf("interactive output:\n%q", s)
	}
}

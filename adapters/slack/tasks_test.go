package slack

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/arkbot/arkbot/conversation"
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

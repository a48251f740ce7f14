package slack

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Titles come from what people type: one line, within Slack's limits,
// valid UTF-8 whatever the question.
func FuzzTitles(f *testing.F) {
	for _, s := range []string{"", "What is a monad?", "  many   spaces\nsecond line", strings.Repeat("é", 300), strings.Repeat("word ", 60), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for name, c := range map[string]struct {
			got string
			max int
		}{"session": {sessionTitle(q), maxSessionTitle}, "thread": {threadTitle(q), maxTitle + 1}} {
			if n := utf8.RuneCountInString(c.got); n > c.max {
				t.Fatalf("%s title of %q has %d characters, more than %d", name, q, n, c.max)
			}
			if strings.ContainsAny(c.got, "\n\r\t") {
				t.Fatalf("%s title %q spans lines", name, c.got)
			}
			if utf8.ValidString(q) && !utf8.ValidString(c.got) {
				t.Fatalf("%s title %q of valid text is invalid UTF-8", name, c.got)
			}
		}
	})
}

// A feedback button's value is read back as it was written; anything else
// is no vote.
func FuzzParseVote(f *testing.F) {
	for _, s := range []string{"doubao", "", "up:", "deepseek-r1", "a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, model string) {
		for _, up := range []bool{true, false} {
			prefix := votePrefixDown
			if up {
				prefix = votePrefixUp
			}
			gotUp, got, ok := parseVote(prefix + model)
			if ok != (model != "") || ok && (gotUp != up || got != model) {
				t.Fatalf("parseVote(%q) = %v %q %v", prefix+model, gotUp, got, ok)
			}
		}
		if _, _, ok := parseVote(model); ok && !strings.HasPrefix(model, votePrefixUp) && !strings.HasPrefix(model, votePrefixDown) {
			t.Fatalf("%q read as a vote", model)
		}
	})
}

func TestThreadTitleCutsAtAWord(t *testing.T) {
	q := strings.Repeat("alpha ", 20) + "\nsecond line"
	got := threadTitle(q)
	if !strings.HasSuffix(got, "alpha…") || utf8.RuneCountInString(got) > maxTitle+1 || strings.Contains(got, "second") {
		t.Fatalf("threadTitle = %q", got)
	}
	if got := sessionTitle("  Hello\tthere \n more"); got != "Hello there" {
		t.Fatalf("sessionTitle = %q", got)
	}
}

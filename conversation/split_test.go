package conversation

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSplitShortTextIsOnePiece(t *testing.T) {
	got := Split("hello world", 2000)
	if len(got) != 1 || got[0] != "hello world" {
		t.Fatalf("Split = %q", got)
	}
}

func TestSplitPrefersParagraphsThenWords(t *testing.T) {
	para := strings.Repeat("word ", 30) // 150 chars
	text := para + "\n\n" + para + "\n\n" + para
	got := Split(text, 200)
	if len(got) != 3 {
		t.Fatalf("want 3 pieces, got %d: %q", len(got), got)
	}
	for _, p := range got {
		if strings.HasPrefix(p, " ") || strings.HasPrefix(p, "\n") {
			t.Errorf("piece starts with a separator: %q", p[:10])
		}
		if strings.Contains(p, "wor\n") || strings.HasSuffix(p, "wor") {
			t.Errorf("word broken: %q", p)
		}
	}
}

func TestSplitNeverBreaksAWord(t *testing.T) {
	text := strings.Repeat("abcdefghij ", 500) // 5,500 chars
	for _, p := range Split(text, 2000) {
		for _, w := range strings.Fields(p) {
			if w != "abcdefghij" {
				t.Fatalf("broken word %q", w)
			}
		}
	}
}

func TestSplitClosesAndReopensCodeFences(t *testing.T) {
	var b strings.Builder
	b.WriteString("Here is the code:\n\n```go\n")
	for i := 0; i < 200; i++ {
		b.WriteString("fmt.Println(\"line of code number\", i)\n")
	}
	b.WriteString("```\n\nThat's all.")
	got := Split(b.String(), 2000)
	if len(got) < 4 {
		t.Fatalf("want several pieces, got %d", len(got))
	}
	for i, p := range got {
		if n := utf8.RuneCountInString(p); n > 2000 {
			t.Errorf("piece %d has %d chars", i, n)
		}
		if _, open := openFence(p); open {
			t.Errorf("piece %d leaves a fence open:\n%s", i, p[len(p)-50:])
		}
		if i > 0 && i < len(got)-1 && !strings.HasPrefix(p, "```go\n") {
			t.Errorf("piece %d does not reopen the go fence: %q", i, p[:20])
		}
	}
	if !strings.HasSuffix(got[len(got)-1], "That's all.") {
		t.Errorf("last piece lost the tail: %q", got[len(got)-1])
	}
}

func TestSplitHardCutsAnUnbreakableRun(t *testing.T) {
	text := strings.Repeat("好", 4500)
	got := Split(text, 2000)
	if len(got) != 3 || strings.Join(got, "") != text {
		t.Fatalf("got %d pieces, lossless=%v", len(got), strings.Join(got, "") == text)
	}
}

// unsplit undoes what Split adds: a closing fence at the end of a piece
// that ended inside a code block, and the reopening fence line of the next.
// What is left, with whitespace removed, must equal the input's.
func unsplit(pieces []string) string {
	var b strings.Builder
	reopened := false
	for i, p := range pieces {
		start := 0
		if reopened {
			start = strings.Index(p, "\n") + 1
		}
		reopened = false
		if body, ok := strings.CutSuffix(p, fenceClose); ok && i < len(pieces)-1 {
			if _, open := openFence(body); open {
				p, reopened = body, true
			}
		}
		b.WriteString(p[start:])
	}
	return b.String()
}

func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

func FuzzSplit(f *testing.F) {
	f.Add("hello world", 50)
	f.Add("```py\nprint(1)\n```\n"+strings.Repeat("x ", 100), 40)
	f.Add(strings.Repeat("```\na\n", 30), 45)
	f.Add("a\n\n\n\nb", 41)
	f.Fuzz(func(t *testing.T, text string, limit int) {
		if !utf8.ValidString(text) || limit > 5000 {
			t.Skip()
		}
		pieces := Split(text, limit)
		lim := max(limit, minSplitLimit)
		for i, p := range pieces {
			if n := utf8.RuneCountInString(p); n > lim {
				t.Fatalf("piece %d: %d runes > limit %d", i, n, lim)
			}
			if _, open := openFence(p); open && i < len(pieces)-1 {
				t.Fatalf("piece %d leaves a fence open: %q", i, p)
			}
		}
		if got, want := noSpace(unsplit(pieces)), noSpace(text); got != want {
			t.Fatalf("content changed:\n got %q\nwant %q", got, want)
		}
	})
}

func BenchmarkSplit(b *testing.B) {
	text := strings.Repeat("Some prose with words. ", 200) + "\n```go\n" + strings.Repeat("x := 1\n", 400) + "```\n"
	b.ReportAllocs()
	for b.Loop() {
		Split(text, 2000)
	}
}

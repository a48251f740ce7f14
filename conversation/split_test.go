package conversation

import (
	"fmt"
	"slices"
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
		if _, open := OpenFence(p); open {
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

func TestSplitClosesFencesWithTheirOwnMarker(t *testing.T) {
	for _, tc := range []struct{ open, close, line string }{
		{"~~~python", "~~~", "print('hello, world')\n"},
		// ``` lines inside a ```` block are code; ``` doesn't close it.
		{"````markdown", "````", "```go\nx := 1\n```\n"},
	} {
		text := tc.open + "\n" + strings.Repeat(tc.line, 60) + tc.close + "\n\nDone."
		got := Split(text, 300)
		if len(got) < 4 {
			t.Fatalf("%s: want several pieces, got %q", tc.open, got)
		}
		for i, p := range got[:len(got)-1] {
			if !strings.HasSuffix(p, "\n"+tc.close) {
				t.Errorf("%s: piece %d is not closed with %s: %q", tc.open, i, tc.close, p)
			}
			if i > 0 && !strings.HasPrefix(p, tc.open+"\n") {
				t.Errorf("%s: piece %d does not reopen with %s: %q", tc.open, i, tc.open, p)
			}
		}
		if last := got[len(got)-1]; !strings.HasSuffix(last, tc.close+"\n\nDone.") {
			t.Errorf("%s: last piece %q", tc.open, last)
		}
	}
}

func TestSplitAddsNoFencesOutsideCodeBlocks(t *testing.T) {
	words := strings.Repeat("word ", 100)
	for _, text := range []string{
		"    ```\n    indented code, not a fence\n\n" + words, // 4 spaces
		"```inline` code, not a fence\n" + words,              // ` in a ``` info string
		"```go\nx := 1\n```\n" + words,                        // closed
		"~~~\ncode\n~~~\n" + words,
		"````\ncode\n`````\n" + words, // a longer closing fence
	} {
		for i, p := range Split(text, 100) {
			if (i > 0 && strings.HasPrefix(p, "```")) || strings.HasSuffix(p, "```") || strings.HasSuffix(p, "~~~") {
				t.Errorf("%.20q: piece %d has a fence: %q", text, i, p)
			}
		}
	}
}

func TestSplitReopensWithALongInfoString(t *testing.T) {
	open := "```python title=\"scripts/migrate_user_accounts.py\" linenums=\"1\""
	text := open + "\n" + strings.Repeat("print('hello, world')\n", 200) + "```"
	got := Split(text, 2000)
	if len(got) < 3 {
		t.Fatalf("want several pieces, got %d", len(got))
	}
	for i, p := range got[1:] {
		if !strings.HasPrefix(p, open+"\n") {
			t.Errorf("piece %d does not reopen with %s: %.80q", i+1, open, p)
		}
	}
}

func TestSplitKeepsTheClosingFenceWithItsBlock(t *testing.T) {
	// The block ends exactly at the limit: cutting before its closing fence
	// would leave the next piece starting with an empty code block.
	block := "```go\n" + strings.Repeat("fmt.Println(42)\n", 10)
	block += strings.Repeat("x", 200-len(block)-len("\n```")) + "\n```"
	got := Split(block+"\n\nThat's all.", 200)
	if len(got) != 2 || got[0] != block || got[1] != "That's all." {
		t.Fatalf("Split = %q", got)
	}
}

func TestSplitCountsHalfTheLimitInCharacters(t *testing.T) {
	// A 20-character word fits in half of 40; in bytes it doesn't.
	word := strings.Repeat("好", 20)
	text := strings.Repeat("a ", 10) + word + " end"
	for _, p := range Split(text, 40) {
		for _, w := range strings.Fields(p) {
			if w != "a" && w != word && w != "end" {
				t.Fatalf("broken word %q in %q", w, p)
			}
		}
	}
}

func TestSplitDropsBlankPieces(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"", nil},
		{" \n\t\n ", nil},
		{"a" + strings.Repeat(" ", 100) + "b", []string{"a", "b"}},
		{"a" + strings.Repeat("\n", 100) + "b", []string{"a", "b"}},
		{"one two three" + strings.Repeat(" \n", 30), []string{"one two three"}},
	} {
		got := Split(tc.text, 40)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Split(%.20q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

// unsplit undoes what Split adds, after checking that it is nothing but
// the fence lines Split promises: a piece that ends inside a code block (and
// is not the last) is closed with that block's fence, and the next piece
// starts with the block's opening line, or its bare fence if the line is too
// long; a block whose fences don't fit is left open.
//
// It needs SplitParts' record of what it added: Split's output alone is
// ambiguous, as a piece may end with the text's own closing fence.
func unsplit(pieces []Part, limit int) (string, error) {
	var b strings.Builder
	reopen := ""
	for i, p := range pieces {
		if p.Reopen != reopen {
			return "", fmt.Errorf("piece %d reopens with %q, want %q", i, p.Reopen, reopen)
		}
		reopen = ""
		closing := ""
		if f, open := OpenFence(p.Reopen + p.Body); open && i < len(pieces)-1 {
			if line := f.Reopening(limit); line != "" {
				closing, reopen = "\n"+f.Closing(), line+"\n"
			}
		}
		if p.Close != closing {
			return "", fmt.Errorf("piece %d closes with %q, want %q", i, p.Close, closing)
		}
		b.WriteString(p.Body)
	}
	return b.String(), nil
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
		if blank := strings.TrimSpace(text) == ""; blank != (len(pieces) == 0) {
			t.Fatalf("blank text %v, but %d pieces", blank, len(pieces))
		}
		lim := max(limit, minSplitLimit)
		if len(pieces) > 0 && utf8.RuneCountInString(text) <= lim && (len(pieces) != 1 || pieces[0] != text) {
			t.Fatalf("text fits, but Split = %q", pieces)
		}
		for i, p := range pieces {
			if n := utf8.RuneCountInString(p); n > lim {
				t.Fatalf("piece %d: %d runes > limit %d", i, n, lim)
			}
			if strings.TrimSpace(p) == "" {
				t.Fatalf("piece %d is blank: %q", i, p)
			}
			if f, open := OpenFence(p); open && i < len(pieces)-1 && f.Reopening(lim) != "" {
				t.Fatalf("piece %d leaves a fence open: %q", i, p)
			}
		}
		parts := SplitParts(text, limit, nil)
		if len(parts) != len(pieces) {
			t.Fatalf("SplitParts made %d pieces, Split %d", len(parts), len(pieces))
		}
		for i, p := range parts {
			if pieces[i] != p.String() {
				t.Fatalf("SplitParts' piece %d %q is not Split's %q", i, p, pieces[i])
			}
		}
		got, err := unsplit(parts, lim)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := noSpace(got), noSpace(text); got != want {
			t.Fatalf("content changed:\n got %q\nwant %q", got, want)
		}
		// Cut never takes back the bytes it must keep, and ends within the limit.
		keep := Width(nil).prefix(text, lim*3/4)
		if end, next := Cut(text, keep, limit, nil); end < keep || next < end || next > len(text) ||
			end < len(text) && utf8.RuneCountInString(text[:end]) > lim {
			t.Fatalf("Cut(keep %d) = %d, %d", keep, end, next)
		}
		// Measured in UTF-16 code units, as for Discord.
		parts = SplitParts(text, limit, UTF16)
		for i, p := range parts {
			if n := Width(UTF16).Len(p.String()); n > lim {
				t.Fatalf("UTF-16 piece %d: %d units > limit %d", i, n, lim)
			}
		}
		if got, err = unsplit(parts, lim); err != nil {
			t.Fatal(err)
		}
		if got, want := noSpace(got), noSpace(text); got != want {
			t.Fatalf("UTF-16 content changed:\n got %q\nwant %q", got, want)
		}
	})
}

func TestCut(t *testing.T) {
	words := strings.Repeat("word ", 20) // 100 characters
	for _, tc := range []struct {
		name      string
		msg       string
		keep      int
		limit     int
		end, next int
	}{
		{"fits", "short", 0, 40, 5, 5},
		{"word break in the second half", words, 0, 42, 39, 40},
		{"paragraph break first", strings.Repeat("a", 25) + "\n\n" + words, 0, 50, 25, 27},
		{"kept text stays", words, 45, 50, 49, 50},
		{"no break: hard cut at the limit", strings.Repeat("x", 100), 0, 40, 40, 40},
		{"only blanks left over", "kept  " + strings.Repeat(" ", 60), 6, 40, 6, 66},
		{"blanks after the cut dropped", strings.Repeat("a", 30) + "\n\n\n  \n" + words, 0, 40, 31, 36},
	} {
		end, next := Cut(tc.msg, tc.keep, tc.limit, nil)
		if end != tc.end || next != tc.next {
			t.Errorf("%s: Cut = %d, %d; want %d, %d", tc.name, end, next, tc.end, tc.next)
		}
	}
	// Split's pieces are Cut's: the first piece ends where Cut says.
	text := "Intro.\n\n```go\n" + strings.Repeat("fmt.Println(1)\n", 20) + "```\nDone."
	end, next := Cut(text, 0, 100, nil)
	if p := SplitParts(text, 100, nil); p[0].Body != strings.TrimRight(text[:end], " \n") || !strings.HasPrefix(p[1].Reopen+text[next:], p[1].Reopen+p[1].Body) {
		t.Fatalf("Cut = %d, %d; Split's parts %q", end, next, p[:2])
	}
	// Emoji count twice in UTF-16.
	if end, _ := Cut(strings.Repeat("😀", 50), 0, 40, UTF16); end != len("😀")*20 {
		t.Fatalf("UTF-16 cut at byte %d", end)
	}
}

func TestSplitClosesAnIndentedFenceWithItsIndent(t *testing.T) {
	text := "1. Run:\n   ```sh\n" + strings.Repeat("   echo hello world\n", 20) + "   ```\n2. Done."
	for i, p := range Split(text, 120) {
		if _, open := OpenFence(p); open {
			t.Errorf("piece %d left open: %q", i, p)
		}
		if strings.Contains(p, "\n```") {
			t.Errorf("piece %d closes the list item's block at column 0: %q", i, p)
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	text := strings.Repeat("Some prose with words. ", 200) + "\n```go\n" + strings.Repeat("x := 1\n", 400) + "```\n"
	b.ReportAllocs()
	for b.Loop() {
		Split(text, 2000)
	}
}

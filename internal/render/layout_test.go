package render

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/arkbot/arkbot/conversation"
)

// Styles like the adapters', with small limits so that answers are cut.
var (
	discordLike = Style{
		Limit: 300, Width: conversation.UTF16, Reserve: 16, Cursor: " ▌",
		Placeholder: "⏳ *Thinking…*", Thinking: "💭 *Thinking…* ▌", NoteSep: "\n",
		Note: func(o conversation.Outcome, note string, alone bool) string {
			if alone {
				return "⚠️ " + note
			}
			return "-# ⚠️ " + strings.Join(strings.Fields(note), " ")
		},
	}
	slackLike = Style{
		Limit: 500, Reserve: 500 - 250, Cursor: " ▍",
		Placeholder: "⏳ _Thinking…_", NoteSep: "\n\n", Empty: "_(no answer)_",
		Note: func(o conversation.Outcome, note string, alone bool) string {
			return "> ⚠️ " + strings.ReplaceAll(note, "\n", "\n> ")
		},
	}
	styles = map[string]Style{"discord": discordLike, "slack": slackLike}
)

// checkPieces checks what holds for every layout: each piece within the
// limit as the style measures it, and none ending inside a code block.
func checkPieces(t *testing.T, s Style, pieces []string) {
	t.Helper()
	for i, p := range pieces {
		if n := s.Width.Len(p); n > s.Limit {
			t.Errorf("piece %d measures %d > %d", i, n, s.Limit)
		}
		if f, open := conversation.OpenFence(p); open {
			t.Errorf("piece %d ends inside the block %q opened:\n%s", i, f.Line, p)
		}
	}
}

func lines(line string, n int) string { return strings.Repeat(line, n) }

func TestLayoutFences(t *testing.T) {
	for _, tc := range []struct {
		name  string
		text  string
		final bool
		note  string
		open  string // the fence line pieces after a cut inside the block start with
		close string // the fence line closing a block cut or left open
		last  string // what the last piece ends with, after the cursor or note
	}{
		{name: "backticks cut", text: "Intro.\n\n```go\n" + lines("fmt.Println(\"hello\")\n", 40) + "```\n\nThat's all.",
			final: true, open: "```go", close: "```", last: "That's all."},
		{name: "tildes cut", text: "~~~python\n" + lines("print('hello, world')\n", 40) + "~~~\nDone.",
			final: true, open: "~~~python", close: "~~~", last: "~~~\nDone."},
		{name: "fence in a list item", text: "1. Run:\n   ```sh\n" + lines("   echo hello world\n", 40) + "   ```\n2. Done.",
			final: true, open: "   ```sh", close: "   ```", last: "2. Done."},
		{name: "four backticks around three", text: "````markdown\n" + lines("```go\nx := 1\n```\n", 30) + "````\nEnd.",
			final: true, open: "````markdown", close: "````", last: "````\nEnd."},
		{name: "streaming inside a block", text: "See:\n```go\n" + lines("x := compute(1)\n", 40) + "y := 2",
			open: "```go", close: "```", last: "y := 2{cursor}\n```"},
		{name: "streaming inside tildes in a list", text: "- Step:\n  ~~~\n" + lines("  make build\n", 50) + "  make test",
			open: "  ~~~", close: "  ~~~", last: "  make test{cursor}\n  ~~~"},
		{name: "final cut mid-block with a note", text: "Code:\n````js\n" + lines("console.log(1);\n", 40) + "console.log(2);",
			final: true, note: "The answer reached the length limit.", open: "````js", close: "````",
			last: "console.log(2);\n````{sep}{note}"},
	} {
		for name, s := range styles {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				f := conversation.Frame{Text: tc.text, Final: tc.final, Note: tc.note}
				if tc.final {
					f.Outcome = conversation.OutcomeDone
					if tc.note != "" {
						f.Outcome = conversation.OutcomeTruncated
					}
				}
				pieces := Layout(s, f)
				if len(pieces) < 2 {
					t.Fatalf("want the answer cut, got %q", pieces)
				}
				checkPieces(t, s, pieces)
				inside := false // the cut before this piece is inside the block
				for i, p := range pieces {
					if inside && !strings.HasPrefix(p, tc.open+"\n") {
						t.Errorf("piece %d does not reopen with %q: %.40q", i, tc.open, p)
					}
					body := strings.TrimSuffix(p, s.Cursor)
					inside = i < len(pieces)-1 && strings.HasSuffix(body, "\n"+tc.close)
				}
				last := strings.NewReplacer("{cursor}", s.Cursor, "{sep}", s.NoteSep, "{note}", s.Note(f.Outcome, tc.note, false)).Replace(tc.last)
				if got := pieces[len(pieces)-1]; !strings.HasSuffix(got, last) {
					t.Errorf("last piece ends %q, want %q", got[max(0, len(got)-len(last)-20):], last)
				}
				if strings.Count(strings.Join(pieces, ""), s.Cursor) != map[bool]int{false: 1, true: 0}[tc.final] {
					t.Errorf("cursor count wrong in %q", pieces)
				}
				if got, want := withoutFences(strings.Join(pieces, "\n")), withoutFences(tc.text); !strings.HasPrefix(got, want) {
					t.Errorf("text changed:\n got %q\nwant %q", got, want)
				}
			})
		}
	}
}

// withoutFences is s without its fence lines and whitespace.
func withoutFences(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if _, ok := conversation.ParseFence(line); !ok {
			b.WriteString(line)
		}
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, b.String())
}

func TestLayoutBeforeTextAndNotes(t *testing.T) {
	s := discordLike
	for _, tc := range []struct {
		name string
		f    conversation.Frame
		want []string
	}{
		{"placeholder", conversation.Frame{}, []string{s.Placeholder}},
		{"thinking", conversation.Frame{Reasoning: "hmm"}, []string{s.Thinking}},
		{"streaming", conversation.Frame{Text: "Hello \n"}, []string{"Hello ▌"}},
		{"done", conversation.Frame{Text: "Done.", Final: true, Outcome: conversation.OutcomeDone}, []string{"Done."}},
		{"note", conversation.Frame{Text: "Part", Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark said:\n quota"}, []string{"Part\n-# ⚠️ Ark said: quota"}},
		{"default note", conversation.Frame{Text: "a", Final: true, Outcome: conversation.OutcomeStopped}, []string{"a\n-# ⚠️ Stopped."}},
		{"note alone", conversation.Frame{Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark is down."}, []string{"⚠️ Ark is down."}},
		{"nothing at all", conversation.Frame{Final: true, Outcome: conversation.OutcomeDone}, nil},
	} {
		if got := Layout(s, tc.f); strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("%s: Layout = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := Layout(slackLike, conversation.Frame{Final: true, Outcome: conversation.OutcomeDone}); len(got) != 1 || got[0] != "_(no answer)_" {
		t.Errorf("slack empty = %q", got)
	}
	// A note that doesn't fit under the text goes to a message of its own.
	full := strings.Repeat("word ", 56) + "end" // 283 characters
	got := Layout(s, conversation.Frame{Text: full, Final: true, Outcome: conversation.OutcomeInterrupted, Note: strings.Repeat("n", 50)})
	if len(got) != 2 || got[0] != full || got[1] != "-# ⚠️ "+strings.Repeat("n", 50) {
		t.Fatalf("overflowing note = %q", got)
	}
	checkPieces(t, s, got)
	// So does one too long for any message, cut to fit.
	got = Layout(s, conversation.Frame{Text: "a", Final: true, Outcome: conversation.OutcomeFailed, Note: strings.Repeat("n", 1000)})
	checkPieces(t, s, got)
	if len(got) != 2 || !strings.HasSuffix(got[1], "n…") {
		t.Fatalf("long note = %q", got)
	}
}

func TestLayoutMeasuresUTF16(t *testing.T) {
	text := strings.Repeat("😀 ", 500) // 1,000 runes, 1,500 UTF-16 units
	pieces := Layout(discordLike, conversation.Frame{Text: text, Final: true, Outcome: conversation.OutcomeDone})
	for i, p := range pieces {
		if n := len(utf16.Encode([]rune(p))); n > discordLike.Limit {
			t.Fatalf("piece %d has %d UTF-16 units", i, n)
		}
	}
	if n := len(pieces); n < 1500/300 {
		t.Fatalf("%d pieces: emoji counted once", n)
	}
	for _, s := range []string{"", "plain", "😀 emoji", "中文 and 𝄞", "bad \xff\xfe utf-8", "\xed\xa0\x80 surrogate"} {
		if got, want := conversation.Width(conversation.UTF16).Len(s), len(utf16.Encode([]rune(s))); got != want {
			t.Errorf("UTF-16 length of %q = %d, want %d", s, got, want)
		}
	}
}

func TestStyleTail(t *testing.T) {
	s := Style{NoteSep: "\n", Note: func(_ conversation.Outcome, note string, _ bool) string { return "⚠ " + note }}
	if got := s.Tail(conversation.Frame{Text: "x\n~~~\ncode", Final: true, Outcome: conversation.OutcomeStopped}); got != "\n~~~\n⚠ Stopped." {
		t.Fatalf("Tail = %q", got)
	}
	if got := s.Tail(conversation.Frame{Text: "x", Final: true, Outcome: conversation.OutcomeDone}); got != "" {
		t.Fatalf("Tail = %q", got)
	}
}

func FuzzLayout(f *testing.F) {
	f.Add("hello world", 200, false, true)
	f.Add("```py\nprint(1)\n```\n"+strings.Repeat("x ", 300), 120, false, false)
	f.Add("1. a\n   ~~~\n"+strings.Repeat("   code line\n", 50), 150, true, true)
	f.Add("````\n```\n"+strings.Repeat("😀 ", 200), 100, false, false)
	f.Fuzz(func(t *testing.T, text string, limit int, utf16 bool, final bool) {
		if !utf8.ValidString(text) || limit < 100 || limit > 5000 {
			t.Skip()
		}
		s := discordLike
		s.Limit = limit
		if !utf16 {
			s = slackLike
			s.Limit, s.Reserve = limit, limit/4
		}
		fr := conversation.Frame{Text: text, Final: final, Outcome: conversation.OutcomeDone}
		pieces := Layout(s, fr)
		trimmed := strings.TrimRightFunc(text, unicode.IsSpace)
		if trimmed == "" {
			if want := map[bool]int{false: 1, true: len(s.Empty)}[final]; min(len(pieces), 1) != min(want, 1) {
				t.Fatalf("blank text: %q", pieces)
			}
			return
		}
		tail := ""
		if !final {
			tail = "\n" + s.Cursor
		}
		splitLimit := s.splitLimit(trimmed, tail)
		parts := conversation.SplitParts(trimmed, splitLimit, s.Width)
		if !final {
			tail = s.cursor(parts[len(parts)-1].String())
		}
		if len(parts) != len(pieces) {
			t.Fatalf("%d pieces from %d parts", len(pieces), len(parts))
		}
		var body strings.Builder
		for i, p := range parts {
			// Each piece is a part of the split text, the last with what
			// Layout adds: the cursor, a fence line closing its block.
			added, ok := strings.CutPrefix(pieces[i], p.String())
			if !ok || i < len(parts)-1 && added != "" {
				t.Fatalf("piece %d %q is not part %q", i, pieces[i], p)
			}
			if i == len(parts)-1 {
				added, ok = strings.CutPrefix(added, tail)
				if !ok || added != "" && !isFenceLine(added) {
					t.Fatalf("last piece adds %q", added)
				}
			}
			for _, line := range []string{p.Reopen, p.Close} {
				if line != "" && !isFenceLine(line) {
					t.Fatalf("part %d adds %q, not a fence line", i, line)
				}
			}
			body.WriteString(p.Body)
			if n := s.Width.Len(pieces[i]); n > s.Limit {
				t.Fatalf("piece %d measures %d > %d", i, n, s.Limit)
			}
			if fe, open := conversation.OpenFence(pieces[i]); open && fe.Reopening(splitLimit) != "" {
				t.Fatalf("piece %d ends inside the block %q opened: %q", i, fe.Line, pieces[i])
			}
		}
		if got, want := noSpace(body.String()), noSpace(trimmed); got != want {
			t.Fatalf("text changed:\n got %q\nwant %q", got, want)
		}
	})
}

func isFenceLine(s string) bool {
	_, ok := conversation.ParseFence(strings.Trim(s, "\n"))
	return ok && strings.Count(strings.Trim(s, "\n"), "\n") == 0
}

func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

func BenchmarkLayout(b *testing.B) {
	text := strings.Repeat("Some prose with words. ", 200) + "\n```go\n" + strings.Repeat("x := 1 // 😀\n", 400)
	s := discordLike
	s.Limit = 2000
	b.ReportAllocs()
	for b.Loop() {
		Layout(s, conversation.Frame{Text: text})
	}
}

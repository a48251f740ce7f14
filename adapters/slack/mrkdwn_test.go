package slack

import (
	"github.com/arkbot/arkbot/conversation"

	"strings"
	"testing"
	"unicode/utf8"
)

func TestMarkdownToMrkdwn(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"bold", "a **bold** word", "a *bold* word"},
		{"bold underscores", "a __bold__ word", "a *bold* word"},
		{"italic star", "an *italic* word", "an _italic_ word"},
		{"italic underscore", "an _italic_ word", "an _italic_ word"},
		{"bold italic", "***both***", "*_both_*"},
		{"italic inside bold", "**very _much_ so**", "*very _much_ so*"},
		{"strike", "~~gone~~ here", "~gone~ here"},
		{"single tilde literal", "about ~5 minutes", "about ~5 minutes"},
		{"heading", "# Title", "*Title*"},
		{"heading level 3 with bold", "### A **b** c ###", "*A b c*"},
		{"not a heading", "#hashtag", "#hashtag"},
		{"link", "see [the docs](https://x.io/a?b=1&c=2)", "see <https://x.io/a?b=1&amp;c=2|the docs>"},
		{"link with title", `[t](https://x.io "title")`, "<https://x.io|t>"},
		{"link label same as url", "[https://x.io](https://x.io)", "<https://x.io>"},
		{"image", "![a cat](https://x.io/cat.png)", "<https://x.io/cat.png|a cat>"},
		{"autolink", "<https://x.io>", "<https://x.io>"},
		{"not a link", "[just brackets] and (parens)", "[just brackets] and (parens)"},
		{"inline code untouched", "use `**not bold**` here", "use `**not bold**` here"},
		{"inline code escaped", "`a<b && c>d`", "`a&lt;b &amp;&amp; c&gt;d`"},
		{"escapes", "a < b & c > d", "a &lt; b &amp; c &gt; d"},
		{"backslash escape", `not \*italic\*`, "not *italic*"},
		{"snake case", "call my_func_name now", "call my_func_name now"},
		{"star spaces", "2 * 3 * 4", "2 * 3 * 4"},
		{"bullets", "- one\n* two\n+ three", "• one\n• two\n• three"},
		{"nested bullets", "- a\n  - b", "• a\n  • b"},
		{"ordered", "1. first **b**\n2) second", "1. first *b*\n2) second"},
		{"tasks", "- [ ] todo\n- [x] done", "☐ todo\n☑ done"},
		{"rule", "---", "──────────"},
		{"quote", "> quoted **bold**", "> quoted *bold*"},
		{"code block", "```go\nfunc main() { x := **y** }\n```", "```\nfunc main() { x := **y** }\n```"},
		{"code block escaped", "```\nif a < b && c > d {}\n```", "```\nif a &lt; b &amp;&amp; c &gt; d {}\n```"},
		{"unclosed fence closed", "```python\nprint(1)", "```\nprint(1)\n```"},
		{"inline triple backticks", "```inline``` text", "```inline``` text"},
		{"tilde fence", "~~~\n```\n**x**\n~~~", "````\n```\n**x**\n````"},
		{"longer fence", "````md\n```\ninner\n```\n````", "````\n```\ninner\n```\n````"},
		{"indented 4 is not a fence", "    ```\n**b**", "    ```\n*b*"},
		{"empty", "", ""},
		{"blank lines kept", "a\n\nb", "a\n\nb"},
		{"unicode", "**你好** _世界_", "*你好* _世界_"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MarkdownToMrkdwn(c.in); got != c.want {
				t.Errorf("MarkdownToMrkdwn(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

// codeBlocks extracts the contents of fenced code blocks, by CommonMark's fence rules.
func codeBlocks(s string) []string {
	var blocks, cur []string
	var f conversation.Fence
	in := false
	for _, line := range strings.Split(s, "\n") {
		if in {
			if f.ClosedBy(line) {
				blocks = append(blocks, strings.Join(cur, "\n"))
				cur, in = nil, false
			} else {
				cur = append(cur, line)
			}
			continue
		}
		f, in = conversation.ParseFence(line)
	}
	if in {
		blocks = append(blocks, strings.Join(cur, "\n"))
	}
	return blocks
}

var slackUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

func FuzzMarkdownToMrkdwn(f *testing.F) {
	for _, s := range []string{
		"# Title\n\nSome **bold** and *italic* and `code`.\n\n```go\nfunc f() { return a < b }\n```\n- item [link](https://x.io)\n",
		"***x***", "**a *b* c**", "_a_b_", "~~s~~", "[a](b)", "![i](u)", "<http://x>", "```\n**x**\n", "``` ``` ```", "~~~\n```\n~~~", "````\n```\n````", "   ```\n x\n  ```",
		"\\*", "> > q", "1. a\n2. b", "- [ ] t", "****", "____", "` `` `", "[[a]](b(c))", "*\n*", "```go\r\n a\r\n```\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := MarkdownToMrkdwn(in) // must not panic
		if utf8.ValidString(in) && !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of valid input %q: %q", in, out)
		}
		inBlocks, outBlocks := codeBlocks(in), codeBlocks(out)
		if len(inBlocks) != len(outBlocks) {
			t.Fatalf("code blocks: %d in, %d out\nin:  %q\nout: %q", len(inBlocks), len(outBlocks), in, out)
		}
		for i := range inBlocks {
			if got := slackUnescaper.Replace(outBlocks[i]); got != inBlocks[i] {
				t.Fatalf("code block %d changed:\nin:  %q\nout: %q", i, inBlocks[i], got)
			}
		}
	})
}

func BenchmarkMarkdownToMrkdwn(b *testing.B) {
	var sb strings.Builder
	for i := range 20 {
		sb.WriteString("## Section\n\nThis is **important** text with *emphasis*, a [link](https://example.com/page?x=1&y=2), `inline code` and ~~old~~ words.\n\n")
		sb.WriteString("- first item with **bold**\n- second item\n  1. nested\n\n")
		if i%3 == 0 {
			sb.WriteString("```go\nfor i := 0; i < n; i++ {\n\tfmt.Println(i)\n}\n```\n\n")
		}
	}
	in := sb.String()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		MarkdownToMrkdwn(in)
	}
}

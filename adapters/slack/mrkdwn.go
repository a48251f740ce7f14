package slack

import (
	"github.com/arkbot/arkbot/conversation"

	"strings"
)

// MarkdownToMrkdwn converts standard Markdown, as models write it, into
// Slack's mrkdwn, for the places that take nothing else (notification
// fallbacks, ephemeral command replies): **bold** → *bold*, *italic* and
// _italic_ → _italic_, ~~strike~~ → ~strike~, # Heading → *Heading*,
// [text](url) → <url|text>, list bullets → •, horizontal rules → a line.
//
// Fenced code blocks (CommonMark's rules, as conversation.Split reads them)
// keep their content line for line (the language after the opening fence is
// dropped, ~~~ fences become backticks, an unclosed block is closed); inline
// code keeps its content too. Everywhere, including in code, the three
// characters Slack reserves (&, <, >) are sent as &amp; &lt; &gt;, which
// Slack displays as typed. It is a pure function and never panics.
func MarkdownToMrkdwn(md string) string {
	var b strings.Builder
	b.Grow(len(md) + len(md)/8)
	lines := strings.Split(md, "\n")
	var open conversation.Fence
	inFence, marker := false, ""
	for i, line := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if inFence {
			if open.ClosedBy(line) {
				inFence = false
				b.WriteString(marker)
			} else {
				b.WriteString(escapeSlack(line))
			}
			continue
		}
		if f, ok := conversation.ParseFence(line); ok {
			inFence, open, marker = true, f, mrkdwnMarker(f, lines[i+1:])
			b.WriteString(marker)
			continue
		}
		out := convertLine(line)
		if _, ok := conversation.ParseFence(out); ok {
			// A prose line must not turn into a fence.
			out = "\u200b" + out
		}
		b.WriteString(out)
	}
	if inFence {
		b.WriteString("\n" + marker)
	}
	return b.String()
}

// mrkdwnMarker is the fence to write for block f: its own backticks, or for
// a ~~~ block (which mrkdwn lacks) enough backticks that no line inside closes it.
func mrkdwnMarker(f conversation.Fence, rest []string) string {
	if f.Marker[0] == '`' {
		return f.Marker
	}
	n := 3
	for _, line := range rest {
		if f.ClosedBy(line) {
			break
		}
		if g, ok := conversation.ParseFence(line); ok && g.Marker[0] == '`' {
			n = max(n, len(g.Marker)+1)
		}
	}
	return strings.Repeat("`", n)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeSlack escapes the characters Slack reserves for its own markup.
func escapeSlack(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return slackEscaper.Replace(s)
}

// convertLine converts one line outside code blocks.
func convertLine(line string) string {
	trimmed := strings.TrimLeft(line, " \t")
	indent := line[:len(line)-len(trimmed)]
	if trimmed == "" {
		return line
	}
	if isRule(trimmed) {
		return indent + "──────────"
	}
	if n := headingLevel(trimmed); n > 0 {
		text := strings.TrimSpace(trimmed[n:])
		text = strings.TrimSpace(strings.TrimRight(text, "#"))
		if text == "" {
			return ""
		}
		return indent + "*" + inline(text, true, 0) + "*"
	}
	if trimmed[0] == '>' {
		// Quote markers stay (mrkdwn quotes), the quoted text is converted.
		i := 0
		for i < len(trimmed) && (trimmed[i] == '>' || trimmed[i] == ' ') {
			i++
		}
		depth := strings.Count(trimmed[:i], ">")
		return indent + strings.Repeat(">", depth) + " " + convertLine(trimmed[i:])
	}
	if len(trimmed) >= 2 && (trimmed[0] == '-' || trimmed[0] == '*' || trimmed[0] == '+') && (trimmed[1] == ' ' || trimmed[1] == '\t') {
		rest := strings.TrimLeft(trimmed[2:], " \t")
		switch {
		case strings.HasPrefix(rest, "[ ] "):
			return indent + "☐ " + inline(rest[4:], false, 0)
		case strings.HasPrefix(rest, "[x] "), strings.HasPrefix(rest, "[X] "):
			return indent + "☑ " + inline(rest[4:], false, 0)
		}
		return indent + "• " + inline(rest, false, 0)
	}
	if n := orderedMarker(trimmed); n > 0 {
		return indent + trimmed[:n] + inline(trimmed[n:], false, 0)
	}
	return indent + inline(trimmed, false, 0)
}

// isRule reports a thematic break: three or more of one of - * _, spaces allowed.
func isRule(t string) bool {
	c := t[0]
	if c != '-' && c != '*' && c != '_' {
		return false
	}
	n := 0
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case c:
			n++
		case ' ', '\t':
		default:
			return false
		}
	}
	return n >= 3
}

// headingLevel returns the length of an ATX heading marker ("## "), or 0.
func headingLevel(t string) int {
	n := 0
	for n < len(t) && t[n] == '#' {
		n++
	}
	if n == 0 || n > 6 {
		return 0
	}
	if n == len(t) || t[n] == ' ' || t[n] == '\t' {
		return n
	}
	return 0
}

// orderedMarker returns the length of "12. " or "3) " at the start of t, or 0.
func orderedMarker(t string) int {
	i := 0
	for i < len(t) && i < 9 && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i+1 >= len(t) || (t[i] != '.' && t[i] != ')') || (t[i+1] != ' ' && t[i+1] != '\t') {
		return 0
	}
	return i + 2
}

// Bounds that keep inline conversion linear-ish on hostile input.
const (
	maxEmphasisDepth  = 16
	maxDelimiterSpan  = 2000 // bytes searched for a closing delimiter or link part
	markdownEscapable = "\\`*_{}[]()#+-.!~|<>&\""
)

// inline converts emphasis, links and escapes in one line of prose.
// noBold drops bold markers (headings are bold already).
func inline(s string, noBold bool, depth int) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '`':
			n := runLength(s, i, '`')
			if j := findRun(s, i+n, '`', n); j >= 0 {
				b.WriteString(escapeSlack(s[i : j+n]))
				i = j + n
				continue
			}
			b.WriteString(s[i : i+n])
			i += n
		case c == '\\' && i+1 < len(s) && strings.IndexByte(markdownEscapable, s[i+1]) >= 0:
			b.WriteString(escapeSlack(s[i+1 : i+2]))
			i += 2
		case c == '!' && i+1 < len(s) && s[i+1] == '[':
			if label, target, end, ok := parseLink(s, i+1); ok {
				writeLink(&b, label, target)
				i = end
				continue
			}
			b.WriteByte('!')
			i++
		case c == '[':
			if label, target, end, ok := parseLink(s, i); ok {
				writeLink(&b, label, target)
				i = end
				continue
			}
			b.WriteByte('[')
			i++
		case c == '<':
			if j := strings.IndexByte(s[i+1:min(len(s), i+1+maxDelimiterSpan)], '>'); j > 0 && isAutolink(s[i+1:i+1+j]) {
				b.WriteString("<" + escapeSlack(s[i+1:i+1+j]) + ">")
				i += j + 2
				continue
			}
			b.WriteString("&lt;")
			i++
		case c == '>':
			b.WriteString("&gt;")
			i++
		case c == '&':
			b.WriteString("&amp;")
			i++
		case c == '*' || c == '_' || c == '~':
			n := runLength(s, i, c)
			if out, end, ok := emphasis(s, i, c, n, noBold, depth); ok {
				b.WriteString(out)
				i = end
				continue
			}
			b.WriteString(s[i : i+n])
			i += n
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// emphasis converts a delimited span opening at s[i] (n delimiters c).
func emphasis(s string, i int, c byte, n int, noBold bool, depth int) (string, int, bool) {
	if depth >= maxEmphasisDepth || n > 3 || (c == '~' && n != 2) {
		return "", 0, false
	}
	open := i + n
	if open >= len(s) || isSpace(s[open]) {
		return "", 0, false // not left-flanking
	}
	if c == '_' && i > 0 && isWordByte(s[i-1]) {
		return "", 0, false // snake_case
	}
	limit := min(len(s), open+maxDelimiterSpan)
	for j := open + 1; j < limit; j++ {
		if s[j] == '`' {
			// Skip inline code: delimiters inside it don't count.
			m := runLength(s, j, '`')
			if k := findRun(s, j+m, '`', m); k >= 0 && k < limit {
				j = k + m - 1
				continue
			}
			j += m - 1
			continue
		}
		if s[j] != c {
			continue
		}
		m := runLength(s, j, c)
		if m != n || isSpace(s[j-1]) || (c == '_' && j+m < len(s) && isWordByte(s[j+m])) {
			j += m - 1
			continue
		}
		inner := inline(s[open:j], noBold || n >= 2 && c != '~', depth+1)
		var out string
		switch {
		case c == '~':
			out = "~" + inner + "~"
		case n == 1:
			out = "_" + inner + "_"
		case n == 2 && noBold:
			out = inner
		case n == 2:
			out = "*" + inner + "*"
		case noBold:
			out = "_" + inner + "_"
		default:
			out = "*_" + inner + "_*"
		}
		return out, j + m, true
	}
	return "", 0, false
}

// parseLink parses [label](target "title") starting at s[i] == '['.
func parseLink(s string, i int) (label, target string, end int, ok bool) {
	depth := 0
	j := i
	limit := min(len(s), i+maxDelimiterSpan)
	for ; j < limit; j++ {
		if s[j] == '\\' {
			j++
			continue
		}
		if s[j] == '[' {
			depth++
		} else if s[j] == ']' {
			depth--
			if depth == 0 {
				break
			}
		}
	}
	if j >= limit || j+1 >= len(s) || s[j+1] != '(' {
		return "", "", 0, false
	}
	label = s[i+1 : j]
	k := j + 2
	parens := 0
	limit = min(len(s), k+maxDelimiterSpan)
	for ; k < limit; k++ {
		if s[k] == '(' {
			parens++
		} else if s[k] == ')' {
			if parens == 0 {
				break
			}
			parens--
		}
	}
	if k >= limit {
		return "", "", 0, false
	}
	target = strings.TrimSpace(s[j+2 : k])
	if sp := strings.IndexAny(target, " \t"); sp >= 0 {
		// [t](url "title"): drop the title.
		target = target[:sp]
	}
	target = strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")
	if target == "" || strings.ContainsAny(target, "<>|") {
		return "", "", 0, false
	}
	return label, target, k + 1, true
}

func writeLink(b *strings.Builder, label, target string) {
	label = strings.TrimSpace(stripMarks(label))
	if label == "" || label == target {
		b.WriteString("<" + escapeSlack(target) + ">")
		return
	}
	b.WriteString("<" + escapeSlack(target) + "|" + escapeSlack(strings.ReplaceAll(label, "|", "¦")) + ">")
}

// stripMarks removes emphasis markers and backticks from a link label (mrkdwn can't format inside links).
func stripMarks(s string) string {
	return strings.NewReplacer("**", "", "__", "", "`", "", "~~", "").Replace(s)
}

func isAutolink(s string) bool {
	if strings.ContainsAny(s, " \t<") {
		return false
	}
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "mailto:")
}

func runLength(s string, i int, c byte) int {
	n := 0
	for i+n < len(s) && s[i+n] == c {
		n++
	}
	return n
}

// findRun finds a run of exactly n bytes c at or after from, or -1.
func findRun(s string, from int, c byte, n int) int {
	limit := min(len(s), from+maxDelimiterSpan)
	for j := from; j < limit; {
		if s[j] != c {
			j++
			continue
		}
		m := runLength(s, j, c)
		if m == n {
			return j
		}
		j += m
	}
	return -1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

package slack

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// fence is the opening line of a fenced code block, by CommonMark's rules,
// as conversation.Split reads them.
type fence struct {
	line   string // the line without trailing blanks, e.g. "```go"
	marker string // its run of backticks or tildes, e.g. "```"
}

// parseFence parses a fence line: up to 3 spaces, 3 or more backticks or
// tildes, and an info string, which after backticks may not contain any.
func parseFence(line string) (f fence, ok bool) {
	s := strings.TrimLeft(line, " ")
	indent := len(line) - len(s)
	if indent > 3 || !strings.HasPrefix(s, "```") && !strings.HasPrefix(s, "~~~") {
		return fence{}, false
	}
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	marker := s[:len(s)-len(strings.TrimLeft(s, s[:1]))]
	if marker[0] == '`' && strings.Contains(s[len(marker):], "`") {
		return fence{}, false
	}
	return fence{line: line[:indent+len(s)], marker: marker}, true
}

// closedBy reports whether line closes the block f opened: a fence line of
// the same character, at least as long, without info string.
func (f fence) closedBy(line string) bool {
	g, ok := parseFence(line)
	return ok && g.marker[0] == f.marker[0] && len(g.marker) >= len(f.marker) &&
		strings.TrimLeft(g.line, " ") == g.marker
}

// reopenLine is the line that reopens the block in a continuation message:
// the fence line itself, or its bare marker if the line is long.
func (f fence) reopenLine() string {
	if utf8.RuneCountInString(f.line) <= 64 {
		return strings.TrimLeft(f.line, " ")
	}
	return f.marker
}

// openFence reports whether text ends inside a fenced code block, and the
// fence that opened it.
func openFence(text string) (f fence, open bool) {
	for line := range strings.Lines(text) {
		if !open {
			f, open = parseFence(line)
		} else if f.closedBy(line) {
			open = false
		}
	}
	return f, open
}

package conversation

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// A Fence is the opening line of a fenced code block.
type Fence struct {
	Line   string // the line without trailing blanks (unicode.IsSpace), e.g. "```go"
	Marker string // its run of backticks or tildes, e.g. "```"
}

// ParseFence parses a fence Line: up to 3 spaces, 3 or more backticks or
// tildes, and an info string, which after backticks may not contain any.
func ParseFence(line string) (f Fence, ok bool) {
	s := strings.TrimLeft(line, " ")
	indent := len(line) - len(s)
	if indent > 3 || !strings.HasPrefix(s, "```") && !strings.HasPrefix(s, "~~~") {
		return Fence{}, false
	}
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	marker := s[:len(s)-len(strings.TrimLeft(s, s[:1]))]
	if marker[0] == '`' && strings.Contains(s[len(marker):], "`") {
		return Fence{}, false
	}
	return Fence{Line: line[:indent+len(s)], Marker: marker}, true
}

// ClosedBy reports whether line closes the code block f opened: a fence line
// of the same character, at least as long, without info string.
func (f Fence) ClosedBy(line string) bool {
	g, ok := ParseFence(line)
	return ok && g.Marker[0] == f.Marker[0] && len(g.Marker) >= len(f.Marker) &&
		strings.TrimLeft(g.Line, " ") == g.Marker
}

// Closing is the fence line that closes the code block f opened: its
// marker, indented like f's line (so a block in a list item stays in it).
func (f Fence) Closing() string {
	return f.Line[:len(f.Line)-len(strings.TrimLeft(f.Line, " "))] + f.Marker
}

// Reopening returns the line with which Split reopens the code block f opened
// in the next piece: f's line or, if that is too long, its bare marker; or ""
// if even that is too long, and Split leaves the block open. The fence lines
// Split adds to a piece take at most a quarter of the limit.
func (f Fence) Reopening(limit int) string {
	for _, line := range []string{f.Line, f.Marker} {
		if utf8.RuneCountInString(line)+2+len(f.Closing()) <= limit/4 {
			return line
		}
	}
	return ""
}

// OpenFence reports whether text ends inside a fenced code block, and the
// fence that opened it.
func OpenFence(text string) (f Fence, open bool) {
	for line := range strings.Lines(text) {
		if !open {
			f, open = ParseFence(line)
		} else if f.ClosedBy(line) {
			open = false
		}
	}
	return f, open
}

package conversation

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// minSplitLimit is the smallest limit Split honours; below it fences can't fit.
const minSplitLimit = 40

// Split cuts Markdown text into pieces of at most limit characters (runes),
// preferring paragraph, then line, then word breaks in the second half of the
// limit: it breaks a word only if the word is longer than half the limit (a
// bit less in a code block). A piece that ends inside a fenced code block gets
// a closing fence line, and the next piece reopens the block with its opening
// line, info string included. Separators at a cut are dropped, and so are
// blank pieces: blank text yields none. Text that fits is returned as is.
func Split(text string, limit int) []string {
	parts := SplitParts(text, limit, nil)
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.String()
	}
	return out
}

// A Width is how much a rune counts against a limit: nil counts 1 for every
// rune; UTF16 counts UTF-16 code units, as Discord may.
type Width func(r rune) int

// UTF16 is the number of UTF-16 code units r takes: 2 outside the Basic
// Multilingual Plane (most emoji), else 1.
func UTF16(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// Len is how long s is measured with w.
func (w Width) Len(s string) int {
	if w == nil {
		return utf8.RuneCountInString(s)
	}
	n := 0
	for _, r := range s {
		n += w(r)
	}
	return n
}

// prefix returns the length in bytes of the longest prefix of s measuring
// at most n.
func (w Width) prefix(s string, n int) int {
	for i, r := range s {
		c := 1
		if w != nil {
			c = w(r)
		}
		if n < c {
			return i
		}
		n -= c
	}
	return len(s)
}

// A Part is one of Split's pieces: a stretch of the text (Body) and the
// fence lines Split adds around it.
type Part struct {
	Reopen string // the line reopening the code block the last piece cut, with "\n"
	Body   string
	Close  string // "\n" and the fence closing the code block Body ends in
}

// String is the piece as shown: Reopen + Body + Close.
func (p Part) String() string { return p.Reopen + p.Body + p.Close }

// SplitParts is Split measuring length with w, recording which fence lines
// it adds to each piece.
func SplitParts(text string, limit int, w Width) []Part {
	limit = max(limit, minSplitLimit)
	var parts []Part
	add := func(p Part) {
		if strings.TrimSpace(p.Body) != "" {
			parts = append(parts, p)
		}
	}
	reopen := ""
	for {
		end, next, whole := w.cut(reopen, text, len(reopen), limit)
		p := Part{Reopen: reopen, Body: text[:end]}
		if whole {
			add(p)
			return parts
		}
		p.Body = strings.TrimRightFunc(p.Body, unicode.IsSpace)
		reopen = ""
		if f, open := OpenFence(p.Reopen + text[:end]); open {
			if line := f.Reopening(limit); line != "" {
				p.Close = "\n" + f.Closing()
				reopen = line + "\n"
			}
		}
		add(p)
		text = text[next:]
	}
}

// Cut is where Split, measuring with w, ends the piece msg starts when the
// first keep bytes of msg must stay in it (a reopened fence line, or text a
// message already shows): the piece is msg[:end] but for trailing blanks
// and a line closing a code block it ends in; the next piece's text starts
// at msg[next:]. When all of msg fits, end and next are len(msg); when all
// but blanks fits, next is len(msg).
func Cut(msg string, keep, limit int, w Width) (end, next int) {
	end, next, _ = w.cut("", msg, keep, max(limit, minSplitLimit))
	return end, next
}

// cut does Cut's work for the piece made of reopen (a reopened fence line)
// and text, of which the first floor bytes must stay: end and next are
// offsets in text. whole reports that text's rest is blank, so the piece
// is the last: text[:end], trailing blanks trimmed if over the limit.
func (w Width) cut(reopen, text string, floor, limit int) (end, next int, whole bool) {
	head := w.prefix(text, limit-w.Len(reopen))
	if strings.TrimSpace(text[head:]) == "" { // the rest fits, but for trailing blanks
		if head < len(text) {
			return max(len(strings.TrimRightFunc(text, unicode.IsSpace)), floor-len(reopen)), len(text), true
		}
		return len(text), len(text), true
	}
	// What fits, and room for a separator right after it.
	chunk := reopen + text[:min(len(text), head+2)]
	end, sep := w.cutPoint(chunk, floor, len(reopen)+head, limit)
	end -= len(reopen)
	rest := text[end+len(sep):]
	if sep == " " {
		rest = strings.TrimLeft(rest, " \t")
	}
	rest = dropBlankLines(rest)
	return end, len(text) - len(rest), false
}

// cutPoint picks where to end a piece: chunk[:head] is what fits of the
// text left, starting with floor bytes that must stay (a reopened fence
// line). It cuts at the last paragraph, else line, else word break in the
// second half of the limit, else as late as possible, leaving room to close
// a code block. It returns the end of the piece and the separator found
// there.
func (w Width) cutPoint(chunk string, floor, head, limit int) (end int, sep string) {
	fits := func(end int) bool {
		return w.Len(chunk[:end])+closingLen(chunk[:end], limit) <= limit
	}
	lo := max(floor, w.prefix(chunk, limit/2))
	for _, sep := range []string{"\n\n", "\n", " "} {
		s := chunk[lo:min(len(chunk), head+len(sep))] // a separator may start at head
		for i := strings.LastIndex(s, sep); i >= 0; i = strings.LastIndex(s[:i], sep) {
			if fits(lo + i) {
				return lo + i, sep
			}
		}
	}
	for end = head; end > floor && !fits(end); {
		_, size := utf8.DecodeLastRuneInString(chunk[:end])
		end -= size
	}
	return end, ""
}

// closingLen is how long the line Split adds to close the code block piece
// ends in is, if any, with its "\n" (fence lines are ASCII).
func closingLen(piece string, limit int) int {
	if f, open := OpenFence(piece); open && f.Reopening(limit) != "" {
		return 1 + len(f.Closing())
	}
	return 0
}

// dropBlankLines removes the blank lines s starts with.
func dropBlankLines(s string) string {
	for {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok || strings.TrimSpace(line) != "" {
			return s
		}
		s = rest
	}
}

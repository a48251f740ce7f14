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
	pieces := splitPieces(text, limit)
	out := make([]string, len(pieces))
	for i, p := range pieces {
		out[i] = p.reopen + p.body + p.close
	}
	return out
}

// A splitPiece is one of Split's pieces: a stretch of the text (body) and the
// fence lines Split adds around it.
type splitPiece struct {
	reopen string // the line reopening the code block the last piece cut, with "\n"
	body   string
	close  string // "\n" and the fence closing the code block body ends in
}

// splitPieces does Split's work, recording which fence lines it adds.
func splitPieces(text string, limit int) []splitPiece {
	limit = max(limit, minSplitLimit)
	var pieces []splitPiece
	add := func(p splitPiece) {
		if strings.TrimSpace(p.body) != "" {
			pieces = append(pieces, p)
		}
	}
	reopen := ""
	for {
		head := byteOffset(text, limit-utf8.RuneCountInString(reopen))
		if strings.TrimSpace(text[head:]) == "" { // the rest fits, but for trailing blanks
			if head < len(text) {
				text = strings.TrimRightFunc(text, unicode.IsSpace)
			}
			add(splitPiece{reopen: reopen, body: text})
			return pieces
		}
		// What fits, and room for a separator right after it.
		floor := len(reopen)
		chunk := reopen + text[:min(len(text), head+2)]
		end, sep := cutPoint(chunk, floor, floor+head, limit)
		p := splitPiece{reopen: reopen, body: strings.TrimRightFunc(chunk[floor:end], unicode.IsSpace)}
		reopen = ""
		if f, open := OpenFence(chunk[:end]); open {
			if line := f.Reopening(limit); line != "" {
				p.close = "\n" + f.Marker
				reopen = line + "\n"
			}
		}
		add(p)
		text = text[end-floor+len(sep):]
		if sep == " " {
			text = strings.TrimLeft(text, " \t")
		}
		text = dropBlankLines(text)
	}
}

// cutPoint picks where to end a piece: chunk[:head] is the first limit
// characters of what is left, starting with floor bytes of reopened fence
// line. It cuts at the last paragraph, else line, else word break in the
// second half of the limit, else as late as possible, leaving room to close a
// code block. It returns the end of the piece and the separator found there.
func cutPoint(chunk string, floor, head, limit int) (end int, sep string) {
	fits := func(end int) bool {
		return utf8.RuneCountInString(chunk[:end])+closingLen(chunk[:end], limit) <= limit
	}
	lo := max(floor, byteOffset(chunk, limit/2))
	for _, sep := range []string{"\n\n", "\n", " "} {
		s := chunk[lo:min(len(chunk), head+len(sep))] // a separator may start at head
		for i := strings.LastIndex(s, sep); i >= 0; i = strings.LastIndex(s[:i], sep) {
			if fits(lo + i) {
				return lo + i, sep
			}
		}
	}
	for end = head; !fits(end); {
		_, size := utf8.DecodeLastRuneInString(chunk[:end])
		end -= size
	}
	return end, ""
}

// closingLen is how many characters Split adds to close the code block piece
// ends in, if any.
func closingLen(piece string, limit int) int {
	if f, open := OpenFence(piece); open && f.Reopening(limit) != "" {
		return 1 + len(f.Marker) // "\n" and the marker
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

// byteOffset returns the byte index of the n-th rune of s (len(s) if fewer).
func byteOffset(s string, n int) int {
	for i := range s {
		if n <= 0 {
			return i
		}
		n--
	}
	return len(s)
}

package conversation

import (
	"strings"
	"unicode/utf8"
)

// minSplitLimit is the smallest limit Split honours; below it fences can't fit.
const minSplitLimit = 40

// Split cuts Markdown text into pieces of at most limit characters (runes),
// preferring paragraph, then line, then word breaks, never leaving a fenced
// code block open: a piece that ends inside a fence closes it, and the next
// piece reopens it with the same info string.
func Split(text string, limit int) []string {
	limit = max(limit, minSplitLimit)
	var out []string
	reopen := ""
	for {
		chunk := reopen + text
		if utf8.RuneCountInString(chunk) <= limit {
			if strings.TrimSpace(text) != "" || len(out) == 0 {
				out = append(out, chunk)
			}
			return out
		}
		// Room for a closing "\n```" at the end of this piece.
		head := chunk[:byteOffset(chunk, limit-len(fenceClose))]
		cut, skip := breakPoint(head, len(reopen))
		piece, rest := chunk[:cut], chunk[cut+skip:]
		if fence, open := openFence(piece); open {
			piece = strings.TrimRight(piece, "\n") + fenceClose
			reopen = fence + "\n"
		} else {
			reopen = ""
		}
		out = append(out, piece)
		text = rest
	}
}

const fenceClose = "\n```"

// breakPoint picks where to cut head: the last blank line, else the last
// newline, else the last space, each only if it keeps at least half of head;
// else the end of head. skip is how many separator bytes to drop there.
func breakPoint(head string, floor int) (cut, skip int) {
	half := floor + (len(head)-floor)/2
	for _, sep := range []string{"\n\n", "\n", " "} {
		if i := strings.LastIndex(head, sep); i > half {
			return i, len(sep)
		}
	}
	return len(head), 0
}

// openFence reports whether text ends inside a fenced code block, and the
// fence line (``` plus info string) that opened it.
func openFence(text string) (fence string, open bool) {
	for line := range strings.Lines(text) {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "```") {
			continue
		}
		if open {
			if strings.Trim(t, "`") == "" {
				open = false
			}
			continue
		}
		open = true
		fence = t
		if len(fence) > 24 || strings.Contains(fence[3:], "`") {
			fence = "```"
		}
	}
	return fence, open
}

// byteOffset returns the byte index of the n-th rune of s (len(s) if fewer).
func byteOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

// Package render shows an answer's frames as chat messages, the same way on
// every platform: Layout turns a frame into the contents of the messages
// that show it, in a platform's Style, and Messages.Sync posts, edits and
// deletes messages through a platform's Surface until they show those
// contents.
package render

import (
	"strings"
	"unicode"

	"github.com/arkbot/arkbot/conversation"
)

// Style is how a platform shows an answer.
type Style struct {
	// Limit is the most a message may hold, measured with Width.
	Limit int
	// Width is how the platform measures a message (nil: in runes).
	Width conversation.Width
	// Reserve is the room every piece of an answer's text leaves under
	// Limit for what Layout adds to the last one: the cursor and a line
	// closing a code block. A note that doesn't fit goes to a message of its own.
	Reserve int
	// Cursor trails the last piece while the answer streams.
	Cursor string
	// Placeholder is the answer's message before any text; Thinking
	// replaces it while the model reasons ("" keeps Placeholder).
	Placeholder, Thinking string
	// Note formats a final note (never blank) in the platform's Markdown:
	// under the answer's text, after NoteSep, or as the whole answer
	// (alone) when it has no text.
	Note    func(o conversation.Outcome, note string, alone bool) string
	NoteSep string
	// Empty is the answer when a final frame has neither text nor note
	// ("": no message at all).
	Empty string
}

// Layout returns the contents of the messages that show f: the answer's
// text split under the style's limit by conversation.Split's rule (a piece
// cut inside a code block is closed, and the next reopens it); while the
// answer streams, a cursor on the last piece (inside a code block the text
// ends in, which stays rendered as code) and the activity line under it
// if the model is busy (see ActivityLine); on a final frame, a code block
// the text ends in closed and the note under it. Before any text it is the
// activity line, else the placeholder (or the thinking line).
func Layout(s Style, f conversation.Frame) []string {
	text := strings.TrimRightFunc(f.Text, unicode.IsSpace)
	if text == "" {
		switch {
		case !f.Final && f.Activity != "":
			return []string{s.fit(ActivityLine(f.Activity))}
		case !f.Final && f.Reasoning != "" && s.Thinking != "":
			return []string{s.Thinking}
		case !f.Final:
			return []string{s.Placeholder}
		}
		if note := noteFor(f); note != "" {
			return []string{s.fit(s.Note(f.Outcome, note, true))}
		}
		if s.Empty == "" {
			return nil
		}
		return []string{s.Empty}
	}
	tail := ""
	if !f.Final {
		tail = "\n" + s.Cursor // room for the cursor on a line of its own
	}
	parts := conversation.SplitParts(text, s.splitLimit(text, tail), s.Width)
	pieces := make([]string, len(parts))
	for i, p := range parts {
		pieces[i] = p.String()
	}
	last := len(pieces) - 1
	if !f.Final {
		tail = s.cursor(pieces[last])
	}
	if with := pieces[last] + tail + s.closing(pieces[last]); s.Width.Len(with) <= s.Limit {
		pieces[last] = with
	} else { // the piece isn't inside the block the text ends in (its fence didn't fit)
		pieces[last] += tail
	}
	if act := "\n" + ActivityLine(f.Activity); !f.Final && f.Activity != "" && s.Width.Len(pieces[last]+act) <= s.Limit {
		pieces[last] += act
	}
	if note := noteFor(f); f.Final && note != "" {
		block := s.Note(f.Outcome, note, false)
		if with := pieces[last] + s.NoteSep + block; s.Width.Len(with) <= s.Limit {
			pieces[last] = with
		} else {
			pieces = append(pieces, s.fit(block))
		}
	}
	return pieces
}

// Tail is what Layout puts under a final frame's text, whatever its
// length: a line closing a code block the text ends in, and the note.
func (s Style) Tail(f conversation.Frame) string {
	t := ""
	if fe, open := conversation.OpenFence(strings.TrimRightFunc(f.Text, unicode.IsSpace)); open {
		t = "\n" + fe.Closing()
	}
	if note := noteFor(f); note != "" {
		t += s.NoteSep + s.Note(f.Outcome, note, false)
	}
	return t
}

// cursor is the cursor to put after piece: on a line of its own after a
// fence line, which would no longer close (or open) its block.
func (s Style) cursor(piece string) string {
	if _, ok := conversation.ParseFence(piece[strings.LastIndex(piece, "\n")+1:]); ok {
		return "\n" + strings.TrimLeft(s.Cursor, " ")
	}
	return s.Cursor
}

// splitLimit is the limit text is split under: Limit less room for tail
// and a line closing the code block text ends in.
func (s Style) splitLimit(text, tail string) int {
	return s.Limit - max(s.Reserve, s.Width.Len(tail+s.closing(text)))
}

// closing is "\n" and the fence line closing the code block piece ends in,
// if any; a fence too long for the pieces (see conversation.Fence.Reopening)
// stays open, as conversation.Split leaves it.
func (s Style) closing(piece string) string {
	if f, open := conversation.OpenFence(piece); open && f.Reopening(s.Limit-s.Reserve) != "" {
		return "\n" + f.Closing()
	}
	return ""
}

// fit cuts a message the style formatted down to Limit.
func (s Style) fit(msg string) string {
	return truncate(msg, s.Limit, s.Width)
}

// noteFor is the frame's note, or a default for an outcome that needs saying.
func noteFor(f conversation.Frame) string {
	if note := strings.TrimSpace(f.Note); note != "" {
		return note
	}
	switch f.Outcome {
	case conversation.OutcomeStopped:
		return "Stopped."
	case conversation.OutcomeTruncated:
		return "The answer reached the length limit."
	case conversation.OutcomeFiltered:
		return "The answer was stopped by content moderation."
	case conversation.OutcomeInterrupted:
		return "The answer was interrupted."
	case conversation.OutcomeFailed:
		return "No answer could be produced. Please try again."
	}
	return ""
}

// Truncate cuts s to at most n runes, ending it with "…" if cut.
func Truncate(s string, n int) string { return truncate(s, n, nil) }

func truncate(s string, n int, w conversation.Width) string {
	if w.Len(s) <= n {
		return s
	}
	used := w.Len("…")
	for i, r := range s {
		used += w.Len(string(r))
		if used > n {
			return s[:i] + "…"
		}
	}
	return s
}

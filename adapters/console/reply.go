package console

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/charmbracelet/glamour"
	"github.com/mattn/go-runewidth"
	"github.com/muesli/termenv"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
)

// reply prints one answer as it streams. On a terminal the finished answer
// replaces its streamed text, rendered as Markdown.
type reply struct {
	c         *Console
	printed   int // bytes of Frame.Text printed
	reasoning int // bytes of Frame.Reasoning printed
	started   bool
	open      bool   // a line is being printed
	lead      string // what precedes the text on its first row: the header, or nothing after reasoning
}

func (r *reply) Begin(context.Context) error {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.interactive {
		fmt.Fprintf(r.c.out, "%sthinking…%s\r", dim, reset)
	}
	return nil
}

func (r *reply) Render(_ context.Context, f conversation.Frame) error {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	out := r.c.out
	f = render.WithSources(f, render.SourcesFootnotes)
	if r.c.interactive && f.Activity != "" && !r.started && r.reasoning == 0 {
		// Like "thinking…", on the line the header then takes.
		fmt.Fprintf(out, "\x1b[2K%s🔎 %s%s\r", dim, f.Activity, reset)
	}
	if r.c.thinking || r.c.interactive {
		if len(f.Reasoning) > r.reasoning {
			if r.reasoning == 0 {
				r.header(f.Model)
				fmt.Fprint(out, dim+"(thinking) ")
			} else if r.c.interactive {
				fmt.Fprint(out, dim)
			}
			fmt.Fprint(out, f.Reasoning[r.reasoning:])
			if r.c.interactive {
				fmt.Fprint(out, reset)
			}
			r.reasoning = len(f.Reasoning)
			r.open = true
		}
	}
	if len(f.Text) > r.printed {
		if r.printed == 0 {
			if r.reasoning > 0 {
				fmt.Fprint(out, reset+"\n")
			}
			r.header(f.Model)
		}
		fmt.Fprint(out, f.Text[r.printed:])
		r.printed = len(f.Text)
		r.open = true
	}
	if f.Final {
		if r.printed > 0 && r.rerender(f) {
			// The Markdown closed any code block; the note stays.
			if note := style.Tail(conversation.Frame{Outcome: f.Outcome, Note: f.Note}); note != "" {
				fmt.Fprintln(out, strings.TrimPrefix(note, "\n"))
			}
			r.open = false
			return nil
		}
		// What the chat platforms show under the answer (render.Style.Tail),
		// or instead of it when there was none.
		end := style.Tail(f)
		if r.printed == 0 {
			end = strings.Join(render.Layout(style, f), "\n")
			if r.open && end != "" {
				end = "\n" + end
			}
		}
		if r.open || end != "" {
			fmt.Fprintln(out, end)
		}
		r.open = false
	}
	return nil
}

// style is how the console ends an answer: its note on a line of its own.
// A terminal has no message limit.
var style = render.Style{
	Limit:   math.MaxInt,
	NoteSep: "\n",
	Note:    func(_ conversation.Outcome, note string, _ bool) string { return "⚠ " + note },
}

// header names the model once, before the answer's first characters.
func (r *reply) header(model string) {
	if r.started {
		return
	}
	r.started = true
	if r.c.interactive {
		fmt.Fprintf(r.c.out, "\x1b[2K%s%s>%s ", bold, model, reset)
		r.lead = model + "> "
	} else {
		fmt.Fprintf(r.c.out, "%s: ", model)
	}
}

// rerender replaces the streamed text of f, on the terminal's screen, with
// f's text rendered as Markdown. It does nothing (and reports false) unless
// out is a terminal and the streamed text still fits on its screen.
func (r *reply) rerender(f conversation.Frame) bool {
	if r.c.size == nil || strings.ContainsAny(f.Text, "\t\r\x1b") {
		return false
	}
	w, h, err := r.c.size()
	if err != nil || w < 20 {
		return false
	}
	lead := r.lead
	if r.reasoning > 0 {
		lead = ""
	}
	n := rows(lead+f.Text, w)
	if n >= h {
		return false
	}
	md, err := markdown(f.Text+style.Tail(conversation.Frame{Text: f.Text}), w)
	if err != nil {
		return false
	}
	out := r.c.out
	if n > 1 {
		fmt.Fprintf(out, "\x1b[%dA", n-1)
	}
	fmt.Fprint(out, "\r\x1b[J")
	if lead != "" {
		fmt.Fprintf(out, "%s%s%s\n", bold, strings.TrimSuffix(lead, " "), reset)
	}
	fmt.Fprintln(out, strings.Trim(md, "\n"))
	return true
}

// rows is how many rows of a terminal w columns wide s takes.
func rows(s string, w int) int {
	n := 0
	for line := range strings.SplitSeq(s, "\n") {
		n += max(1, (runewidth.StringWidth(line)+w-1)/w)
	}
	return n
}

// markdown renders text for a terminal w columns wide, in the style
// GLAMOUR_STYLE names (glamour's "dark" by default).
func markdown(text string, w int) (string, error) {
	name := os.Getenv("GLAMOUR_STYLE")
	if name == "" || name == "auto" {
		name = "dark" // "auto" would query the terminal, whose input the console reads
	}
	// Line breaks are kept, as Slack and Discord keep them.
	tr, err := glamour.NewTermRenderer(glamour.WithStylePath(name), glamour.WithWordWrap(min(w-4, 120)),
		glamour.WithColorProfile(termenv.EnvColorProfile()), glamour.WithPreservedNewLines())
	if err != nil {
		return "", err
	}
	md, err := tr.Render(text)
	if err != nil {
		return "", err
	}
	// glamour pads lines to the wrap width: padding that would wrap, and
	// leave blank rows, if the terminal narrows.
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n"), nil
}

func (r *reply) Notice(_ context.Context, text string) error {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.c.interactive {
		fmt.Fprint(r.c.out, "\x1b[2K")
	}
	if r.c.size != nil {
		if w, _, err := r.c.size(); err == nil && w >= 20 {
			if md, err := markdown(text, w); err == nil {
				text = strings.Trim(md, "\n")
			}
		}
	}
	fmt.Fprintln(r.c.out, text)
	return nil
}

func (r *reply) end() {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.open {
		fmt.Fprintln(r.c.out)
	}
}

package render

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/arkbot/arkbot/conversation"
)

// SourceFormat is how a platform lists the web pages an answer cites.
type SourceFormat int

// The platforms' source formats.
const (
	// SourcesMarkdown: numbered Markdown links, [title](url), which Slack's
	// mrkdwn conversion writes as <url|title>.
	SourcesMarkdown SourceFormat = iota
	// SourcesDiscord: numbered [title](<url>) links; the angle brackets
	// keep Discord from embedding a preview of every page.
	SourcesDiscord
	// SourcesFootnotes: "[1] title: url" lines, for a terminal, which
	// shows a URL as it is.
	SourcesFootnotes
)

// Bounds on a sources list.
const (
	maxSources     = 10
	maxSourceTitle = 80 // runes
)

// WithSources returns f with the web pages it cites listed under its
// text in format, on a final frame with text; any other frame is
// returned as it is. Adapters call it first thing in Render, so the list
// is laid out, split and synced like the rest of the answer.
func WithSources(f conversation.Frame, format SourceFormat) conversation.Frame {
	if !f.Final || len(f.Sources) == 0 || strings.TrimSpace(f.Text) == "" {
		return f
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(f.Text, " \t\n"))
	if format == SourcesFootnotes {
		b.WriteString("\n\nSources:")
	} else {
		b.WriteString("\n\n**Sources**")
	}
	for i, s := range f.Sources[:min(len(f.Sources), maxSources)] {
		title := sourceTitle(s)
		switch format {
		case SourcesFootnotes:
			fmt.Fprintf(&b, "\n[%d] %s: %s", i+1, title, s.URL)
		case SourcesDiscord:
			fmt.Fprintf(&b, "\n%d. [%s](<%s>)", i+1, title, linkTarget(s.URL))
		default:
			fmt.Fprintf(&b, "\n%d. [%s](%s)", i+1, title, linkTarget(s.URL))
		}
	}
	f.Text = b.String()
	return f
}

// sourceTitle is s's title on one line, without the characters that
// would end a link's label or format it, cut to maxSourceTitle runes;
// the URL's host when it has none.
func sourceTitle(s conversation.Source) string {
	title := strings.Map(func(r rune) rune {
		switch r {
		case '[', ']', '<', '>', '|', '*', '_', '`', '~', '\\':
			return ' '
		}
		return r
	}, s.Title)
	title = strings.Join(strings.Fields(title), " ")
	if title == "" {
		if u, err := url.Parse(s.URL); err == nil && u.Host != "" {
			title = u.Host
		} else {
			title = "link"
		}
	}
	return Truncate(title, maxSourceTitle)
}

// linkTarget escapes what would end a Markdown link's target early.
var linkTarget = strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E", "|", "%7C").Replace

// ActivityLine is the line that says what the model is doing while it
// does not write (conversation.Frame.Activity), such as a web search.
func ActivityLine(activity string) string { return "🔎 _" + activity + "_" }

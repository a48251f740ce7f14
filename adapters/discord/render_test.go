package discord

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
)

func TestLayoutStreamingAndFinal(t *testing.T) {
	if got := render.Layout(style, conversation.Frame{}); len(got) != 1 || got[0] != placeholder {
		t.Fatalf("empty = %q", got)
	}
	if got := render.Layout(style, conversation.Frame{Reasoning: "hmm"}); got[0] != thinkingMsg+cursor {
		t.Fatalf("thinking = %q", got)
	}
	if got := render.Layout(style, conversation.Frame{Text: "Hello "}); got[0] != "Hello"+cursor {
		t.Fatalf("live = %q", got)
	}
	// Streaming inside a code block keeps the block closed, cursor inside.
	if got := render.Layout(style, conversation.Frame{Text: "See:\n```go\nfunc f() {"}); got[0] != "See:\n```go\nfunc f() {"+cursor+"\n```" {
		t.Fatalf("live fence = %q", got)
	}
	if got := render.Layout(style, conversation.Frame{Text: "Done.", Final: true, Outcome: conversation.OutcomeDone}); got[0] != "Done." {
		t.Fatalf("final = %q", got)
	}
	got := render.Layout(style, conversation.Frame{Text: "Part", Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark said:\n quota exceeded"})
	if got[0] != "Part\n-# ⚠️ Ark said: quota exceeded" {
		t.Fatalf("note = %q", got)
	}
	got = render.Layout(style, conversation.Frame{Text: "x\n```py\nprint(1)", Final: true, Outcome: conversation.OutcomeTruncated})
	if got[0] != "x\n```py\nprint(1)\n```\n-# ⚠️ The answer reached the length limit." {
		t.Fatalf("truncated in fence = %q", got)
	}
	if got := render.Layout(style, conversation.Frame{Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark is unreachable."}); got[0] != "⚠️ Ark is unreachable." {
		t.Fatalf("failed = %q", got)
	}
	if got := render.Layout(style, conversation.Frame{Text: "a", Final: true, Outcome: conversation.OutcomeStopped}); got[0] != "a\n-# ⏹️ Stopped." {
		t.Fatalf("stopped = %q", got)
	}
	// A note that doesn't fit goes to its own message.
	full := strings.Repeat("word ", 396) + "end" // 1983 characters
	got = render.Layout(style, conversation.Frame{Text: full, Final: true, Outcome: conversation.OutcomeInterrupted, Note: strings.Repeat("n", 50)})
	if len(got) != 2 || !strings.HasPrefix(got[1], "-# ⚠️ ") {
		t.Fatalf("overflowing note = %d pieces", len(got))
	}
	for _, p := range got {
		if n := len(utf16.Encode([]rune(p))); n > maxContent {
			t.Fatalf("piece over limit: %d", n)
		}
	}
}

func TestLayoutLimitsAstralCharacters(t *testing.T) {
	text := strings.Repeat("😀 ", 1500) // 3,000 runes, 4,500 UTF-16 units
	for _, p := range render.Layout(style, conversation.Frame{Text: text, Final: true, Outcome: conversation.OutcomeDone}) {
		if units := len(utf16.Encode([]rune(p))); units > maxContent {
			t.Fatalf("piece has %d UTF-16 units", units)
		}
	}
}

func TestModelChoicesOrderAndLimit(t *testing.T) {
	var models []conversation.ModelChoice
	for _, n := range []string{"alpha", "beta", "gamma", "doubao-pro", "doubao-lite", "deepseek-r1"} {
		models = append(models, conversation.ModelChoice{Name: n})
	}
	models[4].Current = true
	names := func(cs []*discordgo.ApplicationCommandOptionChoice) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Value.(string))
		}
		return strings.Join(out, ",")
	}
	if got := names(modelChoices(models, "")); got != "doubao-lite,alpha,beta,gamma,doubao-pro,deepseek-r1" {
		t.Fatalf("all = %s", got)
	}
	if got := names(modelChoices(models, "do")); got != "doubao-lite,doubao-pro" {
		t.Fatalf("prefix = %s", got)
	}
	if got := names(modelChoices(models, "a")); got != "doubao-lite,alpha,beta,gamma,doubao-pro" {
		t.Fatalf("substring = %s", got)
	}
	var many []conversation.ModelChoice
	for i := 0; i < 40; i++ {
		many = append(many, conversation.ModelChoice{Name: "m" + strings.Repeat("x", i), Description: strings.Repeat("d", 120)})
	}
	cs := modelChoices(many, "")
	if len(cs) != 25 {
		t.Fatalf("%d choices", len(cs))
	}
	for _, c := range cs {
		if utf8.RuneCountInString(c.Name) > 100 {
			t.Fatalf("label too long: %d", utf8.RuneCountInString(c.Name))
		}
	}
}

func TestCleanText(t *testing.T) {
	m := &discordgo.Message{
		Content:  "<@1>  hey <@!2>, look:\n    indented <@1>",
		Mentions: []*discordgo.User{{ID: "1", Username: "bot"}, {ID: "2", Username: "bob", GlobalName: "Bob"}},
	}
	if got := cleanText(m, "1"); got != "hey @Bob, look:\n    indented" {
		t.Fatalf("clean = %q", got)
	}
}

func TestIDFromToken(t *testing.T) {
	tok := base64.RawStdEncoding.EncodeToString([]byte("123456789012345678")) + ".Gabc.def"
	if got := idFromToken("Bot " + tok); got != "123456789012345678" {
		t.Fatalf("id = %q", got)
	}
	if got := idFromToken("garbage"); got != "" {
		t.Fatalf("garbage = %q", got)
	}
}

// TestRateLimits: the channel limit is a sliding window of the calls
// Discord allows per window.
func TestRateLimits(t *testing.T) {
	for _, calls := range []int{1, 2, 5, 40} {
		ch := rateLimits(calls, 5*time.Second, 50)[limitChannel]
		if ch.Burst != calls || ch.Window != 5500*time.Millisecond || ch.Scope != ratelimit.PerChannel {
			t.Errorf("%d calls: %+v, want %d per 5 s window (and 10%%) per channel", calls, ch, calls)
		}
	}
	if g := rateLimits(5, time.Second, 50)[limitGlobal]; g.PerSecond != 50 || g.Burst != 5 || g.Scope != ratelimit.Global {
		t.Errorf("global limit %+v", g)
	}
	if g := rateLimits(5, time.Second, 0)[limitGlobal]; g.PerSecond > 0 {
		t.Errorf("no global budget, yet %+v", g)
	}
	limited := &discordgo.RateLimitError{RateLimit: &discordgo.RateLimit{TooManyRequests: &discordgo.TooManyRequests{RetryAfter: 1500 * time.Millisecond}}}
	if kind, after := classify(fmt.Errorf("post: %w", limited)); kind != ratelimit.RateLimited || after != 1500*time.Millisecond {
		t.Errorf("classify(429) = %v, %v", kind, after)
	}
	for err, want := range map[error]ratelimit.Kind{
		&discordgo.RESTError{Response: &http.Response{StatusCode: http.StatusInternalServerError}}: ratelimit.Transient,
		&discordgo.RESTError{Response: &http.Response{StatusCode: http.StatusForbidden}}:           ratelimit.Failed,
		&net.OpError{Op: "dial", Err: errors.New("refused")}:                                       ratelimit.Transient,
		context.DeadlineExceeded: ratelimit.Failed,
	} {
		if kind, _ := classify(err); kind != want {
			t.Errorf("classify(%v) = %v, want %v", err, kind, want)
		}
	}
}

// fakeSink records calls, for reply tests without a server.
type fakeSink struct {
	posts, edits, removes int
	ids                   []string
}

func (f *fakeSink) budgetKey() string { return "fake" }

func (f *fakeSink) post(_ context.Context, _ ratelimit.Priority, content string, _ []discordgo.MessageComponent, _ string) (string, error) {
	f.posts++
	id := fmt.Sprint("m", f.posts)
	f.ids = append(f.ids, id)
	return id, nil
}
func (f *fakeSink) edit(context.Context, ratelimit.Priority, string, string, []discordgo.MessageComponent) error {
	f.edits++
	return nil
}
func (f *fakeSink) remove(context.Context, string) error { f.removes++; return nil }

func TestPlaceholderRemovedWhenEngineOnlyNotices(t *testing.T) {
	a := &Adapter{chains: newLRU[string, string](10), log: testLogger(), budget: ratelimit.New("discord", rateLimits(5, 5*time.Second, 50))}
	s := &fakeSink{}
	r := a.newReply("discord:g:1", s, nil, s, "")
	if err := r.Begin(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Notice(t.Context(), "You have used today's tokens."); err != nil {
		t.Fatal(err)
	}
	r.finish(nil)
	if s.posts != 2 || s.removes != 1 || len(r.msgs.List) != 0 {
		t.Fatalf("posts %d removes %d msgs %d", s.posts, s.removes, len(r.msgs.List))
	}
}

func TestRouteName(t *testing.T) {
	for url, want := range map[string]string{
		"https://discord.com/api/v10/channels/1/messages":               "messages.create",
		"https://discord.com/api/v10/channels/1/messages/2":             "messages.edit",
		"http://127.0.0.1:5/api/v9/channels/1/messages/2/threads":       "threads.create",
		"https://discord.com/api/v10/webhooks/1/tok/messages/@original": "webhooks.edit",
		"https://discord.com/api/v10/webhooks/1/tok?wait=true":          "webhooks.execute",
		"https://discord.com/api/v10/interactions/1/tok/callback":       "interactions.callback",
		"https://discord.com/api/v10/applications/1/guilds/2/commands":  "commands.bulk_overwrite",
		"https://discord.com/api/v10/channels/1":                        "channels.get",
	} {
		if got := routeName(url); got != want {
			t.Errorf("routeName(%s) = %s, want %s", url, got, want)
		}
	}
}

// TestLayoutFencesInDiscordStyle: answers cut inside code blocks of every
// kind stay within Discord's limit (in UTF-16 units) with every piece's
// blocks closed, streaming and final.
func TestLayoutFencesInDiscordStyle(t *testing.T) {
	for _, text := range []string{
		"Intro.\n\n```go\n" + strings.Repeat("fmt.Println(\"héllo 😀\")\n", 200) + "```\nDone.",
		"~~~python\n" + strings.Repeat("print('hello, world')\n", 200),
		"1. Run:\n   ```sh\n" + strings.Repeat("   echo hello world\n", 250) + "   ```\n2. Done.",
		"````markdown\n" + strings.Repeat("```go\nx := 1\n```\n", 200),
	} {
		for _, final := range []bool{false, true} {
			f := conversation.Frame{Text: text, Final: final}
			if final {
				f.Outcome, f.Note = conversation.OutcomeTruncated, "Cut off."
			}
			pieces := render.Layout(style, f)
			if len(pieces) < 2 {
				t.Fatalf("%.20q: not cut", text)
			}
			for i, p := range pieces {
				if n := len(utf16.Encode([]rune(p))); n > maxContent {
					t.Errorf("%.20q piece %d: %d units", text, i, n)
				}
				if _, open := conversation.OpenFence(p); open {
					t.Errorf("%.20q piece %d ends inside a code block", text, i)
				}
			}
			last := pieces[len(pieces)-1]
			if final && !strings.HasSuffix(last, "\n-# ⚠️ Cut off.") || !final && !strings.Contains(last, "▌") {
				t.Errorf("%.20q final %v: last piece ends %q", text, final, last[max(0, len(last)-40):])
			}
		}
	}
}

package slack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

func unitAdapter(t *testing.T, mut func(*config.Slack)) *Adapter {
	t.Helper()
	cfg := config.Slack{BotToken: "xoxb-x", AppToken: "xapp-x", Admins: config.StringList{"UADMIN"}}
	if mut != nil {
		mut(&cfg)
	}
	a, err := New(cfg, config.Limits{}, newScripted())
	if err != nil {
		t.Fatal(err)
	}
	a.id.Store(&identity{userID: "UBOT", botID: "BBOT", teamID: "T1"})
	return a
}

func TestClassify(t *testing.T) {
	msg := func(typ, ch, chType, user, text, ts, thread string) innerEvent {
		return innerEvent{Type: typ, Channel: ch, ChannelType: chType, User: user, Text: text, TS: ts, ThreadTS: thread}
	}
	cases := []struct {
		name   string
		always bool
		ev     innerEvent
		reason string
		// expectations when accepted
		thread              string
		mentioned, inThread bool
		dm                  bool
		text                string
	}{
		{name: "top-level mention", ev: msg("app_mention", "C1", "", "U1", "<@UBOT> hi", "1.1", ""), thread: "1.1", mentioned: true, text: "hi"},
		{name: "mention in thread", ev: msg("app_mention", "C1", "", "U1", "hey <@UBOT|ark> hi", "1.2", "1.1"), thread: "1.1", mentioned: true, inThread: true, text: "hey hi"},
		{name: "thread parent mention", ev: msg("app_mention", "C1", "", "U1", "<@UBOT> hi", "1.1", "1.1"), thread: "1.1", mentioned: true, text: "hi"},
		{name: "follow-up, mentioned mode", ev: msg("message", "C1", "channel", "U1", "more", "1.2", "1.1"), thread: "1.1", inThread: true, text: "more"},
		{name: "follow-up, always mode", always: true, ev: msg("message", "C1", "channel", "U1", "more", "1.2", "1.1"), thread: "1.1", mentioned: true, inThread: true, text: "more"},
		{name: "private channel follow-up", ev: msg("message", "G1", "group", "U1", "more", "1.2", "1.1"), thread: "1.1", inThread: true, text: "more"},
		{name: "message with mention", ev: msg("message", "C1", "channel", "U1", "<@UBOT> hi", "1.1", ""), reason: ignoreMention},
		{name: "message with mention in thread", ev: msg("message", "C1", "channel", "U1", "<@UBOT> hi", "1.2", "1.1"), reason: ignoreMention},
		{name: "top-level chatter", ev: msg("message", "C1", "channel", "U1", "hi all", "1.1", ""), reason: ignoreTopLevel},
		{name: "group DM chatter", ev: msg("message", "M1", "mpim", "U1", "hi", "1.1", ""), reason: ignoreTopLevel},
		{name: "DM", ev: msg("message", "D1", "im", "U1", "hi", "1.1", ""), thread: "", mentioned: true, dm: true, text: "hi"},
		{name: "DM with mention", ev: msg("message", "D1", "im", "U1", "<@UBOT> hi", "1.1", ""), thread: "", mentioned: true, dm: true, text: "hi"},
		{name: "DM app_mention", ev: msg("app_mention", "D1", "", "U1", "<@UBOT> hi", "1.1", ""), thread: "", mentioned: true, dm: true, text: "hi"},
		{name: "DM thread", ev: msg("message", "D1", "im", "U1", "hi", "1.2", "1.1"), thread: "1.1", mentioned: true, inThread: true, dm: true, text: "hi"},
		{name: "own message", ev: msg("message", "D1", "im", "UBOT", "hi", "1.1", ""), reason: ignoreSelf},
		{name: "no user", ev: msg("message", "D1", "im", "", "hi", "1.1", ""), reason: ignoreBot},
		{name: "other event", ev: innerEvent{Type: "reaction_added", User: "U1"}, reason: ignoreType},
		{name: "no channel", ev: msg("message", "", "im", "U1", "hi", "1.1", ""), reason: ignoreNoTS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := unitAdapter(t, func(s *config.Slack) {
				if c.always {
					s.ReplyInThreads = "always"
				}
			})
			d, reason := a.classify("T1", c.ev)
			if reason != c.reason {
				t.Fatalf("reason = %q, want %q", reason, c.reason)
			}
			if reason != "" {
				return
			}
			m := d.msg
			if m.Thread != c.thread || m.Mentioned != c.mentioned || m.InThread != c.inThread || m.DM != c.dm || m.Text != c.text ||
				m.ID != c.ev.Channel+":"+c.ev.TS || m.Workspace != "T1" || m.Platform != conversation.PlatformSlack || !m.User.CanSwitchModel {
				t.Fatalf("message = %+v", m)
			}
		})
	}

	a := unitAdapter(t, nil)
	for _, ev := range []innerEvent{
		{Type: "message", Subtype: "bot_message", BotID: "B1", Channel: "D1", ChannelType: "im", TS: "1.1", User: "U1"},
		{Type: "message", Subtype: "message_changed", Channel: "D1", ChannelType: "im", TS: "1.1", User: "U1"},
		{Type: "message", Subtype: "message_deleted", Channel: "D1", ChannelType: "im", TS: "1.1"},
	} {
		if _, reason := a.classify("T1", ev); reason == "" {
			t.Errorf("%s accepted", ev.Subtype)
		}
	}
	for _, sub := range []string{"file_share", "thread_broadcast"} {
		ev := innerEvent{Type: "message", Subtype: sub, Channel: "D1", ChannelType: "im", TS: "1.1", User: "U1"}
		if _, reason := a.classify("T1", ev); reason != "" {
			t.Errorf("%s refused: %s", sub, reason)
		}
	}
	admin, _ := a.classify("", innerEvent{Type: "app_mention", Channel: "C1", TS: "1.1", User: "UADMIN", Team: "T9"})
	if !admin.msg.User.Admin || admin.msg.Workspace != "T9" {
		t.Errorf("admin message = %+v", admin.msg)
	}
}

func TestClassifySlash(t *testing.T) {
	a := unitAdapter(t, func(s *config.Slack) { s.AllowedChannels = config.StringList{"C1"} })
	d, reason := a.classifySlash(slack.SlashCommand{TeamID: "T1", ChannelID: "C1", UserID: "U1", UserName: "ann", Command: "/model", Text: " deepseek-r1 ", TriggerID: "tr1"})
	if reason != "" {
		t.Fatal(reason)
	}
	if m := d.msg; m.Text != "/model deepseek-r1" || m.Thread != "" || m.InThread || !m.Mentioned || m.ID != "cmd:tr1" || m.User.Name != "ann" {
		t.Fatalf("message = %+v", m)
	}
	if d, _ := a.classifySlash(slack.SlashCommand{ChannelID: "D5", UserID: "U1", Command: "/reset"}); !d.msg.DM {
		t.Fatal("slash command in a DM not marked DM")
	}
	if _, reason := a.classifySlash(slack.SlashCommand{ChannelID: "C2", UserID: "U1", Command: "/help"}); reason != ignoreChannel {
		t.Fatalf("reason = %q", reason)
	}
}

func TestCleanText(t *testing.T) {
	cases := map[string]string{
		"<@UBOT> hello":                               "hello",
		"hello <@UBOT>":                               "hello",
		"hey <@UBOT> what's up":                       "hey what's up",
		"<@UBOT|ark> /model deepseek-r1":              "/model deepseek-r1",
		"ask <@U2> or <@U3|carol>":                    "ask @U2 or @carol",
		"see <#C1|general> and <#C2>":                 "see #general and #C2",
		"<https://x.io|the site> <https://y>":         "the site (https://x.io) https://y",
		"<mailto:a@b.c|a@b.c>":                        "a@b.c (mailto:a@b.c)",
		"<!here> <!subteam^S1|@team> <!date^1|today>": "@here @team today",
		"if a &lt; b &amp;&amp; c &gt; d":             "if a < b && c > d",
		"code:\n```\n    indented  twice\n```":        "code:\n```\n    indented  twice\n```",
		"<@UBOT2> is not me":                          "@UBOT2 is not me",
		"  ":                                          "",
	}
	for in, want := range cases {
		if got := cleanText(in, "UBOT"); got != want {
			t.Errorf("cleanText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTS(t *testing.T) {
	if got := parseTS("1700000000.123456"); got.Unix() != 1700000000 || got.Nanosecond() != 123456000 {
		t.Fatalf("parseTS = %v", got)
	}
	if got := parseTS("junk"); time.Since(got) > time.Minute {
		t.Fatalf("parseTS(junk) = %v", got)
	}
}

func TestNotesAndHelpers(t *testing.T) {
	if got := quoteNote("Stopped.\nAsk again."); got != "> ⚠️ Stopped.\n> Ask again." {
		t.Errorf("quoteNote = %q", got)
	}
	if got := quoteNote(strings.Repeat("x", 1000)); len([]rune(got)) > maxNoteRunes+10 {
		t.Errorf("long note kept %d runes", len([]rune(got)))
	}
	// The note goes under a code block the answer was cut off in, not into it;
	// pieces stay under the adapter's message limit, their blocks closed.
	r := &reply{a: &Adapter{pieceLimit: 300}}
	text := "1. Run:\n   ~~~sh\n" + strings.Repeat("   echo hello world\n", 60)
	pieces := render.Layout(r.style(), conversation.Frame{Text: text, Final: true, Outcome: conversation.OutcomeTruncated, Note: "Too long."})
	for i, p := range pieces {
		if _, open := conversation.OpenFence(p); open || utf8.RuneCountInString(strings.TrimSuffix(p, "\n   ~~~\n\n> ⚠️ Too long.")) > 300 {
			t.Errorf("piece %d: %q", i, p)
		}
	}
	if len(pieces) < 4 || !strings.HasSuffix(pieces[len(pieces)-1], "\n   ~~~\n\n> ⚠️ Too long.") {
		t.Errorf("pieces = %q", pieces)
	}
	got := render.Layout(answerStyle, conversation.Frame{Text: "Run:\n```sh\nmake", Final: true, Outcome: conversation.OutcomeTruncated, Note: "Too long."})
	if len(got) != 1 || got[0] != "Run:\n```sh\nmake\n```\n\n> ⚠️ Too long." {
		t.Errorf("final layout = %q", got)
	}
	if got := reasoningTail("  first\n\nthought  "); got != "first thought" {
		t.Errorf("reasoningTail = %q", got)
	}
	if got := reasoningTail(strings.Repeat("a", 500)); len([]rune(got)) != maxReasoningTail+1 || !strings.HasPrefix(got, "…") {
		t.Errorf("reasoningTail long = %q", got)
	}
	if f, open := conversation.OpenFence("x\n```go\ncode\n"); !open || f.Line != "```go" || f.Marker != "```" {
		t.Errorf("openFence = %q %v", f, open)
	}
	if _, open := conversation.OpenFence("```go\ncode\n```\n"); open {
		t.Error("closed fence reported open")
	}
	if !streamingUnavailable(slack.SlackErrorResponse{Err: "unknown_method"}) || !streamingUnavailable(slack.StatusCodeError{Code: http.StatusNotFound}) {
		t.Error("unknown_method not recognised")
	}
	if streamingUnavailable(slack.SlackErrorResponse{Err: "channel_not_found"}) || streamingUnavailable(errors.New("eof")) {
		t.Error("an ordinary error taken for 'no streaming'")
	}
	if d, ok := rateLimited(&slack.RateLimitedError{RetryAfter: 0}); !ok || d != time.Second {
		t.Errorf("rateLimited = %v %v", d, ok)
	}
	if _, ok := rateLimited(slack.SlackErrorResponse{Err: "ratelimited"}); !ok {
		t.Error("ratelimited error code not recognised")
	}
}

// TestRateLimits: Slack's budgets become per-workspace limits (per
// channel where marked), rates per second, bursts of at least one.
func TestRateLimits(t *testing.T) {
	got := rateLimits(Budgets{"chat.update": {PerMinute: 600, Burst: 2}, "chat.postMessage": {PerMinute: 60, PerChannel: true}})
	want := ratelimit.Limits{
		"chat.update":      {PerSecond: 10, Burst: 2, Scope: ratelimit.PerWorkspace},
		"chat.postMessage": {PerSecond: 1, Burst: 1, Scope: ratelimit.PerWorkspace | ratelimit.PerChannel},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rateLimits = %v, want %v", got, want)
	}
	if got := DefaultBudgets().Scaled(2)["chat.update"]; got.PerMinute != 2*Tier3PerMinute*BudgetShare || got.Burst != 6 {
		t.Fatalf("Scaled = %+v", got)
	}
	// slack.rate_limits replaces the limit Slack states, keeping a known
	// method's scope and burst unless one is given.
	defaults := DefaultBudgets()
	raised := defaults.WithLimits(map[string]config.RateLimit{
		"chat.update": {PerMinute: 200}, "chat.postMessage": {PerMinute: 120, Burst: 6}, "conversations.info": {PerMinute: 20},
	})
	for method, want := range map[string]Budget{
		"chat.update":        {PerMinute: 200 * BudgetShare, Burst: 6},
		"chat.postMessage":   {PerMinute: 120 * BudgetShare, Burst: 6, PerChannel: true},
		"conversations.info": {PerMinute: 20 * BudgetShare, Burst: 1},
		"chat.startStream":   defaults["chat.startStream"],
	} {
		if raised[method] != want {
			t.Errorf("WithLimits: %s = %+v, want %+v", method, raised[method], want)
		}
	}
	if defaults["chat.update"].PerMinute != Tier3PerMinute*BudgetShare {
		t.Error("WithLimits changed the budgets it was called on")
	}
	for _, tc := range []struct {
		err  error
		kind ratelimit.Kind
	}{
		{&slack.RateLimitedError{RetryAfter: 3 * time.Second}, ratelimit.RateLimited},
		{slack.StatusCodeError{Code: http.StatusBadGateway}, ratelimit.Transient},
		{io.ErrUnexpectedEOF, ratelimit.Transient},
		{context.DeadlineExceeded, ratelimit.Failed},
		{slack.SlackErrorResponse{Err: "channel_not_found"}, ratelimit.Failed},
	} {
		if kind, _ := classify(tc.err); kind != tc.kind {
			t.Errorf("classify(%v) = %v, want %v", tc.err, kind, tc.kind)
		}
	}
}

func TestFinalWait(t *testing.T) {
	// 200 answers finishing at once queue on chat.update (45 a minute): the
	// last one's final render must be allowed the 4.4 minutes that takes.
	b := Budgets{"chat.update": {PerMinute: 45}, "chat.postMessage": {PerMinute: 1, PerChannel: true}}
	answers := 200
	if got, want := finalWait(b, answers), minFinalWait+time.Duration(float64(answers)/45*float64(time.Minute)); got != want {
		t.Errorf("finalWait = %v, want %v", got, want)
	}
	if got := finalWait(Budgets{}, answers); got != minFinalWait {
		t.Errorf("without budgets finalWait = %v, want %v", got, minFinalWait)
	}
	if got := finalWait(DefaultBudgets(), 64); got < 3*time.Minute || got > 5*time.Minute {
		t.Errorf("default finalWait = %v for 64 workers", got)
	}
}

func TestNewValidates(t *testing.T) {
	h := newScripted()
	for name, cfg := range map[string]config.Slack{
		"no token":     {AppToken: "xapp-1"},
		"no transport": {BotToken: "xoxb-1"},
		"bot as app":   {BotToken: "xoxb-1", AppToken: "xoxb-2"},
		"bad mode":     {BotToken: "xoxb-1", AppToken: "xapp-1", Streaming: "fast"},
		"bad replies":  {BotToken: "xoxb-1", AppToken: "xapp-1", ReplyInThreads: "never"},
	} {
		if _, err := New(cfg, config.Limits{}, h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(config.Slack{BotToken: "xoxb-1", AppToken: "xapp-1"}, config.Limits{}, nil); err == nil {
		t.Error("nil handler accepted")
	}
	a, err := New(config.Slack{BotToken: "xoxb-1", SigningSecret: "s", APIURL: "http://127.0.0.1:1/api"}, config.Limits{}, h)
	if err != nil || a.socket || a.cfg.APIURL != "http://127.0.0.1:1/api/" || a.cfg.Streaming != "auto" || !a.allowDMs {
		t.Fatalf("New = %+v, %v", a, err)
	}
	if a.Ready() {
		t.Fatal("ready before Run")
	}
}

func TestRunFailsOnBadTokens(t *testing.T) {
	fs := slacktest.New(slacktest.Options{})
	defer fs.Close()
	for name, cfg := range map[string]config.Slack{
		"bot token": {BotToken: "xoxb-wrong", AppToken: config.Secret(fs.AppToken()), APIURL: fs.APIURL()},
		"app token": {BotToken: config.Secret(fs.BotToken()), AppToken: "xapp-wrong", APIURL: fs.APIURL()},
	} {
		a, err := New(cfg, config.Limits{}, newScripted(), WithLogger(newTestLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = a.Run(ctx)
		expired := ctx.Err() != nil
		cancel()
		if err == nil || expired || !strings.Contains(err.Error(), "invalid_auth") {
			t.Errorf("%s: Run = %v", name, err)
		}
		if a.Ready() {
			t.Errorf("%s: ready", name)
		}
	}
}

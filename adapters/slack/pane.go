package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/metrics"
)

// The agent pane (the app's Messages tab, or the assistant view): a person
// opening it (app_home_opened with tab "messages", under the manifest's
// agent_view) or starting a new thread in it (assistant_thread_started,
// under assistant_view) is greeted briefly, with the configured suggested
// prompts under the greeting; a thread is titled from its first question.
// Each happens once across redeliveries and replicas (conversation.Deduper).

const (
	// paneGreetEvery is how often opening the agent pane greets one person.
	paneGreetEvery = 30 * 24 * time.Hour
	// paneThreadTTL is how long a new assistant thread's greeting, or a
	// thread's title, is remembered as done.
	paneThreadTTL = 7 * 24 * time.Hour
	// maxTitle is the most of the first question a thread's title shows.
	maxTitle = 80
)

// onAgentEvent handles the events of Slack's agent surface; agent is
// false for other events. taken is as onEvent's.
func (a *Adapter) onAgentEvent(team, typ string, raw json.RawMessage) (taken, agent bool) {
	switch typ {
	case "agent_session_stopped":
		return a.onSessionStopped(team, raw), true
	case "assistant_thread_started":
		return a.onThreadStarted(team, raw), true
	case "app_home_opened":
		return a.onHomeOpened(team, raw), true
	}
	return true, false
}

// firstTime reports whether key is new across replicas (marking it), when
// the handler can tell; else true. A store that fails says false: the
// greeting or title is skipped rather than repeated.
func (a *Adapter) firstTime(ctx context.Context, key string, ttl time.Duration, log *slog.Logger) bool {
	d, ok := a.h.(conversation.Deduper)
	if !ok {
		return true
	}
	first, err := d.FirstTime(ctx, "slack:"+key, ttl)
	if err != nil {
		log.Debug("checking whether the pane event is new failed; skipping it", "key", key, "err", err)
		return false
	}
	return first
}

// onThreadStarted greets a new assistant thread and offers the prompts in it.
func (a *Adapter) onThreadStarted(team string, raw json.RawMessage) bool {
	var ev struct {
		Thread struct {
			User     string `json:"user_id"`
			Channel  string `json:"channel_id"`
			ThreadTS string `json:"thread_ts"`
		} `json:"assistant_thread"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		return true
	}
	t := ev.Thread
	if !a.paneAllowed(t.Channel, t.User) || t.ThreadTS == "" {
		return true
	}
	log := a.log.With("team", team, "channel", t.Channel, "thread", t.ThreadTS)
	return a.dispatch("assistant thread", func(ctx context.Context) {
		if a.firstTime(ctx, "pane:thread:"+team+":"+t.Channel+":"+t.ThreadTS, paneThreadTTL, log) {
			a.greet(ctx, replyTarget{team: team, channel: t.Channel, thread: t.ThreadTS, user: t.User, dm: true}, log)
		}
	})
}

// onHomeOpened greets a person opening the agent pane, once per
// paneGreetEvery, at the top of their DM with the bot.
func (a *Adapter) onHomeOpened(team string, raw json.RawMessage) bool {
	var ev struct {
		User    string `json:"user"`
		Channel string `json:"channel"`
		Tab     string `json:"tab"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Tab != "messages" || !a.paneAllowed(ev.Channel, ev.User) {
		return true
	}
	log := a.log.With("team", team, "channel", ev.Channel, "user", ev.User)
	return a.dispatch("agent pane", func(ctx context.Context) {
		if a.firstTime(ctx, "pane:user:"+team+":"+ev.User, paneGreetEvery, log) {
			a.greet(ctx, replyTarget{team: team, channel: ev.Channel, user: ev.User, dm: true}, log)
		}
	})
}

// paneAllowed reports whether the pane of user's DM channel is served.
func (a *Adapter) paneAllowed(channel, user string) bool {
	if channel == "" || user == "" || user == a.identity().userID {
		return false
	}
	if reason := a.allowed(channel, user, true); reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		return false
	}
	return true
}

// greet posts the greeting where t says (a thread, or the top of the DM)
// and offers the suggested prompts in its thread (best effort).
func (a *Adapter) greet(ctx context.Context, t replyTarget, log *slog.Logger) {
	r := a.newReply(t, log)
	ts, err := r.postRaw(ctx, ratelimit.MustDeliver, a.cfg.Greeting)
	if err != nil {
		log.Debug("greeting failed", "err", err)
		return
	}
	if len(a.cfg.SuggestedPrompts) == 0 {
		return
	}
	thread := t.thread
	if thread == "" {
		thread = ts
	}
	prompts := make([]slack.AssistantThreadsPrompt, len(a.cfg.SuggestedPrompts))
	for i, p := range a.cfg.SuggestedPrompts {
		prompts[i] = slack.AssistantThreadsPrompt{Title: p.Title, Message: p.Message}
	}
	err = a.call(ctx, ratelimit.BestEffort, t.team, t.channel, "assistant.threads.setSuggestedPrompts", func(ctx context.Context) error {
		return a.api.SetAssistantThreadsSuggestedPromptsContext(ctx, slack.AssistantThreadsSetSuggestedPromptsParameters{
			ChannelID: t.channel, ThreadTS: thread, Prompts: prompts,
		})
	})
	if err != nil {
		log.Debug("offering the suggested prompts failed", "err", err)
	}
}

// titleThread titles a thread of the bot's DM (an assistant thread) from
// its first question, off the answer's path (an agent session's creation
// titles the session the same way).
func (a *Adapter) titleThread(ctx context.Context, m conversation.Message, log *slog.Logger) {
	if !m.DM || m.Thread == "" {
		return
	}
	if _, isCmd := conversation.ParseCommand(m.Text); isCmd {
		return
	}
	title := threadTitle(m.Text)
	if title == "" {
		return
	}
	a.background(ctx, func(ctx context.Context) {
		if !a.firstTime(ctx, "title:"+m.ThreadKey(), paneThreadTTL, log) {
			return
		}
		err := a.call(ctx, ratelimit.BestEffort, m.Workspace, m.Channel, "assistant.threads.setTitle", func(ctx context.Context) error {
			return a.api.SetAssistantThreadsTitleContext(ctx, slack.AssistantThreadsSetTitleParameters{ChannelID: m.Channel, ThreadTS: m.Thread, Title: title})
		})
		if err != nil {
			log.Debug("titling the thread failed", "err", err)
		}
	})
}

// threadTitle is a thread's title from its first question: the first
// line, at most maxTitle characters, cut at a word.
func threadTitle(question string) string {
	t := sessionTitle(question)
	if r := []rune(t); len(r) > maxTitle {
		t = string(r[:maxTitle])
		if i := strings.LastIndexByte(t, ' '); i > maxTitle/2 {
			t = t[:i]
		}
		t += "…"
	}
	return t
}

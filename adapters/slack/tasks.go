package slack

import (
	"context"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
)

// Task steps: in a thread where the answer may stream natively, what the
// model does before it writes (conversation.Frame.Activity: a web search)
// starts the answer's stream as a task card in progress, when the budgets
// would let a first text start it (decide's rule: chat.startStream free,
// chat.stopStream's call claimed). The stream call that carries the first
// text marks the task complete, and the one that ends the message adds the
// final frame's sources as the task's URL sources. Where the stream cannot
// start now, the activity shows as the assistant status (activity.go); the
// answer never waits for a budget to show a step.

// taskID is the id of an answer's task card: one per answer.
const taskID = "activity"

// Bounds on a task card.
const (
	maxTaskTitle   = 256 // runes
	maxTaskSources = 10
	maxSourceText  = 80 // runes
	maxSourceURL   = 2000
)

// taskStep is the answer's task card: on the message r.seg streams when
// it started, until a stream call marks it complete with its sources.
type taskStep struct {
	ts      string // the streamed message carrying the card
	title   string
	status  slack.TaskCardStatus // the status to show
	sources []conversation.Source
	shown   bool // the card shows status and sources
}

// startTask starts the answer's stream with activity as a task card in
// progress, once per answer, if the budgets allow a stream now. It
// reports whether the stream started. The caller holds r.mu.
func (r *reply) startTask(ctx context.Context, activity string) bool {
	if activity == "" || r.taskTried {
		return false
	}
	r.taskTried = true
	native := r.a.cfg.Streaming == "native"
	if !r.fair.Turn() || !r.affords("chat.startStream") || !native && !r.claimFinal("chat.stopStream") {
		return false
	}
	title := taskTitle(activity)
	var ts string
	err := r.a.call(ctx, ratelimit.BestEffort, r.t.team, r.t.channel, "chat.startStream", func(ctx context.Context) error {
		var err error
		_, ts, err = r.a.api.StartStreamContext(ctx, r.t.channel,
			slack.MsgOptionTS(r.t.thread),
			slack.MsgOptionRecipientUserID(r.t.user),
			slack.MsgOptionRecipientTeamID(r.t.team),
			slack.MsgOptionTaskDisplayMode(slack.TaskDisplayModeTimeline),
			slack.MsgOptionChunks(taskChunk(title, slack.TaskCardStatusInProgress, nil)))
		return err
	})
	if err != nil {
		r.unclaim()
		if !native && streamingUnavailable(err) {
			r.a.noNative.Store(r.t.team, time.Now().Add(nativeRetryAfter))
			r.log.Info("native streaming unavailable in this workspace; using chat.update for an hour", "err", err)
		} else {
			r.log.Debug("showing the task step failed", "err", err)
		}
		return false
	}
	r.mode = modeNative
	r.seg = &segment{ts: ts, lastAppend: time.Now()}
	r.segments++
	r.task = &taskStep{ts: ts, title: title, status: slack.TaskCardStatusComplete}
	return true
}

// finishTask gives the task card the final frame's sources, or marks it
// failed when the answer ends without text, for the call that ends its
// message. The caller holds r.mu.
func (r *reply) finishTask(f conversation.Frame) {
	t := r.task
	if t == nil {
		return
	}
	if len(f.Sources) > 0 {
		t.sources, t.shown = f.Sources, false
	}
	if r.sentOff == 0 && strings.TrimSpace(f.Text) == "" && f.Outcome != conversation.OutcomeDone {
		t.status, t.shown = slack.TaskCardStatusError, false
	}
}

// streamText is the option carrying md in a stream call on the current
// message: markdown_text, or chunks when the message's task card still
// has an update to show (sent is then to be called once the call
// succeeded). The caller holds r.mu.
func (r *reply) streamText(md string) (opt slack.MsgOption, sent func()) {
	t := r.task
	if t == nil || t.shown || r.seg == nil || r.seg.ts != t.ts {
		if md == "" {
			return nil, func() {}
		}
		return slack.MsgOptionMarkdownText(md), func() {}
	}
	chunks := []slack.StreamChunk{taskChunk(t.title, t.status, t.sources)}
	if md != "" {
		chunks = append(chunks, slack.NewMarkdownTextChunk(md))
	}
	return slack.MsgOptionChunks(chunks...), func() { t.shown = true }
}

// taskChunk is a task_update chunk for the answer's task card.
func taskChunk(title string, status slack.TaskCardStatus, sources []conversation.Source) slack.TaskUpdateChunk {
	c := slack.NewTaskUpdateChunk(taskID, title)
	c.Status, c.Sources = status, taskSources(sources)
	return c
}

// taskTitle is an activity as a task's title: on one line, without a
// trailing ellipsis (the card shows its status), cut to maxTaskTitle.
func taskTitle(activity string) string {
	t := strings.Join(strings.Fields(strings.ToValidUTF8(activity, "")), " ")
	t = strings.TrimRight(strings.TrimSuffix(strings.TrimSuffix(t, "…"), "..."), " ")
	if t == "" {
		t = "Working"
	}
	return render.Truncate(t, maxTaskTitle)
}

// taskSources are the web pages an answer cites as a task card's URL
// sources: the first maxTaskSources with an http(s) URL, each titled on
// one line (the URL's host when it has no title).
func taskSources(sources []conversation.Source) []slack.TaskCardSource {
	var out []slack.TaskCardSource
	for _, s := range sources {
		if len(out) == maxTaskSources {
			break
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s.URL) > maxSourceURL ||
			!utf8.ValidString(s.URL) || strings.ContainsFunc(s.URL, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			continue
		}
		text := strings.Join(strings.Fields(strings.ToValidUTF8(s.Title, "")), " ")
		if text == "" {
			text = u.Host
		}
		out = append(out, slack.NewTaskCardSource(s.URL, render.Truncate(text, maxSourceText)))
	}
	return out
}

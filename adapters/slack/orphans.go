package slack

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
)

// An answer's location, for conversation.Located: "s:TS" while a native
// stream message TS is open ("t:TS:TITLE" while it shows only a task card
// in progress, titled TITLE); "u:BASE:TS1,TS2,…" for update mode, its
// messages from the answer's byte offset BASE on. The channel and thread
// come with the orphan.

// locate records where the answer's messages are now; the caller holds r.mu.
func (r *reply) locate() {
	var loc string
	switch {
	case r.mode == modeNative && r.seg != nil:
		loc = "s:" + r.seg.ts
		if t := r.task; t != nil && !t.shown && t.ts == r.seg.ts {
			loc = "t:" + r.seg.ts + ":" + t.title // a task card still in progress (tasks.go)
		}
	case r.mode == modeUpdate && len(r.msgs.List) > 0:
		ids := make([]string, len(r.msgs.List))
		for i, m := range r.msgs.List {
			ids[i] = m.ID
		}
		loc = "u:" + strconv.Itoa(r.base) + ":" + strings.Join(ids, ",")
	default:
		return
	}
	r.Set(loc)
}

// FinishOrphan implements conversation.OrphanFinisher: the answer's open
// stream is stopped with the note, or its messages edited to show what
// was shown and the note; with no location (or when that fails) the note
// is posted in the thread. Retry sits under it when the question is known.
func (a *Adapter) FinishOrphan(ctx context.Context, o conversation.Orphan) error {
	r := a.newReply(replyTarget{team: o.Workspace, channel: o.Channel, thread: o.Thread, user: o.Asker,
		dm: strings.HasPrefix(o.Channel, "D"), question: o.Question, orphan: true},
		a.log.With("channel", o.Channel, "thread", o.Thread, "orphan_of", o.Replica))
	if err := r.resume(o.Location, o.Shown); err != nil {
		r.log.Warn("unreadable location of an orphaned answer; posting its note anew", "location", o.Location, "err", err)
	}
	return r.Render(ctx, conversation.Frame{Text: o.Shown, Final: true, Outcome: conversation.OutcomeInterrupted, Note: conversation.OrphanNote})
}

// resume sets r up as the answer at loc that showed shown, so that a
// final Render finishes it; with loc empty, in update mode with no message.
func (r *reply) resume(loc, shown string) error {
	r.mode = modeUpdate
	kind, rest, _ := strings.Cut(loc, ":")
	switch kind {
	case "":
		return nil
	case "s", "t":
		ts, title, _ := strings.Cut(rest, ":")
		if ts == "" {
			return fmt.Errorf("no stream message")
		}
		r.mode = modeNative
		r.seg = &segment{ts: ts}
		r.segments = 1
		r.sentOff, r.sentText = len(shown), shown
		if kind == "t" {
			r.task = &taskStep{ts: ts, title: taskTitle(title), status: slack.TaskCardStatusComplete}
		}
		return nil
	case "u":
		b, ids, _ := strings.Cut(rest, ":")
		base, err := strconv.Atoi(b)
		if err != nil || base < 0 || ids == "" {
			return fmt.Errorf("bad update location")
		}
		if base <= len(shown) {
			r.base, r.sentText = base, shown[:base]
		}
		for id := range strings.SplitSeq(ids, ",") {
			r.msgs.List = append(r.msgs.List, render.Message{ID: id})
		}
		return nil
	}
	return fmt.Errorf("unknown location kind %q", kind)
}

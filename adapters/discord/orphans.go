package discord

import (
	"context"
	"strings"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
)

// An answer's location, for conversation.Located: "c:CHANNEL:ID1,ID2,…",
// its messages in a channel or thread. Answers given through an
// interaction's webhook have none: its token is not kept in Redis.

// Location implements conversation.Located.
func (r *reply) Location() (string, bool) {
	if p := r.loc.Load(); p != nil {
		return *p, true
	}
	return "", false
}

// locate records where the answer's messages are now; the caller holds r.mu.
func (r *reply) locate() {
	c, ok := r.sink.(*channelSink)
	if !ok || len(r.msgs.List) == 0 {
		return
	}
	ids := make([]string, len(r.msgs.List))
	for i, m := range r.msgs.List {
		ids[i] = m.ID
	}
	loc := "c:" + c.channelID + ":" + strings.Join(ids, ",")
	if old := r.loc.Load(); old == nil || *old != loc {
		r.loc.Store(&loc)
	}
}

// FinishOrphan implements conversation.OrphanFinisher: the answer's
// messages are edited to show what was shown and the note, with the Retry
// button when the question is known; with no location the note is posted
// in the conversation's channel.
func (a *Adapter) FinishOrphan(ctx context.Context, o conversation.Orphan) error {
	channel, ids := o.Channel, ""
	if rest, ok := strings.CutPrefix(o.Location, "c:"); ok {
		if ch, list, ok := strings.Cut(rest, ":"); ok && ch != "" {
			channel, ids = ch, list
		}
	}
	s := &channelSink{a: a, channelID: channel}
	r := a.newReply("", s, nil, s, "")
	r.question, r.orphan = o.Question, true
	if ids != "" {
		for id := range strings.SplitSeq(ids, ",") {
			r.msgs.List = append(r.msgs.List, render.Message{ID: id})
		}
	}
	return r.Render(ctx, conversation.Frame{Text: o.Shown, Final: true, Outcome: conversation.OutcomeInterrupted, Note: conversation.OrphanNote})
}

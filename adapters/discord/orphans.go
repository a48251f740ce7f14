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
	r.Set(loc)
}

// FinishOrphan implements conversation.OrphanFinisher: the answer's
// messages are edited to show what was shown and the note, with the Retry
// button when the question is known. With no location the note is posted
// in the conversation: in its thread when the thread is a channel, else
// in its channel, replying to the reply chain's root.
func (a *Adapter) FinishOrphan(ctx context.Context, o conversation.Orphan) error {
	if rest, ok := strings.CutPrefix(o.Location, "c:"); ok {
		if ch, ids, ok := strings.Cut(rest, ":"); ok && ch != "" && ids != "" {
			return a.finishOrphan(ctx, &channelSink{a: a, channelID: ch}, o, strings.Split(ids, ","))
		}
	}
	if o.Thread != "" && o.Thread != o.Channel {
		err := a.finishOrphan(ctx, &channelSink{a: a, channelID: o.Thread}, o, nil)
		if err == nil || !isGone(err) {
			return err
		}
		// Not a channel: a reply chain's root message.
	}
	return a.finishOrphan(ctx, &channelSink{a: a, channelID: o.Channel, replyTo: o.Thread}, o, nil)
}

// finishOrphan renders o's final frame through s, over the messages ids.
func (a *Adapter) finishOrphan(ctx context.Context, s *channelSink, o conversation.Orphan, ids []string) error {
	r := a.newReply("", s, nil, s, "")
	r.question, r.orphan = o.Question, true
	for _, id := range ids {
		r.msgs.List = append(r.msgs.List, render.Message{ID: id})
	}
	return r.Render(ctx, conversation.Frame{Text: o.Shown, Final: true, Outcome: conversation.OutcomeInterrupted, Note: conversation.OrphanNote})
}

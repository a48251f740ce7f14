package discord

import (
	"context"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
)

// Feedback: a finished answer's last message carries 👍 and 👎 beside
// Retry when the handler records votes (conversation.FeedbackRecorder).
// A button's CustomID names the vote and the model that wrote the answer;
// the answer is the message clicked. A click is recorded once per user per
// answer (changeable) and acknowledged privately; 👎 points at Retry.
const (
	voteUpPrefix   = "fb:up:"
	voteDownPrefix = "fb:down:"
	// maxCustomID is the most a button's CustomID holds.
	maxCustomID = 100
	// voteWait bounds recording a vote, within the 3 s an interaction has.
	voteWait = 2 * time.Second
)

// Private acknowledgements of a vote.
const (
	thanksUp     = "Thanks for the 👍! It helps us see which models answer well."
	thanksDown   = "Thanks for the 👎, sorry that missed. Press 🔄 Retry under the answer for another try, or switch model with `/model`."
	votedAlready = "Your vote on this answer is recorded already."
	voteFailed   = "⚠️ I couldn't record your vote right now. Please try again in a moment."
)

// buttons is the row for a message's button (see button): a finished
// answer's Retry gets 👍 and 👎 beside it when votes are recorded and the
// model is known. The caller holds r.mu.
func (r *reply) buttons(customID string) []discordgo.MessageComponent {
	row := button(customID)
	if _, ok := r.a.h.(conversation.FeedbackRecorder); !ok || !strings.HasPrefix(customID, retryPrefix) ||
		r.last.Model == "" || r.orphan || len(voteDownPrefix+r.last.Model) > maxCustomID {
		return row
	}
	ar := row[0].(discordgo.ActionsRow)
	ar.Components = append(ar.Components,
		discordgo.Button{Style: discordgo.SecondaryButton, CustomID: voteUpPrefix + r.last.Model, Emoji: &discordgo.ComponentEmoji{Name: "👍"}},
		discordgo.Button{Style: discordgo.SecondaryButton, CustomID: voteDownPrefix + r.last.Model, Emoji: &discordgo.ComponentEmoji{Name: "👎"}})
	return []discordgo.MessageComponent{ar}
}

// onFeedback records a click on 👍 or 👎 and answers it privately; it
// reports false when the CustomID is not a vote.
func (a *Adapter) onFeedback(in *discordgo.Interaction, customID string) bool {
	up, model := true, ""
	if m, ok := strings.CutPrefix(customID, voteUpPrefix); ok {
		model = m
	} else if m, ok := strings.CutPrefix(customID, voteDownPrefix); ok {
		up, model = false, m
	} else {
		return false
	}
	rec, ok := a.h.(conversation.FeedbackRecorder)
	u, _, _ := interactionUser(in)
	if !ok || model == "" || u == nil || in.Message == nil || !a.checkAccess(in, a.quickChannelInfo(in)) {
		return true
	}
	v := conversation.Vote{
		Platform: conversation.PlatformDiscord, Workspace: in.GuildID, Answer: in.ChannelID + ":" + in.Message.ID,
		Thread: conversation.Message{Platform: conversation.PlatformDiscord, Workspace: in.GuildID, Channel: in.ChannelID}.ThreadKey(),
		User:   u.ID, Model: model, Up: up,
	}
	ctx, cancel := context.WithTimeout(a.baseCtx, voteWait)
	defer cancel()
	changed, err := rec.Feedback(ctx, v)
	switch {
	case err != nil:
		a.log.Warn("recording feedback failed", "interaction", in.ID, "err", err)
		a.respondEphemeral(in, voteFailed)
	case !changed:
		a.respondEphemeral(in, votedAlready)
	case up:
		a.respondEphemeral(in, thanksUp)
	default:
		a.respondEphemeral(in, thanksDown)
	}
	return true
}

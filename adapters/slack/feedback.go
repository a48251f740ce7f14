package slack

import (
	"context"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/metrics"
)

// Feedback: a finished answer carries 👍/👎 (a context_actions block with
// feedback_buttons, in chat.stopStream's blocks or the final post or
// edit) when the handler records votes (conversation.FeedbackRecorder).
// Each button's value names the vote and the model that wrote the answer;
// the answer is the message clicked. A click is recorded once per user
// per answer (changeable) and acknowledged privately; 👎 points at Retry.
const (
	feedbackActionID = "arkbot_feedback"
	feedbackBlockID  = "arkbot_feedback"
	votePrefixUp     = "up:"
	votePrefixDown   = "down:"
	// maxButtonValue is the most a button's value holds.
	maxButtonValue = 2000
	// voteWait bounds recording a vote.
	voteWait = 10 * time.Second
)

// Private acknowledgements of a vote.
const (
	thanksUp   = "Thanks for the 👍! It helps us see which models answer well."
	thanksDown = "Thanks for the 👎, sorry that missed. Press 🔄 Retry under the answer for another try, or switch model with `!model <name>` in the thread."
)

// answerBlocks are the blocks under a finished answer's last message: the
// feedback buttons (when the handler records votes and the model is
// known) and the Retry button for question (both only when question is
// set: a finished answer with text, or an orphan).
func (r *reply) answerBlocks(question string) []slack.Block {
	if question == "" {
		return nil
	}
	var blocks []slack.Block
	if _, ok := r.a.h.(conversation.FeedbackRecorder); ok && r.model != "" && !r.t.orphan {
		if b := feedbackBlock(r.model); b != nil {
			blocks = append(blocks, b)
		}
	}
	return append(blocks, retryBlocks(question)...)
}

// feedbackBlock is the 👍/👎 pair for an answer by model (nil if the
// model's name does not fit a button's value).
func feedbackBlock(model string) slack.Block {
	if len(votePrefixDown+model) > maxButtonValue {
		return nil
	}
	up := slack.NewFeedbackButton(slack.NewTextBlockObject(slack.PlainTextType, "👍", true, false), votePrefixUp+model).
		WithAccessibilityLabel("Good answer")
	down := slack.NewFeedbackButton(slack.NewTextBlockObject(slack.PlainTextType, "👎", true, false), votePrefixDown+model).
		WithAccessibilityLabel("Bad answer")
	return slack.NewContextActionsBlock(feedbackBlockID, slack.NewFeedbackButtonsBlockElement(feedbackActionID, up, down))
}

// parseVote reads a feedback button's value: the vote and the model.
func parseVote(value string) (up bool, model string, ok bool) {
	if m, found := strings.CutPrefix(value, votePrefixUp); found && m != "" {
		return true, m, true
	}
	if m, found := strings.CutPrefix(value, votePrefixDown); found && m != "" {
		return false, m, true
	}
	return false, "", false
}

// onFeedback records a click on an answer's feedback buttons. A vote that
// repeats the one recorded (Slack's redelivery, a second replica, a double
// click) changes and says nothing. It reports false when the click could
// not be taken (see dispatch).
func (a *Adapter) onFeedback(cb slack.InteractionCallback, value string) bool {
	rec, ok := a.h.(conversation.FeedbackRecorder)
	up, model, valid := parseVote(value)
	channel, user, team := cb.Channel.ID, cb.User.ID, cb.Team.ID
	if !ok || !valid || channel == "" || user == "" {
		return true
	}
	dm := strings.HasPrefix(channel, "D")
	if reason := a.allowed(channel, user, dm); reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		return true
	}
	msgTS, thread := cb.Container.MessageTs, cb.Container.ThreadTs
	if msgTS == "" {
		msgTS = cb.Message.Timestamp
	}
	if thread == "" {
		thread = cb.Message.ThreadTimestamp
	}
	if msgTS == "" {
		return true
	}
	v := conversation.Vote{
		Platform: conversation.PlatformSlack, Workspace: team, Answer: channel + ":" + msgTS,
		Thread: conversation.Message{Platform: conversation.PlatformSlack, Workspace: team, Channel: channel, Thread: thread}.ThreadKey(),
		User:   user, Model: model, Up: up,
	}
	log := a.log.With("team", team, "channel", channel, "answer", msgTS, "user", user)
	return a.dispatch("feedback", func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, voteWait)
		defer cancel()
		changed, err := rec.Feedback(ctx, v)
		if err != nil {
			log.Warn("recording feedback failed", "err", err)
			return
		}
		if !changed {
			log.Debug("feedback repeated; nothing to record")
			return
		}
		thanks := thanksUp
		if !up {
			thanks = thanksDown
		}
		r := a.newReply(replyTarget{team: team, channel: channel, thread: thread, user: user, dm: dm, private: true}, log)
		if err := r.Notice(ctx, thanks); err != nil {
			log.Debug("acknowledging feedback failed", "err", err)
		}
	})
}

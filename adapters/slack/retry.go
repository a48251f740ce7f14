package slack

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/metrics"
)

// The Retry button under a finished answer: its action's value is the
// question's message ID, for the engine's /retry.
const (
	retryActionID = "arkbot_retry"
	retryBlockID  = "arkbot_retry"
)

func retryBlock(question string) slack.Block {
	label := slack.NewTextBlockObject(slack.PlainTextType, "🔄 Retry", true, false)
	return slack.NewActionBlock(retryBlockID, slack.NewButtonBlockElement(retryActionID, question, label))
}

// onInteraction handles an interactive payload: a click on Retry or on
// the feedback buttons. It
// reports false when the click could not be taken (see dispatch).
func (a *Adapter) onInteraction(cb slack.InteractionCallback) bool {
	if cb.Type != slack.InteractionTypeBlockActions {
		return true
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act != nil && act.ActionID == retryActionID && act.Value != "" {
			return a.onRetry(cb, act.Value, act.ActionTs)
		}
		if act != nil && act.ActionID == feedbackActionID {
			return a.onFeedback(cb, act.Value)
		}
	}
	return true
}

// onRetry runs the engine's /retry for the question a Retry button names,
// in the conversation of the message it sits on (its thread, or the top of
// a DM). The button is taken off that message first, so a second click has
// nothing to press; refusals (a newer answer exists) are shown only to the
// clicker. It reports false when the click could not be taken.
func (a *Adapter) onRetry(cb slack.InteractionCallback, question, actionTS string) bool {
	channel, user, team := cb.Channel.ID, cb.User.ID, cb.Team.ID
	if channel == "" || user == "" {
		return true
	}
	dm := strings.HasPrefix(channel, "D")
	if reason := a.allowed(channel, user, dm); reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		a.log.Debug("retry refused", "channel", channel, "user", user, "reason", reason)
		return true
	}
	msgTS, thread := cb.Container.MessageTs, cb.Container.ThreadTs
	if msgTS == "" {
		msgTS = cb.Message.Timestamp
	}
	if thread == "" {
		thread = cb.Message.ThreadTimestamp
	}
	id := retryID(msgTS, actionTS, cb.TriggerID)
	m := conversation.Message{
		Platform:  conversation.PlatformSlack,
		Workspace: team,
		Channel:   channel,
		Thread:    thread,
		ID:        "retry:" + id,
		User:      conversation.User{ID: user, Admin: a.cfg.Admins.Contains(user), CanSwitchModel: true},
		Text:      "/" + conversation.CmdRetry + " " + question,
		DM:        dm,
		Mentioned: true,
		InThread:  thread != "",
		Time:      time.Now(),
	}
	target := &replyTarget{team: team, channel: channel, thread: thread, user: user, dm: dm, question: question, private: true}
	log := a.log.With("team", team, "channel", channel, "retry_of", question)
	blocks := cb.Message.Blocks.BlockSet
	// The button comes off alongside the new answer, not before it: under
	// the channel's chat.update budget its edit could wait seconds.
	return a.dispatch("retry", func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { a.takeRetryOff(ctx, team, channel, msgTS, cb.Message.Text, blocks, log) })
		a.process(ctx, &draft{msg: m}, target, log)
		wg.Wait()
	})
}

// retryWindow groups clicks on one message into one retry: a double click
// (or Slack's redelivery) asks once, a click a while later asks again.
const retryWindow = 10 * time.Second

// retryID is the dedupe ID of a click on the Retry button of message ts:
// the message and the retryWindow the click fell in (by its action_ts),
// else the click's own trigger ID.
func retryID(ts, actionTS, trigger string) string {
	if ts == "" || actionTS == "" {
		return trigger
	}
	return ts + ":" + strconv.FormatInt(parseTS(actionTS).UnixNano()/int64(retryWindow), 10)
}

// takeRetryOff edits the clicked message back to its blocks without the
// Retry button. Blocks slack-go can't read back are left alone rather than
// risk the message's text.
func (a *Adapter) takeRetryOff(ctx context.Context, team, channel, ts, text string, blocks []slack.Block, log *slog.Logger) {
	var keep []slack.Block
	for _, b := range blocks {
		switch v := b.(type) {
		case *slack.UnknownBlock:
			return
		case *slack.ActionBlock:
			if v.BlockID == retryBlockID {
				continue
			}
		}
		keep = append(keep, b)
	}
	if ts == "" || len(keep) == len(blocks) || len(keep) == 0 {
		return
	}
	err := a.call(ctx, ratelimit.MustDeliver, team, channel, "chat.update", func(ctx context.Context) error {
		_, _, _, err := a.api.UpdateMessageContext(ctx, channel, ts, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(keep...))
		return err
	})
	if err != nil {
		log.Debug("could not take the Retry button off", "ts", ts, "err", err)
	}
}

// serveInteractivity serves slack.interactivity_path in HTTP mode: Slack
// posts a click as a signed form whose payload field holds the JSON.
func (a *Adapter) serveInteractivity(w http.ResponseWriter, r *http.Request) {
	body := a.verifiedWork(w, r)
	if body == nil {
		return
	}
	v, err := url.ParseQuery(string(body))
	var cb slack.InteractionCallback
	if err == nil {
		err = json.Unmarshal([]byte(v.Get("payload")), &cb)
	}
	if err != nil {
		http.Error(w, "invalid payload", http.StatusBadRequest)
		return
	}
	if !a.onInteraction(cb) {
		busy(w) // Slack marks the click failed, so the user can click again
		return
	}
	w.WriteHeader(http.StatusOK)
}

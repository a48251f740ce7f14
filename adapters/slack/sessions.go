package slack

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/metrics"
)

// Agent sessions: while the bot answers in a thread, the thread's session
// is "processing" (agents.sessions.setStatus, titled from the question
// when the call creates it), and Slack draws its own Stop button. A click
// arrives as agent_session_stopped and goes the way of !stop, so it stops
// the answer on whichever replica runs it. When the answer ends the
// session goes back to "active". A workspace that refuses the methods (an
// older plan, the app not declared as an agent) or lacks the event
// subscription keeps today's assistant status and !stop, remembered for
// sessionsRetryAfter as native streaming is.

const (
	sessionProcessing = slack.AgentSessionStatusProcessing
	sessionActive     = slack.AgentSessionStatusActive
	// sessionsRetryAfter is how long a workspace that refused agent
	// sessions is not asked again.
	sessionsRetryAfter = time.Hour
	// maxSessionTitle is the most a session title holds.
	maxSessionTitle = 200
	// sessionCallWait bounds a session status call made off the answer's path.
	sessionCallWait = 30 * time.Second
	// missingStopSubscription is setStatus's warning when the app does not
	// receive agent_session_stopped: users then see no Stop button.
	missingStopSubscription = "missing_agent_session_stopped_event_subscription"
	// stopEventWait is how long after Slack stopped a stream the answer
	// waits for agent_session_stopped before treating the stream as broken.
	stopEventWait = 2 * time.Second
)

// session is an answer's agent session. Its status calls run off the
// answer's path, one after another in the order made (see then).
type session struct {
	ok   atomic.Bool   // Slack has the session: processing was set
	last chan struct{} // closed when the latest call is done; the reply's lock guards it
	// refusedAt is when an append was first refused (see stoppedBySlack);
	// the reply's lock guards it.
	refusedAt time.Time
}

// sessionsOn reports whether answers in team's threads run as agent sessions.
func (a *Adapter) sessionsOn(team string) bool {
	if !*a.cfg.AgentSessions {
		return false
	}
	v, ok := a.noSessions.Load(team)
	return !ok || time.Now().After(v.(time.Time))
}

// then runs fn in the background once the session's earlier calls are
// done: a status is best effort and never delays the answer. The caller
// holds r.mu.
func (r *reply) then(ctx context.Context, s *session, fn func(ctx context.Context)) {
	prev, done := s.last, make(chan struct{})
	s.last = done
	r.a.background(ctx, func(ctx context.Context) {
		defer close(done)
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return
			}
		}
		fn(ctx)
	})
}

// beginSession sets the answer's session processing, titled from the
// question if the call creates it. The caller holds r.mu.
func (r *reply) beginSession(ctx context.Context) {
	t := r.t
	if r.sess != nil || t.thread == "" || t.slash || !r.a.sessionsOn(t.team) {
		return
	}
	s := &session{}
	r.sess = s
	title := sessionTitle(t.title)
	r.then(ctx, s, func(ctx context.Context) {
		var resp *slack.AgentSessionSetStatusResponse
		err := r.a.call(ctx, ratelimit.BestEffort, t.team, t.channel, "agents.sessions.setStatus", func(ctx context.Context) error {
			var err error
			resp, err = r.a.api.SetAgentSessionStatusContext(ctx, slack.AgentSessionSetStatusParameters{
				Status: sessionProcessing, ChannelID: t.channel, ThreadTS: t.thread, Title: title, InitiatorUserID: t.user,
			})
			return err
		})
		switch {
		case err == nil:
			s.ok.Store(true)
			if strings.Contains(resp.Warning, missingStopSubscription) {
				r.a.noSessions.Store(t.team, time.Now().Add(sessionsRetryAfter))
				r.log.Warn("Slack shows no Stop button: subscribe the app to agent_session_stopped (see slack-app-manifest.yaml); using !stop for an hour")
			}
		case sessionsUnavailable(err):
			r.a.noSessions.Store(t.team, time.Now().Add(sessionsRetryAfter))
			r.log.Info("agent sessions unavailable in this workspace; using the assistant status and !stop for an hour", "err", err)
		case !errors.Is(err, ratelimit.ErrSkipped):
			r.log.Debug("setting the agent session processing failed", "err", err)
		}
	})
}

// keepSession sets the session processing again after a stream message of
// a long answer stopped (chat.stopStream leaves the session active), best
// effort. The caller holds r.mu.
func (r *reply) keepSession() {
	s, t := r.sess, r.t
	if s == nil {
		return
	}
	r.then(context.Background(), s, func(ctx context.Context) {
		if !s.ok.Load() {
			return
		}
		err := r.a.call(ctx, ratelimit.BestEffort, t.team, t.channel, "agents.sessions.setStatus", func(ctx context.Context) error {
			_, err := r.a.api.SetAgentSessionStatusContext(ctx, slack.AgentSessionSetStatusParameters{Status: sessionProcessing, ChannelID: t.channel, ThreadTS: t.thread})
			return err
		})
		if err != nil && !errors.Is(err, ratelimit.ErrSkipped) {
			r.log.Debug("setting the agent session processing again failed", "err", err)
		}
	})
}

// endSession sets the answer's session back to active, if it was set
// processing, after the session's earlier calls. It waits for budget: a
// session left processing keeps its Stop button.
func (r *reply) endSession() {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, t := r.sess, r.t
	if s == nil {
		return
	}
	r.sess = nil
	r.then(context.Background(), s, func(ctx context.Context) {
		if s.ok.Load() {
			r.a.setSession(ctx, t.team, t.channel, t.thread, sessionActive, r.log)
		}
	})
}

// setSession sets a thread's session status, waiting for budget.
func (a *Adapter) setSession(ctx context.Context, team, channel, thread, status string, log *slog.Logger) {
	err := a.call(ctx, ratelimit.MustDeliver, team, channel, "agents.sessions.setStatus", func(ctx context.Context) error {
		_, err := a.api.SetAgentSessionStatusContext(ctx, slack.AgentSessionSetStatusParameters{Status: status, ChannelID: channel, ThreadTS: thread})
		return err
	})
	if err != nil {
		log.Debug("setting the agent session status failed", "status", status, "err", err)
	}
}

// background runs fn apart from the answer, with ctx's values but not its
// cancellation, for at most sessionCallWait; drain waits for it.
func (a *Adapter) background(ctx context.Context, fn func(ctx context.Context)) {
	a.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionCallWait)
		defer cancel()
		fn(ctx)
	})
}

// stoppedBySlack reports an append refused, in a session, as Slack does
// once its Stop button stopped the stream: the answer stops when
// agent_session_stopped arrives, and until then (for stopEventWait) frames
// are skipped; the final one still stops the stream with the rest of the
// text and the note. Past stopEventWait the stream counts as broken.
func (r *reply) stoppedBySlack(err error) bool {
	var se slack.SlackErrorResponse
	if r.sess == nil || r.seg == nil || !errors.As(err, &se) || se.Err != "message_not_in_streaming_state" {
		return false
	}
	if r.sess.refusedAt.IsZero() {
		r.sess.refusedAt = time.Now()
	}
	return time.Since(r.sess.refusedAt) < stopEventWait
}

// sessionTitle is a session's title from the question: its first line,
// cut to Slack's 200 characters ("" leaves Slack's default).
func sessionTitle(question string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(question), "\n")
	line = strings.Join(strings.Fields(line), " ")
	if utf8.RuneCountInString(line) > maxSessionTitle {
		line = string([]rune(line)[:maxSessionTitle-1]) + "…"
	}
	return line
}

// sessionsUnavailable reports an error meaning the workspace has no agent
// sessions: those streamingUnavailable knows and the agent-specific ones.
func sessionsUnavailable(err error) bool {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && se.Err == "feature_disabled" {
		return true
	}
	return streamingUnavailable(err)
}

// sessionStopped is the agent_session_stopped event: a person pressed the
// Stop button Slack draws for a processing session.
type sessionStopped struct {
	Channel   string   `json:"channel"`
	ThreadTS  string   `json:"thread_ts"`
	User      string   `json:"user"`
	EventTS   string   `json:"event_ts"`
	Streaming []string `json:"streaming_message_ts"`
}

// onSessionStopped stops the answer in the session's thread as !stop
// does (conversation.ThreadStopper), on whichever replica runs it, once
// per event across redeliveries and replicas. The clicker reads the
// outcome privately. Unless the stop was refused (someone else's answer),
// the session is set active at once, so that a session whose answer is
// gone loses its Stop button too (an answer's end sets it again). It
// reports false when the work could not be taken (see dispatch).
func (a *Adapter) onSessionStopped(team string, raw json.RawMessage) bool {
	var ev sessionStopped
	stopper, ok := a.h.(conversation.ThreadStopper)
	if !ok || json.Unmarshal(raw, &ev) != nil || ev.Channel == "" || ev.ThreadTS == "" || ev.User == "" {
		return true
	}
	dm := strings.HasPrefix(ev.Channel, "D")
	if reason := a.allowed(ev.Channel, ev.User, dm); reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		return true
	}
	m := conversation.Message{
		Platform:  conversation.PlatformSlack,
		Workspace: team,
		Channel:   ev.Channel,
		Thread:    ev.ThreadTS,
		ID:        "agentstop:" + ev.Channel + ":" + ev.ThreadTS + ":" + ev.EventTS,
		User:      conversation.User{ID: ev.User, Admin: a.cfg.Admins.Contains(ev.User), CanSwitchModel: true},
		Text:      "/" + conversation.CmdStop,
		DM:        dm,
		Mentioned: true,
		InThread:  true,
		Time:      parseTS(ev.EventTS),
	}
	log := a.log.With("team", team, "channel", ev.Channel, "thread", ev.ThreadTS, "stopped_by", ev.User)
	return a.dispatch("agent session stop", func(ctx context.Context) {
		out, notice, err := stopper.StopThread(ctx, m)
		if err != nil {
			log.Warn("stopping the answer for Slack's Stop button failed", "err", err)
			notice = "⚠️ I can't reach my memory (Redis) right now, so I couldn't stop the answer. Please try again in a moment."
		}
		if out == conversation.StopRepeated {
			return
		}
		if err == nil && out != conversation.StopRefused {
			a.setSession(ctx, team, ev.Channel, ev.ThreadTS, sessionActive, log)
		}
		r := a.newReply(replyTarget{team: team, channel: ev.Channel, thread: ev.ThreadTS, user: ev.User, dm: dm, private: true}, log)
		if err := r.Notice(ctx, notice); err != nil {
			log.Debug("telling the clicker failed", "err", err)
		}
	})
}

package slacktest

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// Slack's agent surface: agent sessions (agents.sessions.setStatus and
// rename), the assistant pane's suggested prompts and titles, and the
// events and clicks that go with them.

// Session is an agent session as the fake keeps it: one per thread.
type Session struct {
	Channel, ThreadTS string
	Status            string // processing, active, suspended or closed
	Title             string
	Initiator         string
	// History lists every status set by setStatus, and every change
	// chat.stopStream made (its session_status, default active), in order.
	History []string
}

// PromptsCall is one assistant.threads.setSuggestedPrompts call.
type PromptsCall struct {
	Channel, ThreadTS, Title string
	Prompts                  []struct{ Title, Message string }
	Time                     time.Time
}

// TitleCall is one assistant.threads.setTitle call.
type TitleCall struct {
	Channel, ThreadTS, Title string
}

// agentState is the fake's agent surface; s.mu guards it.
type agentState struct {
	off      string // agents.sessions.* answer this error when set
	warning  string // agents.sessions.setStatus warns so when set
	sessions map[string]*Session
	prompts  []PromptsCall
	titles   []TitleCall
}

// RefuseAgentSessions makes agents.sessions.* fail with code (as a
// workspace on an older plan does, e.g. "unknown_method" or
// "feature_disabled"); "" accepts them again.
func (s *Server) RefuseAgentSessions(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agent.off = code
}

// WarnAgentSessions has agents.sessions.setStatus answer ok with this
// warning, e.g. "missing_agent_session_stopped_event_subscription".
func (s *Server) WarnAgentSessions(warning string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agent.warning = warning
}

// Session returns the agent session of a thread.
func (s *Server) Session(channel, threadTS string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.agent.sessions[channel+"/"+threadTS]
	if !ok {
		return Session{}, false
	}
	out := *ss
	out.History = append([]string(nil), ss.History...)
	return out, true
}

// SuggestedPrompts lists the setSuggestedPrompts calls.
func (s *Server) SuggestedPrompts() []PromptsCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PromptsCall(nil), s.agent.prompts...)
}

// Titles lists the assistant.threads.setTitle calls.
func (s *Server) Titles() []TitleCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TitleCall(nil), s.agent.titles...)
}

var sessionStatuses = map[string]bool{"processing": true, "active": true, "suspended": true, "closed": true}

// agentCall serves agents.sessions.* and the assistant pane's methods; s.mu is held.
func (s *Server) agentCall(req *apiRequest, now time.Time) any {
	ch, thread := req.get("channel_id"), req.get("thread_ts")
	switch req.method {
	case "agents.sessions.setStatus", "agents.sessions.rename":
		if s.agent.off != "" {
			return apiError(s.agent.off)
		}
		if ch == "" {
			return apiError("channel_not_found")
		}
		if thread == "" {
			return apiError("invalid_thread_ts")
		}
	}
	if s.agent.sessions == nil {
		s.agent.sessions = map[string]*Session{}
	}
	key := ch + "/" + thread
	switch req.method {
	case "agents.sessions.setStatus":
		status := req.get("status")
		title := req.get("title")
		if !sessionStatuses[status] || utf8.RuneCountInString(title) > 200 {
			return apiError("invalid_arguments")
		}
		ss := s.agent.sessions[key]
		if ss == nil { // the call creates the session: title and initiator apply
			ss = &Session{Channel: ch, ThreadTS: thread, Title: title, Initiator: req.get("initiator_user_id")}
			s.agent.sessions[key] = ss
		}
		ss.Status = status
		ss.History = append(ss.History, status)
		resp := map[string]any{"ok": true, "status": status, "agent_status": status, "title": ss.Title}
		if s.agent.warning != "" {
			resp["warning"] = s.agent.warning
		}
		return resp
	case "agents.sessions.rename":
		title := req.get("title")
		if n := utf8.RuneCountInString(title); n == 0 || n > 200 {
			return apiError("invalid_arguments")
		}
		ss := s.agent.sessions[key]
		if ss == nil {
			return apiError("session_not_found")
		}
		ss.Title = title
		return map[string]any{"ok": true, "title": title}
	case "assistant.threads.setSuggestedPrompts":
		if ch == "" {
			return apiError("channel_not_found")
		}
		var prompts []struct{ Title, Message string }
		if err := json.Unmarshal([]byte(req.get("prompts")), &prompts); err != nil || len(prompts) > 4 {
			return apiError("invalid_arguments")
		}
		for _, p := range prompts {
			if p.Title == "" || p.Message == "" {
				return apiError("invalid_arguments")
			}
		}
		s.agent.prompts = append(s.agent.prompts, PromptsCall{Channel: ch, ThreadTS: thread, Title: req.get("title"), Prompts: prompts, Time: now})
		return okResponse{OK: true}
	case "assistant.threads.setTitle":
		if ch == "" || thread == "" || req.get("title") == "" {
			return apiError("invalid_arguments")
		}
		s.agent.titles = append(s.agent.titles, TitleCall{Channel: ch, ThreadTS: thread, Title: req.get("title")})
		return okResponse{OK: true}
	}
	return apiError("unknown_method")
}

// stopStreamSession applies chat.stopStream's session_status (default
// active) to the session of m's thread, if any; s.mu is held.
func (s *Server) stopStreamSession(m *Message, status string) {
	ss := s.agent.sessions[m.Channel+"/"+m.ThreadTS]
	if ss == nil {
		return
	}
	if status == "" {
		status = "active"
	}
	if ss.Status != status {
		ss.Status = status
		ss.History = append(ss.History, status)
	}
}

// StopSession is what Slack does when a person presses the Stop button of
// an agent session: it stops the app's streams in the thread (an append to
// them then fails; one chat.stopStream is still accepted) and returns the
// agent_session_stopped event to send (SendEvent) listing them.
func (s *Server) StopSession(channel, threadTS, user string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	stopped := []any{}
	for _, ts := range s.order[channel] {
		if m := s.messages[channel][ts]; m.ThreadTS == threadTS && m.Streaming && !m.stoppedBySlack {
			m.stoppedBySlack = true
			stopped = append(stopped, ts)
		}
	}
	return map[string]any{"type": "agent_session_stopped", "channel": channel, "thread_ts": threadTS,
		"streaming_message_ts": stopped, "user": user, "event_ts": s.NextTS()}
}

// StopSessionEvent is an agent_session_stopped event for the thread that
// stops no stream of the app's (its streaming_message_ts is empty).
func StopSessionEvent(channel, threadTS, user, eventTS string) map[string]any {
	return map[string]any{"type": "agent_session_stopped", "channel": channel, "thread_ts": threadTS,
		"streaming_message_ts": []any{}, "user": user, "event_ts": eventTS}
}

// AssistantThreadStarted is the event Slack sends when user opens the
// assistant view or starts a new thread in it (channel is the DM).
func AssistantThreadStarted(user, channel, threadTS, teamID string) map[string]any {
	return map[string]any{"type": "assistant_thread_started", "event_ts": threadTS,
		"assistant_thread": map[string]any{"user_id": user, "channel_id": channel, "thread_ts": threadTS,
			"context": map[string]any{"channel_id": "", "team_id": teamID, "enterprise_id": ""}}}
}

// AppHomeOpened is the event Slack sends when user opens a tab of the app
// ("messages": the agent pane, "home").
func AppHomeOpened(user, channel, tab, eventTS string) map[string]any {
	return map[string]any{"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": eventTS}
}

// Feedback is a feedback_buttons element in a message's context_actions blocks.
type Feedback struct {
	BlockID, ActionID, Positive, Negative string // the buttons' values
}

// Feedback returns the message's feedback buttons, if any.
func (m Message) Feedback() (Feedback, bool) {
	var blocks []struct {
		Type     string `json:"type"`
		BlockID  string `json:"block_id"`
		Elements []struct {
			Type     string `json:"type"`
			ActionID string `json:"action_id"`
			Positive struct {
				Value string `json:"value"`
			} `json:"positive_button"`
			Negative struct {
				Value string `json:"value"`
			} `json:"negative_button"`
		} `json:"elements"`
	}
	if m.Blocks == "" || json.Unmarshal([]byte(m.Blocks), &blocks) != nil {
		return Feedback{}, false
	}
	for _, b := range blocks {
		if b.Type != "context_actions" {
			continue
		}
		for _, e := range b.Elements {
			if e.Type == "feedback_buttons" {
				return Feedback{BlockID: b.BlockID, ActionID: e.ActionID, Positive: e.Positive.Value, Negative: e.Negative.Value}, true
			}
		}
	}
	return Feedback{}, false
}

// FeedbackAction is the block_actions payload of user pressing 👍
// (positive) or 👎 on message m's feedback buttons, as Slack sends it.
func (s *Server) FeedbackAction(user string, m Message, positive bool) map[string]any {
	p := s.BlockAction(user, m, "")
	fb, _ := m.Feedback()
	value := fb.Negative
	if positive {
		value = fb.Positive
	}
	p["actions"] = []any{map[string]any{"type": "feedback_buttons", "action_id": fb.ActionID, "block_id": fb.BlockID,
		"value": value, "action_ts": s.NextTS()}}
	return p
}

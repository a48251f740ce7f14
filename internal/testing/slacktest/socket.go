package slacktest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ErrNotConnected is returned when an envelope is sent with no Socket Mode client connected.
var ErrNotConnected = errors.New("slacktest: no Socket Mode connection")

type wsConn struct {
	c    *websocket.Conn
	mu   sync.Mutex // serializes writes
	once sync.Once
	done chan struct{}
}

func (c *wsConn) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(websocketWriteTimeout))
	return c.c.WriteMessage(websocket.TextMessage, data)
}

func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye"), time.Now().Add(100*time.Millisecond))
		_ = c.c.Close()
	})
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	wc, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade already answered
	}
	conn := &wsConn{c: wc, done: make(chan struct{})}
	wc.SetReadLimit(1 << 20)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.close()
		return
	}
	s.conns[conn] = true
	n := len(s.conns)
	waiters := s.connWaiters
	s.connWaiters = nil
	s.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		if len(s.conns) == 0 {
			s.gaps++
		}
		s.mu.Unlock()
		conn.close()
	}()
	s.logf("slacktest: socket mode client connected (%d open)", n)
	if err := conn.write(map[string]any{
		"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "slacktest", "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": DefaultAppID},
	}); err != nil {
		return
	}
	go s.pingLoop(conn)
	for {
		_, data, err := wc.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &ack) != nil || ack.EnvelopeID == "" {
			continue
		}
		s.mu.Lock()
		s.acks[ack.EnvelopeID] = Ack{EnvelopeID: ack.EnvelopeID, Payload: ack.Payload, Time: time.Now()}
		ws := s.ackWaiters[ack.EnvelopeID]
		delete(s.ackWaiters, ack.EnvelopeID)
		s.mu.Unlock()
		for _, ch := range ws {
			close(ch)
		}
	}
}

func (s *Server) pingLoop(c *wsConn) {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-s.done:
			return
		case <-t.C:
			if err := c.c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(websocketWriteTimeout)); err != nil {
				c.close()
				return
			}
		}
	}
}

// Connections is the number of open Socket Mode connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitConnected waits until at least one Socket Mode client is connected.
func (s *Server) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		if len(s.conns) > 0 {
			s.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		s.connWaiters = append(s.connWaiters, ch)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Disconnect asks every client to reconnect, as Slack does before it
// rotates a connection ({"type":"disconnect","reason":"refresh_requested"}),
// and closes those connections after grace, as Slack does some seconds
// later. Events sent meanwhile go to any open connection, old or new.
func (s *Server) Disconnect(grace time.Duration) {
	conns := s.connections()
	for _, c := range conns {
		_ = c.write(map[string]any{"type": "disconnect", "reason": "refresh_requested", "debug_info": map[string]any{"host": "slacktest"}})
	}
	go func() {
		select {
		case <-time.After(grace):
		case <-s.done:
		}
		for _, c := range conns {
			c.close()
		}
	}()
}

// Gaps counts the times the last open Socket Mode connection closed:
// moments when Slack would have had nowhere to send an event.
func (s *Server) Gaps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gaps
}

// DropConnections closes every Socket Mode connection without warning.
func (s *Server) DropConnections() {
	for _, c := range s.connections() {
		c.close()
	}
}

func (s *Server) connections() []*wsConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// SendEnvelope writes a raw envelope to one connected client (the
// oldest-registered is not guaranteed; any one, as Slack does).
func (s *Server) SendEnvelope(env map[string]any) error { return s.sendEnvelope(env) }

// sendEnvelope is SendEnvelope for any JSON-encodable envelope.
func (s *Server) sendEnvelope(env any) error {
	conns := s.connections()
	if len(conns) == 0 {
		return ErrNotConnected
	}
	// Slack picks a connection at random; map order is random enough.
	var err error
	for _, c := range conns {
		if err = c.write(env); err == nil {
			return nil
		}
	}
	return err
}

// Acked reports whether the envelope has been acknowledged.
func (s *Server) Acked(envelopeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.acks[envelopeID]
	return ok
}

// AckOf returns the acknowledgement of an envelope.
func (s *Server) AckOf(envelopeID string) (Ack, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.acks[envelopeID]
	return a, ok
}

// ackWatch reports whether the envelope is acknowledged, else returns a
// channel closed when it is.
func (s *Server) ackWatch(envelopeID string) (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.acks[envelopeID]; ok {
		return true, nil
	}
	ch := make(chan struct{})
	s.ackWaiters[envelopeID] = append(s.ackWaiters[envelopeID], ch)
	return false, ch
}

// WaitAck waits until the envelope is acknowledged or ctx ends.
func (s *Server) WaitAck(ctx context.Context, envelopeID string) error {
	acked, ch := s.ackWatch(envelopeID)
	if acked {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("envelope %s not acknowledged: %w", envelopeID, ctx.Err())
	}
}

// ---- events ----

// EventOptions describe the outer Events API envelope of an event.
type EventOptions struct {
	TeamID       string // default: the server's first workspace
	EventID      string // default: a fresh Ev…; reuse one to simulate a redelivery
	EnvelopeID   string // default: a fresh one (Slack gives a redelivery a new envelope)
	RetryAttempt int
	RetryReason  string
}

// Sent identifies a sent envelope.
type Sent struct {
	EnvelopeID string
	EventID    string
}

// The event_callback payload and its events_api envelope. Their fields are
// in the order of the keys' names, as encoding/json writes a map's.
type (
	callbackPayload struct {
		APIAppID           string          `json:"api_app_id"`
		Authorizations     []authorization `json:"authorizations"`
		Event              map[string]any  `json:"event"`
		EventContext       string          `json:"event_context"`
		EventID            string          `json:"event_id"`
		EventTime          int64           `json:"event_time"`
		IsExtSharedChannel bool            `json:"is_ext_shared_channel"`
		TeamID             string          `json:"team_id"`
		Token              string          `json:"token"`
		Type               string          `json:"type"`
	}
	authorization struct {
		IsBot               bool   `json:"is_bot"`
		IsEnterpriseInstall bool   `json:"is_enterprise_install"`
		TeamID              string `json:"team_id"`
		UserID              string `json:"user_id"`
	}
	eventsAPIEnvelope struct {
		AcceptsResponsePayload bool            `json:"accepts_response_payload"`
		EnvelopeID             string          `json:"envelope_id"`
		Payload                callbackPayload `json:"payload"`
		RetryAttempt           int             `json:"retry_attempt"`
		RetryReason            string          `json:"retry_reason"`
		Type                   string          `json:"type"`
	}
)

// EventCallback returns the event_callback payload wrapping event, as the
// HTTP Events API posts it and Socket Mode carries it, with o's IDs filled in.
func (s *Server) EventCallback(o *EventOptions, event map[string]any) []byte {
	b, _ := json.Marshal(s.callbackPayload(o, event))
	return b
}

// callbackPayload fills in o's IDs and wraps event.
func (s *Server) callbackPayload(o *EventOptions, event map[string]any) callbackPayload {
	if o.TeamID == "" {
		o.TeamID = s.opts.TeamID
	}
	if o.EventID == "" {
		o.EventID = formatID("Ev", s.idCounter.Add(1))
	}
	return callbackPayload{
		Token: "verification-token-unused", TeamID: o.TeamID, APIAppID: DefaultAppID,
		Event: event, Type: "event_callback", EventID: o.EventID, EventTime: time.Now().Unix(),
		Authorizations: []authorization{{TeamID: o.TeamID, UserID: s.opts.BotUserID, IsBot: true}},
		EventContext:   "4-fake-" + o.EventID,
	}
}

// SendEvent sends an events_api envelope carrying event to a connected
// client. With Options.Redeliver it also sends it again until it is
// acknowledged (see there), and an event that found no connection open is
// not an error: it waits for its redelivery.
func (s *Server) SendEvent(o EventOptions, event map[string]any) (Sent, error) {
	env := &eventsAPIEnvelope{Type: "events_api", Payload: s.callbackPayload(&o, event),
		RetryAttempt: o.RetryAttempt, RetryReason: o.RetryReason}
	if o.EnvelopeID == "" {
		o.EnvelopeID = s.newEnvelopeID()
	}
	env.EnvelopeID = o.EnvelopeID
	err := s.sendEnvelope(env)
	if s.opts.Redeliver > 0 {
		s.wg.Go(func() { s.redeliver(env) })
		if errors.Is(err, ErrNotConnected) {
			err = nil
		}
	}
	return Sent{EnvelopeID: o.EnvelopeID, EventID: o.EventID}, err
}

// MaxRedeliveries is how many times Slack sends an event again.
const MaxRedeliveries = 3

// redeliver sends env again, each time it is not acknowledged within
// Options.Redeliver, MaxRedeliveries times at most.
func (s *Server) redeliver(env *eventsAPIEnvelope) {
	for attempt := 1; attempt <= MaxRedeliveries; attempt++ {
		acked, ch := s.ackWatch(env.EnvelopeID)
		if acked {
			return
		}
		t := time.NewTimer(s.opts.Redeliver)
		select {
		case <-ch: // acknowledged
			t.Stop()
			return
		case <-s.done:
			t.Stop()
			return
		case <-t.C:
		}
		again := *env
		again.EnvelopeID, again.RetryAttempt, again.RetryReason = s.newEnvelopeID(), attempt, "timeout"
		s.redelivered.Add(1)
		_ = s.sendEnvelope(&again)
		env = &again
	}
}

// Redelivered counts the events sent again (Options.Redeliver).
func (s *Server) Redelivered() int64 { return s.redelivered.Load() }

// BlockAction is the block_actions payload of user clicking the button
// with actionID on message m, as Slack sends it over Socket Mode (in an
// "interactive" envelope) and posts it to the interactivity URL (form field
// payload): the message as it stands, its blocks included.
func (s *Server) BlockAction(user string, m Message, actionID string) map[string]any {
	var blocks any = []any{}
	if m.Blocks != "" {
		_ = json.Unmarshal([]byte(m.Blocks), &blocks)
	}
	var act map[string]any
	for _, b := range m.Buttons() {
		if b.ActionID == actionID {
			act = map[string]any{"type": "button", "action_id": b.ActionID, "block_id": b.BlockID, "value": b.Value,
				"text": map[string]any{"type": "plain_text", "text": b.Text, "emoji": true}, "action_ts": s.NextTS()}
		}
	}
	if act == nil {
		act = map[string]any{"type": "button", "action_id": actionID, "action_ts": s.NextTS()}
	}
	msg := map[string]any{"type": "message", "user": m.User, "bot_id": m.BotID, "ts": m.TS, "text": m.Text, "blocks": blocks}
	if m.ThreadTS != "" {
		msg["thread_ts"] = m.ThreadTS
	}
	container := map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false}
	if m.ThreadTS != "" {
		container["thread_ts"] = m.ThreadTS
	}
	return map[string]any{
		"type": "block_actions", "api_app_id": DefaultAppID, "token": "verification-token-unused",
		"trigger_id": formatID("trig-", s.idCounter.Add(1)),
		"team":       map[string]any{"id": s.opts.TeamID, "domain": "fake"},
		"user":       map[string]any{"id": user, "username": user, "team_id": s.opts.TeamID},
		"channel":    map[string]any{"id": m.Channel, "name": m.Channel},
		"container":  container, "message": msg,
		"response_url": s.ResponseURL(),
		"actions":      []any{act},
	}
}

// SendInteractive sends an "interactive" envelope carrying payload (say a
// BlockAction) to a connected client.
func (s *Server) SendInteractive(payload map[string]any) (Sent, error) {
	id := s.newEnvelopeID()
	env := map[string]any{"envelope_id": id, "type": "interactive", "payload": payload, "accepts_response_payload": false}
	return Sent{EnvelopeID: id}, s.sendEnvelope(env)
}

func (s *Server) newEnvelopeID() string {
	return formatID("env-", s.envCounter.Add(1))
}

// formatID is prefix and n zero-padded to 8 digits: fmt's "%s%08d".
func formatID(prefix string, n int64) string {
	var buf [32]byte
	return string(appendPadded(append(buf[:0], prefix...), n, 8))
}

// AppMention builds an app_mention event. threadTS "" means a top-level message.
func AppMention(channel, user, text, ts, threadTS string) map[string]any {
	ev := map[string]any{"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts}
	if threadTS != "" {
		ev["thread_ts"] = threadTS
	}
	return ev
}

// UserMessage builds a message event. channelType is channel, group, im or mpim.
func UserMessage(channel, channelType, user, text, ts, threadTS string) map[string]any {
	ev := map[string]any{"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
		"channel_type": channelType, "event_ts": ts, "client_msg_id": "cm-" + ts}
	if threadTS != "" {
		ev["thread_ts"] = threadTS
	}
	return ev
}

// SlashCommand is a slash command invocation.
type SlashCommand struct {
	TeamID, TeamDomain, ChannelID, ChannelName, UserID, UserName string
	Command, Text, ResponseURL, TriggerID                        string
}

// NewSlashCommand fills in a slash command with a fresh response_url and trigger_id.
func (s *Server) NewSlashCommand(command, text, channel, user string) SlashCommand {
	return SlashCommand{TeamID: s.opts.TeamID, TeamDomain: s.opts.TeamName, ChannelID: channel, ChannelName: "general",
		UserID: user, UserName: user, Command: command, Text: text,
		ResponseURL: s.ResponseURL(), TriggerID: fmt.Sprintf("%d.%d.fake", time.Now().UnixNano(), s.idCounter.Add(1))}
}

func (c SlashCommand) fields() map[string]string {
	return map[string]string{
		"token": "verification-token-unused", "team_id": c.TeamID, "team_domain": c.TeamDomain,
		"channel_id": c.ChannelID, "channel_name": c.ChannelName, "user_id": c.UserID, "user_name": c.UserName,
		"command": c.Command, "text": c.Text, "api_app_id": DefaultAppID, "is_enterprise_install": "false",
		"response_url": c.ResponseURL, "trigger_id": c.TriggerID,
	}
}

// Form encodes the command as the HTTP POST body Slack sends.
func (c SlashCommand) Form() url.Values {
	v := url.Values{}
	for k, val := range c.fields() {
		v.Set(k, val)
	}
	return v
}

// SendSlashCommand sends a slash_commands envelope to a connected client.
func (s *Server) SendSlashCommand(c SlashCommand) (envelopeID string, err error) {
	id := s.newEnvelopeID()
	env := map[string]any{"envelope_id": id, "type": "slash_commands", "accepts_response_payload": true, "payload": c.fields()}
	return id, s.SendEnvelope(env)
}

// Sign returns the headers Slack adds to an HTTP request: the timestamp
// and the v0 HMAC-SHA256 signature of body with secret.
func Sign(secret string, ts time.Time, body []byte) http.Header {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", stamp)
	mac.Write(body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", stamp)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

package discordtest

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// maxReplay bounds the dispatches kept per session for RESUME.
const maxReplay = 4096

// writeTimeout bounds one websocket write, so a stuck client never blocks the fake.
const writeTimeout = 5 * time.Second

type gwSession struct {
	id      string
	token   string
	shard   [2]int
	intents int
	seq     int64
	conn    *gwConn
	replay  []gwFrame
}

type gwFrame struct {
	seq  int64
	data []byte
}

type gwConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	once sync.Once
}

func (c *gwConn) write(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

func (c *gwConn) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *gwConn) close() { c.once.Do(func() { _ = c.ws.Close() }) }

type gwPayload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  *int64          `json:"s"`
	T  *string         `json:"t"`
}

func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gwConn{ws: ws}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
		return
	}
	s.conns[c] = struct{}{}
	s.dials = append(s.dials, r.URL.RequestURI())
	s.mu.Unlock()
	defer func() {
		c.close()
		s.mu.Lock()
		delete(s.conns, c)
		for _, sess := range s.sessions {
			if sess.conn == c {
				sess.conn = nil
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
	}()

	if c.writeJSON(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": s.heartbeat.Milliseconds()}, "s": nil, "t": nil}) != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var p gwPayload
		if json.Unmarshal(data, &p) != nil {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "Error while decoding payload."), time.Now().Add(time.Second))
			return
		}
		switch p.Op {
		case 1: // heartbeat
			var seq int64 // null before the first dispatch
			_ = json.Unmarshal(p.D, &seq)
			s.mu.Lock()
			s.stats.Heartbeats++
			s.stats.HeartbeatSeq = seq
			silent := s.noAcks
			s.mu.Unlock()
			if !silent && c.writeJSON(map[string]any{"op": 11, "d": nil, "s": nil, "t": nil}) != nil {
				return
			}
		case 2: // identify
			if !s.identify(c, p.D) {
				return
			}
		case 6: // resume
			if !s.resume(c, p.D) {
				return
			}
		}
	}
}

func (s *Server) checkToken(tok string) bool {
	return strings.TrimPrefix(tok, "Bot ") == s.token
}

func (s *Server) identify(c *gwConn, raw json.RawMessage) bool {
	var d struct {
		Token   string `json:"token"`
		Intents int    `json:"intents"`
		Shard   *[2]int
	}
	if json.Unmarshal(raw, &d) != nil || !s.checkToken(d.Token) {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4004, "Authentication failed."), time.Now().Add(time.Second))
		return false
	}
	shard := [2]int{0, 1}
	if d.Shard != nil {
		shard = *d.Shard
	}
	if shard[1] < 1 || shard[0] < 0 || shard[0] >= shard[1] {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4010, "Invalid shard."), time.Now().Add(time.Second))
		return false
	}
	sess := &gwSession{id: "sess-" + s.NewID(), token: d.Token, shard: shard, intents: d.Intents, conn: c}

	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	now := time.Now()
	limit := s.sessionStartLimitLocked(now)
	bucket := shard[0] % max(limit.MaxConcurrency, 1)
	if last, ok := s.lastIdentify[bucket]; ok && now.Sub(last) < s.identifyWindow {
		// Identifying faster than max_concurrency allows: Discord answers
		// INVALID_SESSION, and the session is not started.
		s.stats.IdentifiesTooFast++
		s.notifyLocked()
		s.mu.Unlock()
		return c.writeJSON(map[string]any{"op": 9, "d": false, "s": nil, "t": nil}) == nil
	}
	if limit.Remaining <= 0 {
		// Over the daily limit Discord resets the token and ends every
		// session of the bot.
		s.stats.StartsExceeded++
		clear(s.sessions)
		s.notifyLocked()
		s.mu.Unlock()
		s.CloseConnections(4004, "Authentication failed.")
		return false
	}
	s.starts.Remaining--
	s.lastIdentify[bucket] = now
	s.sessions[sess.id] = sess
	s.identifies = append(s.identifies, Identify{Intents: d.Intents, Shard: shard, Time: now})
	s.stats.Identifies++
	var guilds []any
	var creates []map[string]any
	for gid, name := range s.guilds {
		if !inShard(gid, shard) {
			continue
		}
		guilds = append(guilds, map[string]any{"id": gid, "unavailable": true})
		var chans, threads []any
		for _, ch := range s.channels {
			if ch.GuildID != gid {
				continue
			}
			if isThread(ch.Type) {
				threads = append(threads, s.channelJSONLocked(ch))
			} else {
				chans = append(chans, s.channelJSONLocked(ch))
			}
		}
		creates = append(creates, map[string]any{
			"id": gid, "name": name, "unavailable": false, "channels": nonNil(chans), "threads": nonNil(threads),
			"members": []any{}, "roles": []any{}, "emojis": []any{}, "member_count": 2, "large": false,
			"joined_at": "2024-01-01T00:00:00+00:00", "owner_id": "1",
		})
	}
	ready := map[string]any{
		"v": 10, "user": userJSON(s.bot), "session_id": sess.id, "resume_gateway_url": s.ResumeURL(),
		"guilds": nonNil(guilds), "private_channels": []any{}, "shard": shard,
		"application": map[string]any{"id": s.appID, "flags": 0},
	}
	s.notifyLocked()
	s.mu.Unlock()
	send := func(event string, data any) bool {
		b, err := json.Marshal(data)
		return err == nil && s.sendLocked(sess, c, event, b) == nil
	}
	if !send("READY", ready) {
		return false
	}
	for _, g := range creates {
		if !send("GUILD_CREATE", g) {
			return false
		}
	}
	return true
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func (s *Server) resume(c *gwConn, raw json.RawMessage) bool {
	var d struct {
		Token     string `json:"token"`
		SessionID string `json:"session_id"`
		Seq       int64  `json:"seq"`
	}
	_ = json.Unmarshal(raw, &d)
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	sess, ok := s.sessions[d.SessionID]
	if !ok || !s.checkToken(d.Token) {
		s.mu.Unlock()
		return c.writeJSON(map[string]any{"op": 9, "d": false, "s": nil, "t": nil}) == nil
	}
	sess.conn = c
	s.stats.Resumes++
	var frames [][]byte
	for _, f := range sess.replay {
		if f.seq > d.Seq {
			frames = append(frames, f.data)
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, f := range frames {
		if c.write(f) != nil {
			return false
		}
	}
	return s.sendLocked(sess, c, "RESUMED", []byte("{}")) == nil
}

// sendLocked numbers and sends one dispatch of encoded data to a session;
// s.dmu must be held.
func (s *Server) sendLocked(sess *gwSession, c *gwConn, event string, data []byte) error {
	t, err := json.Marshal(event)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sess.seq++
	seq := sess.seq
	s.mu.Unlock()
	// The payload as json.Marshal would write it from a map: keys sorted.
	b := make([]byte, 0, len(data)+len(t)+48)
	b = append(b, `{"d":`...)
	b = append(b, data...)
	b = append(b, `,"op":0,"s":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = append(b, t...)
	b = append(b, '}')
	s.mu.Lock()
	sess.replay = append(sess.replay, gwFrame{seq, b})
	if len(sess.replay) > maxReplay {
		sess.replay = sess.replay[len(sess.replay)-maxReplay:]
	}
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.write(b)
}

// inShard reports whether a guild's events go to that shard.
func inShard(guildID string, shard [2]int) bool {
	if guildID == "" || shard[1] <= 1 {
		return guildID != "" || shard[0] == 0
	}
	id, err := strconv.ParseUint(guildID, 10, 64)
	if err != nil {
		return shard[0] == 0
	}
	return int((id>>22)%uint64(shard[1])) == shard[0]
}

// Dispatch sends an event (op 0, with the next sequence number) to every
// identified session whose shard owns the event's guild_id (DMs: shard 0).
// A session whose connection dropped or fails the write keeps the event
// for RESUME; only an event no session takes is an error.
func (s *Server) Dispatch(event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	var g struct {
		GuildID string `json:"guild_id"`
	}
	_ = json.Unmarshal(b, &g)
	return s.dispatch(event, g.GuildID, b)
}

// dispatchMessage dispatches MESSAGE_CREATE with a rendered message.
func (s *Server) dispatchMessage(msg *messageObject) error {
	return s.dispatch("MESSAGE_CREATE", msg.GuildID, msg.encode())
}

// dispatch is Dispatch for data already encoded (compact JSON, as
// json.Marshal writes it), whose guild_id is guildID.
func (s *Server) dispatch(event, guildID string, data []byte) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("discordtest: closed")
	}
	type target struct {
		sess *gwSession
		conn *gwConn
	}
	var targets []target
	for _, sess := range s.sessions {
		if inShard(guildID, sess.shard) {
			targets = append(targets, target{sess, sess.conn})
		}
	}
	s.mu.Unlock()
	if len(targets) == 0 {
		return errors.New("discordtest: no gateway session for " + event)
	}
	for _, t := range targets {
		if err := s.sendLocked(t.sess, t.conn, event, data); err != nil && t.conn != nil {
			// As on Discord, the session keeps the event for RESUME; the
			// connection that could not take it is done.
			t.conn.close()
		}
	}
	return nil
}

// Connected counts gateway sessions with a live connection.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.sessions {
		if sess.conn != nil {
			n++
		}
	}
	return n
}

// WaitConnected waits until n gateway sessions are identified and connected.
func (s *Server) WaitConnected(n int, timeout time.Duration) error {
	return s.WaitFor(timeout, func() bool { return s.Connected() >= n })
}

// liveConns lists the open gateway connections.
func (s *Server) liveConns() []*gwConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*gwConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Reconnect sends RECONNECT (op 7) on every gateway connection, as Discord
// does before it moves a session: clients reconnect and RESUME.
func (s *Server) Reconnect() {
	for _, c := range s.liveConns() {
		_ = c.writeJSON(map[string]any{"op": 7, "d": nil, "s": nil, "t": nil})
	}
}

// RequestHeartbeat sends HEARTBEAT (op 1) on every gateway connection:
// Discord's way to ask for one at once.
func (s *Server) RequestHeartbeat() {
	for _, c := range s.liveConns() {
		_ = c.writeJSON(map[string]any{"op": 1, "d": nil, "s": nil, "t": nil})
	}
}

// Sequence is the highest sequence number dispatched to any session.
func (s *Server) Sequence() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sess := range s.sessions {
		n = max(n, sess.seq)
	}
	return n
}

// InvalidateSessions sends INVALID_SESSION (op 9) on every gateway
// connection with d = resumable; when not resumable the sessions are
// forgotten, so only a new IDENTIFY is accepted.
func (s *Server) InvalidateSessions(resumable bool) {
	if !resumable {
		s.mu.Lock()
		clear(s.sessions)
		s.mu.Unlock()
	}
	for _, c := range s.liveConns() {
		_ = c.writeJSON(map[string]any{"op": 9, "d": resumable, "s": nil, "t": nil})
	}
}

// CloseConnections closes every gateway connection with a close frame of
// code (e.g. 4000 unknown error, resumable; 4004 authentication failed,
// fatal).
func (s *Server) CloseConnections(code int, reason string) {
	for _, c := range s.liveConns() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		c.close()
	}
}

// SetHeartbeatAcks switches the HEARTBEAT_ACKs (op 11) off and on: a
// connection that stops acknowledging is a zombie its client must replace.
func (s *Server) SetHeartbeatAcks(on bool) {
	s.mu.Lock()
	s.noAcks = !on
	s.mu.Unlock()
}

// Dials lists the request URI (path and query) of every gateway
// connection so far, in order.
func (s *Server) Dials() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dials...)
}

// DropConnections closes every gateway connection without a close frame, as
// a network failure would; clients then reconnect and RESUME.
func (s *Server) DropConnections() {
	for _, c := range s.liveConns() {
		c.close()
	}
}

package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/arkbot/arkbot/metrics"
)

// The gateway client. discordgo's Session decodes every gateway event
// twice (the frame into an Event, then its data into the typed struct),
// whether or not a handler wants it, and Discord sends a bot its own posts
// and each of their edits (MESSAGE_CREATE, MESSAGE_UPDATE: they come with
// the GUILD_MESSAGES intent mentions need), four or five events per
// streamed answer; at a thousand answers that decoding was an eighth of the
// bot's CPU (see the README's performance section). discordgo v0.29 also
// resumes on the first gateway address instead of READY's
// resume_gateway_url, and answers every INVALID_SESSION with an immediate
// IDENTIFY, resumable or not. This client reads each frame once into a
// payload whose data stays raw, decodes only the events the adapter uses
// (discordgo's types), and follows the connection lifecycle Discord
// documents: heartbeats with zombie detection, RESUME on the resume
// address, RECONNECT, INVALID_SESSION with its 1–5 s wait, and close codes
// that say whether to resume, identify anew, or give up. discordgo still
// makes every REST call.

const (
	// gatewayHelloTimeout bounds the wait for HELLO on a new connection.
	gatewayHelloTimeout = 20 * time.Second
	// gatewayWriteTimeout bounds one frame written.
	gatewayWriteTimeout = 10 * time.Second
	// gatewayReadLimit caps one frame: a READY or GUILD_CREATE of a big
	// guild, sent uncompressed, can run to megabytes.
	gatewayReadLimit = 64 << 20
	// gatewayMaxBackoff caps the wait between failed connection attempts.
	gatewayMaxBackoff = time.Minute
)

// Gateway opcodes.
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opResume         = 6
	opReconnect      = 7
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatAck   = 11
)

// gatewayPayload is one gateway frame, its data left undecoded.
type gatewayPayload struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  int64           `json:"s"`
	T  string          `json:"t"`
}

// gatewaySession is what a RESUME needs; it outlives connections.
type gatewaySession struct {
	id        string
	resumeURL string
	seq       atomic.Int64 // the last dispatch's sequence number
}

// reset forgets the session, so the next connection identifies anew.
func (s *gatewaySession) reset() {
	s.id, s.resumeURL = "", ""
	s.seq.Store(0)
}

// errReconnect ends a connection Discord asked the client to replace.
var errReconnect = errors.New("discord asked to reconnect")

// errZombie ends a connection whose last heartbeat went unacknowledged.
var errZombie = errors.New("no heartbeat ACK: the connection is a zombie")

// invalidSession ends a connection on an INVALID_SESSION.
type invalidSession struct{ resumable bool }

func (e invalidSession) Error() string {
	return fmt.Sprintf("invalid session (resumable: %t)", e.resumable)
}

// closeCodeError returns the error that ends the adapter for a close code no
// reconnection mends, or nil.
func closeCodeError(err error) error {
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		return nil
	}
	switch ce.Code {
	case 4004:
		return errors.New("discord: the gateway rejected the bot token (4004 authentication failed): copy it again from the Developer Portal → Bot → Reset Token")
	case 4014:
		return errors.New("discord: disallowed intents (4014): enable the Message Content intent in the Developer Portal → Bot → Privileged Gateway Intents")
	case 4010, 4011:
		return fmt.Errorf("discord: invalid shard configuration (%d %s): check discord.shard_id and discord.shard_count", ce.Code, ce.Text)
	case 4012:
		return errors.New("discord: invalid API version (4012): discord.api_url must name a version the gateway serves, like https://discord.com/api/v10/")
	case 4013:
		return fmt.Errorf("discord: the gateway refused the bot's intents (4013 %s)", ce.Text)
	}
	return nil
}

// sessionEnded reports whether a close code means the session cannot be
// resumed (4007 invalid sequence, 4009 session timed out).
func sessionEnded(err error) bool {
	return websocket.IsCloseError(err, 4007, 4009)
}

// runGateway keeps a gateway session until ctx ends, resuming it across
// connections where Discord allows. It returns an error only for what no
// reconnection mends: a rejected token, disallowed intents, a bad shard.
func (a *Adapter) runGateway(ctx context.Context, gatewayURL func(context.Context) (string, error)) error {
	var sess gatewaySession
	backoff := time.Second
	for {
		err := a.gatewayConn(ctx, gatewayURL, &sess)
		if a.ready.Swap(false) {
			backoff = time.Second // the connection served: it may come back at once
		}
		if ctx.Err() != nil {
			return nil
		}
		if fatal := closeCodeError(err); fatal != nil {
			return fatal
		}
		var inv invalidSession
		switch {
		case errors.As(err, &inv):
			if !inv.resumable {
				sess.reset()
			}
			// Discord asks for a random wait of 1–5 s before the next try.
			wait := a.opts.invalidSessionWait
			wait += rand.N(4*wait + 1)
			a.log.Info("discord: the gateway invalidated the session", "resumable", inv.resumable, "retry_in", wait.Round(time.Millisecond))
			if !sleepCtx(ctx, wait) {
				return nil
			}
			continue
		case errors.Is(err, errReconnect):
			a.log.Info("discord: the gateway asked to reconnect")
			continue
		case sessionEnded(err):
			sess.reset()
		}
		a.log.Warn("discord: gateway connection lost; reconnecting", "err", err, "in", backoff, "resume", sess.id != "")
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, gatewayMaxBackoff)
	}
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// gatewayConn opens one connection, identifies or resumes, and serves it
// until it ends; the error says how.
func (a *Adapter) gatewayConn(ctx context.Context, gatewayURL func(context.Context) (string, error), sess *gatewaySession) error {
	addr := sess.resumeURL
	resuming := sess.id != "" && addr != ""
	if !resuming {
		var err error
		if addr, err = gatewayURL(ctx); err != nil {
			return err
		}
	}
	addr, err := withGatewayQuery(addr, a.apiVersion())
	var ws *websocket.Conn
	if err == nil {
		dialer := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: gatewayHelloTimeout}
		var resp *http.Response
		ws, resp, err = dialer.DialContext(ctx, addr, nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
	}
	if err != nil {
		metrics.PlatformCall("discord", "gateway.connect", "error")
		if resuming {
			// The node READY named is gone: resume on the main gateway.
			sess.resumeURL = ""
		}
		return fmt.Errorf("dial the gateway: %w", err)
	}
	metrics.PlatformCall("discord", "gateway.connect", "ok")
	c := &gatewayWriter{ws: ws}
	defer ws.Close()
	// At shutdown, close with 1000 so Discord ends the session (the bot
	// shows offline at once); the read below then fails.
	defer context.AfterFunc(ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = ws.Close()
	})()
	ws.SetReadLimit(gatewayReadLimit)

	_ = ws.SetReadDeadline(time.Now().Add(gatewayHelloTimeout))
	var hello gatewayPayload
	if err := ws.ReadJSON(&hello); err != nil {
		return fmt.Errorf("read HELLO: %w", err)
	}
	var h struct {
		Interval int64 `json:"heartbeat_interval"`
	}
	if hello.Op != opHello || json.Unmarshal(hello.D, &h) != nil || h.Interval <= 0 {
		return fmt.Errorf("expected HELLO, got op %d", hello.Op)
	}
	_ = ws.SetReadDeadline(time.Time{})

	beats := &heartbeater{c: c, sess: sess, interval: time.Duration(h.Interval) * time.Millisecond, stop: make(chan struct{})}
	beats.acked.Store(true)
	go beats.run()
	defer close(beats.stop)

	if sess.id != "" {
		err = c.send(opResume, map[string]any{"token": a.gatewayToken(), "session_id": sess.id, "seq": sess.seq.Load()})
	} else {
		err = c.send(opIdentify, a.identify())
	}
	if err != nil {
		return err
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			if beats.zombie.Load() {
				return errZombie
			}
			return err
		}
		var p gatewayPayload
		if err := json.Unmarshal(data, &p); err != nil {
			a.log.Warn("discord: unreadable gateway frame", "err", err)
			continue
		}
		switch p.Op {
		case opDispatch:
			if p.S > 0 {
				sess.seq.Store(p.S)
			}
			a.onDispatch(p.T, p.D, sess)
		case opHeartbeat:
			if err := beats.beat(false); err != nil {
				return err
			}
		case opHeartbeatAck:
			beats.acked.Store(true)
		case opReconnect:
			return errReconnect
		case opInvalidSession:
			var resumable bool
			_ = json.Unmarshal(p.D, &resumable)
			return invalidSession{resumable}
		}
	}
}

// withGatewayQuery adds the API version and JSON encoding to a gateway
// address, keeping any other query it has.
func withGatewayQuery(addr, version string) (string, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "ws" && u.Scheme != "wss") {
		return "", fmt.Errorf("discord: gateway address %q is not a ws(s) URL", addr)
	}
	q := u.Query()
	q.Set("v", version)
	q.Set("encoding", "json")
	u.RawQuery = q.Encode()
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}

// apiVersion is the version in discord.api_url (…/api/v10/), 10 if none.
func (a *Adapter) apiVersion() string {
	if m := apiVersion.FindStringSubmatch(strings.TrimRight(a.cfg.APIURL, "/") + "/"); m != nil {
		return m[1]
	}
	return "10"
}

// gatewayToken is the bot token as IDENTIFY and RESUME carry it.
func (a *Adapter) gatewayToken() string { return strings.TrimPrefix(a.token, "Bot ") }

// identify is IDENTIFY's data.
func (a *Adapter) identify() map[string]any {
	return map[string]any{
		"token":      a.gatewayToken(),
		"intents":    Intents,
		"shard":      [2]int{a.cfg.ShardID, a.cfg.ShardCount},
		"properties": map[string]string{"os": runtime.GOOS, "browser": "arkbot", "device": "arkbot"},
		"presence":   map[string]any{"status": "online", "since": nil, "activities": []any{}, "afk": false},
	}
}

// gatewayWriter serializes the frames written to one connection.
type gatewayWriter struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (c *gatewayWriter) send(op int, d any) error {
	b, err := json.Marshal(map[string]any{"op": op, "d": d})
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(gatewayWriteTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// heartbeater sends a connection's heartbeats. A heartbeat due while the
// last one is unacknowledged marks the connection a zombie and closes it,
// keeping the session for a RESUME.
type heartbeater struct {
	c        *gatewayWriter
	sess     *gatewaySession
	interval time.Duration
	stop     chan struct{}
	acked    atomic.Bool
	zombie   atomic.Bool
}

func (h *heartbeater) run() {
	// The first beat after interval × jitter, as Discord asks, so a fleet
	// reconnecting at once does not beat in step.
	t := time.NewTimer(time.Duration(rand.Float64() * float64(h.interval)))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if !h.acked.Load() {
			h.zombie.Store(true)
			// Any code but 1000/1001 keeps the session resumable.
			_ = h.c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "zombie"), time.Now().Add(time.Second))
			_ = h.c.ws.Close()
			return
		}
		if h.beat(true) != nil {
			_ = h.c.ws.Close()
			return
		}
		t.Reset(h.interval)
	}
}

// beat sends one heartbeat with the last sequence number seen. Only the
// interval's beats await their ACK: one Discord asked for, answered just
// before an interval's beat, must not make that beat's check fail.
func (h *heartbeater) beat(awaitAck bool) error {
	if awaitAck {
		h.acked.Store(false)
	}
	var seq any
	if s := h.sess.seq.Load(); s > 0 {
		seq = s
	}
	return h.c.send(opHeartbeat, seq)
}

// readyData is READY's data with the field discordgo v0.29 lacks.
type readyData struct {
	discordgo.Ready
	ResumeGatewayURL string `json:"resume_gateway_url"`
}

// onDispatch decodes the events the adapter uses and drops the rest, the
// bot's own MESSAGE_UPDATEs among them, undecoded. Messages and
// interactions are handled on goroutines of their own.
func (a *Adapter) onDispatch(event string, data json.RawMessage, sess *gatewaySession) {
	decode := func(v any) bool {
		if err := json.Unmarshal(data, v); err != nil {
			a.log.Warn("discord: unreadable gateway event", "event", event, "err", err)
			return false
		}
		return true
	}
	switch event {
	case "MESSAGE_CREATE":
		var m discordgo.Message
		if decode(&m) {
			go a.track(func() { a.onMessage(&m) })
		}
	case "INTERACTION_CREATE":
		var in discordgo.Interaction
		if decode(&in) {
			go a.track(func() { a.onInteraction(&in, data) })
		}
	case "READY":
		var r readyData
		if decode(&r) {
			sess.id, sess.resumeURL = r.SessionID, r.ResumeGatewayURL
			a.onReady(&r.Ready)
		}
	case "RESUMED":
		a.ready.Store(true)
		a.log.Info("discord: gateway session resumed")
	case "GUILD_CREATE":
		var g discordgo.Guild
		if decode(&g) {
			a.cacheGuild(&g)
		}
	case "CHANNEL_CREATE", "THREAD_CREATE":
		var c discordgo.Channel
		if decode(&c) {
			a.cacheChannel(&c)
		}
	case "THREAD_LIST_SYNC":
		var t discordgo.ThreadListSync
		if decode(&t) {
			for _, c := range t.Threads {
				a.cacheChannel(c)
			}
		}
	}
}

// onReady takes the bot's identity and guilds from READY.
func (a *Adapter) onReady(r *discordgo.Ready) {
	a.idMu.Lock()
	if r.User != nil {
		a.botID = r.User.ID
	}
	if r.Application != nil && r.Application.ID != "" {
		a.appID = r.Application.ID
	}
	a.idMu.Unlock()
	for _, g := range r.Guilds {
		a.cacheGuild(g)
	}
	a.ready.Store(true)
	a.readyOnce.Do(func() { close(a.readyCh) })
	a.log.Info("connected to the Discord gateway", "guilds", len(r.Guilds))
}

package discord

import (
	"context"
	"crypto/sha256"
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
// streamed answer (docs/decisions.md). discordgo v0.29 also
// resumes on the first gateway address instead of READY's
// resume_gateway_url, and answers every INVALID_SESSION with an immediate
// IDENTIFY, resumable or not. This client reads each frame once into a
// payload whose data stays raw, decodes only the events the adapter uses
// (discordgo's types), and follows the connection lifecycle Discord
// documents: heartbeats with zombie detection, RESUME on the resume
// address, RECONNECT, INVALID_SESSION with its 1–5 s wait, close codes
// that say whether to resume, identify anew, or give up, and the session
// start limit every IDENTIFY spends (see startLimit). discordgo still makes
// every REST call.

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
	// identifyInterval is Discord's window for IDENTIFYs: one per bucket
	// (shard_id % max_concurrency) in each.
	identifyInterval = 5 * time.Second
	// startLimitMaxAge is how long a fetched session_start_limit, counted
	// down by this process's IDENTIFYs, is trusted: other processes of the
	// bot spend session starts too.
	startLimitMaxAge = 10 * time.Minute
	// startsLow is the number of session starts left under which each
	// IDENTIFY asks GET /gateway/bot anew, and a warning is logged.
	startsLow = 10
	// minLimitWait is the least wait when no session start is left, however
	// soon Discord says the limit resets.
	minLimitWait = time.Second
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
func (a *Adapter) runGateway(ctx context.Context) error {
	var sess gatewaySession
	backoff := time.Second
	for {
		err := a.gatewayConn(ctx, &sess)
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
// until it ends; the error says how. A new session waits for a session
// start first (see startSession).
func (a *Adapter) gatewayConn(ctx context.Context, sess *gatewaySession) error {
	addr := sess.resumeURL
	onResumeNode := sess.id != "" && addr != ""
	var identified func()
	switch {
	case sess.id == "":
		var err error
		if addr, identified, err = a.startSession(ctx); err != nil {
			return err
		}
		defer identified()
	case !onResumeNode:
		var err error
		if addr, err = a.gatewayAddr(ctx); err != nil {
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
		if onResumeNode {
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

	if identified == nil {
		err = c.send(opResume, map[string]any{"token": a.gatewayToken(), "session_id": sess.id, "seq": sess.seq.Load()})
	} else {
		err = c.send(opIdentify, a.identify())
		identified()
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

// Session starts. Discord counts a bot's IDENTIFYs: GET /gateway/bot's
// session_start_limit says how many are left today (remaining of total)
// and when the count resets (reset_after), and max_concurrency how many
// may be sent per 5 s: one per bucket shard_id % max_concurrency. A bot
// that spends them all has its token reset, so a loop of invalid sessions
// must wait rather than identify. RESUMEs are not counted.

// startLimit is one bot's session start limit as GET /gateway/bot last
// gave it, counted down by the IDENTIFYs made since.
type startLimit struct {
	mu             sync.Mutex
	fetched        time.Time // zero: never
	url            string    // the gateway address GET /gateway/bot gave
	total          int       // 0: the answer had no limit
	remaining      int
	resetAt        time.Time
	maxConcurrency int
	buckets        map[int]*identifyBucket
}

// identifyBucket spaces the IDENTIFYs of the shards of one bucket.
type identifyBucket struct {
	lock chan struct{} // held from the wait for next until the IDENTIFY is sent
	next time.Time     // the earliest next IDENTIFY; guarded by lock
}

// startLimits holds one startLimit per bot (API base and token) for the
// process: Discord counts session starts and IDENTIFY buckets per bot, so
// the adapters of several shards in one process share them.
var startLimits = struct {
	sync.Mutex
	m map[[sha256.Size]byte]*startLimit
}{m: map[[sha256.Size]byte]*startLimit{}}

// startLimit returns the adapter's bot's startLimit.
func (a *Adapter) startLimit() *startLimit {
	key := sha256.Sum256([]byte(strings.TrimRight(a.cfg.APIURL, "/") + "\x00" + a.token))
	startLimits.Lock()
	defer startLimits.Unlock()
	l := startLimits.m[key]
	if l == nil {
		l = &startLimit{buckets: map[int]*identifyBucket{}}
		startLimits.m[key] = l
	}
	return l
}

// identifyInterval is the least time between two IDENTIFYs of a bucket.
func (a *Adapter) identifyInterval() time.Duration {
	if a.opts.identifyInterval > 0 {
		return a.opts.identifyInterval
	}
	return identifyInterval
}

// fetchStartLimit asks GET /gateway/bot for the gateway address and the
// session start limit.
func (a *Adapter) fetchStartLimit(ctx context.Context, l *startLimit) error {
	gb, err := a.sess.GatewayBot(discordgo.WithContext(ctx))
	a.observe("gateway.bot", err)
	if err != nil {
		return fmt.Errorf("GET /gateway/bot: %w", err)
	}
	if gb.Shards > a.cfg.ShardCount {
		a.log.Warn("Discord recommends more shards than configured", "recommended", gb.Shards, "shard_count", a.cfg.ShardCount)
	}
	ssl := gb.SessionStartLimit
	now := time.Now()
	l.mu.Lock()
	l.fetched, l.url = now, gb.URL
	l.total, l.remaining, l.maxConcurrency = ssl.Total, ssl.Remaining, max(ssl.MaxConcurrency, 1)
	resetAt := now.Add(time.Duration(ssl.ResetAfter) * time.Millisecond)
	if ssl.Total == 0 {
		resetAt = now.Add(startLimitMaxAge) // no limit given: ask again as if it were stale
	}
	l.resetAt = resetAt
	l.mu.Unlock()
	if ssl.Total > 0 && ssl.Remaining < startsLow {
		a.log.Warn("discord: few gateway session starts left", "remaining", ssl.Remaining, "total", ssl.Total,
			"reset_at", resetAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// gatewayAddr is the gateway's address: discord.gateway_url, else what GET
// /gateway/bot said, asked if not known yet.
func (a *Adapter) gatewayAddr(ctx context.Context) (string, error) {
	if a.cfg.GatewayURL != "" {
		return a.cfg.GatewayURL, nil
	}
	l := a.startLimit()
	l.mu.Lock()
	addr := l.url
	l.mu.Unlock()
	if addr != "" {
		return addr, nil
	}
	if err := a.fetchStartLimit(ctx, l); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.url, nil
}

// startSession waits until a new session may start: until a session start
// is left (spending one), then for the IDENTIFY's turn in its bucket. It
// returns the gateway address and identified, to call once the IDENTIFY is
// sent (or will not be), which starts the bucket's next interval.
func (a *Adapter) startSession(ctx context.Context) (addr string, identified func(), err error) {
	l := a.startLimit()
	if err := a.spendStart(ctx, l); err != nil {
		return "", nil, err
	}
	if addr, err = a.gatewayAddr(ctx); err != nil {
		return "", nil, err
	}
	l.mu.Lock()
	n := a.cfg.ShardID % max(l.maxConcurrency, 1)
	b := l.buckets[n]
	if b == nil {
		b = &identifyBucket{lock: make(chan struct{}, 1)}
		l.buckets[n] = b
	}
	l.mu.Unlock()
	select {
	case b.lock <- struct{}{}:
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	if wait := time.Until(b.next); wait > 0 {
		a.log.Debug("discord: waiting for the IDENTIFY's turn", "bucket", n, "wait", wait.Round(time.Millisecond))
		if !sleepCtx(ctx, wait) {
			<-b.lock
			return "", nil, ctx.Err()
		}
	}
	interval := a.identifyInterval()
	var once sync.Once
	return addr, func() {
		once.Do(func() {
			b.next = time.Now().Add(interval)
			<-b.lock
		})
	}, nil
}

// spendStart takes one session start, waiting for Discord's limit to reset
// when none is left. It asks GET /gateway/bot again when its count is old,
// low, or past its reset; if that fails, it goes on counting while the
// count is still valid.
func (a *Adapter) spendStart(ctx context.Context, l *startLimit) error {
	for {
		now := time.Now()
		l.mu.Lock()
		fresh := !l.fetched.IsZero() && now.Sub(l.fetched) < startLimitMaxAge && now.Before(l.resetAt) &&
			(l.total == 0 || l.remaining > startsLow)
		l.mu.Unlock()
		if !fresh {
			if err := a.fetchStartLimit(ctx, l); err != nil {
				l.mu.Lock()
				valid := !l.fetched.IsZero() && time.Now().Before(l.resetAt)
				l.mu.Unlock()
				if !valid {
					return err
				}
				a.log.Debug("discord: counting session starts from the last GET /gateway/bot", "err", err)
			}
		}
		l.mu.Lock()
		if l.total == 0 || l.remaining > 0 {
			if l.total > 0 {
				l.remaining--
			}
			l.mu.Unlock()
			return nil
		}
		until := l.resetAt
		if soonest := time.Now().Add(minLimitWait); until.Before(soonest) {
			until = soonest
		}
		total := l.total
		l.mu.Unlock()
		wait := time.Until(until)
		a.log.Warn("discord: no gateway session starts left; waiting for the limit to reset before identifying",
			"total", total, "wait", wait.Round(time.Millisecond), "until", until.UTC().Format(time.RFC3339Nano))
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
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

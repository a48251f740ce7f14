// Package slacktest is an in-process Slack for tests and load tests: a
// loopback HTTP server speaking the Web API's JSON ({"ok":true,…} or
// {"ok":false,"error":"…"}) to form- or JSON-encoded requests as slack-go
// sends them, a Socket Mode websocket, private file downloads, response_url
// endpoints, and an emulation of Slack's per-workspace rate-limit tiers.
//
// It keeps every message's current text per channel and ts, and records every
// call, so a test can assert what a user would finally see and how many API
// calls it took. It has no dependency on package testing.
//
//	s := slacktest.New(slacktest.Options{})
//	defer s.Close()
//	// point the adapter at s.APIURL() with s.BotToken() / s.AppToken()
//	id, _ := s.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> hi", s.NextTS(), ""))
package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/arkbot/arkbot/internal/testing/arrival"
)

// Defaults used when Options leave a field empty.
const (
	DefaultTeamID    = "T0001"
	DefaultTeamName  = "fake"
	DefaultBotToken  = "xoxb-fake-bot-token"
	DefaultAppToken  = "xapp-fake-app-token"
	DefaultBotUserID = "UBOT"
	DefaultBotID     = "BBOT"
	DefaultAppID     = "AFAKE"
)

// Slack's message limits as the fake enforces them.
const (
	MaxTextChars          = 40000 // chat.postMessage text: longer is truncated
	MaxUpdateTextChars    = 4000  // chat.update text: longer fails with msg_too_long
	MaxMarkdownChars      = 12000 // markdown_text per call, markdown blocks per message
	maxRequestBody        = 4 << 20
	maxRecordedCalls      = 200000
	callChunk             = 1024
	defaultPingInterval   = 5 * time.Second
	websocketWriteTimeout = 5 * time.Second
)

// Options configures a Server.
type Options struct {
	TeamID    string // the first workspace (DefaultTeamID)
	TeamName  string
	BotToken  string // xoxb-… for TeamID
	AppToken  string // xapp-… for apps.connections.open
	BotUserID string // the bot's user ID (DefaultBotUserID)
	BotID     string // the bot's bot ID (DefaultBotID)
	// PingInterval is how often the Socket Mode endpoint pings each client
	// (slack-go reconnects after 30 s without a ping). Default 5 s.
	PingInterval time.Duration
	// Logf, if set, receives one line per notable event (not per call).
	Logf func(format string, args ...any)
	// EchoOwn sends the bot's own messages back to it over Socket Mode, as
	// Slack does to an app subscribed to message.* events: a message event
	// (with bot_id) for each new one, a message_changed event for each
	// update, stream append and stream stop, in order, from a queue apart
	// from the calls that made them. Off by default; the load test turns it on so
	// the bot pays for them as it would on Slack.
	EchoOwn bool
	// Redeliver, when set, has SendEvent send an events_api envelope
	// again when it is not acknowledged within this long (or found no
	// connection open), as Slack does: up to MaxRedeliveries times, with
	// the same event_id, a new envelope_id, retry_attempt counting and
	// retry_reason "timeout". Redelivered counts them.
	Redeliver time.Duration
	// OnCall, if set, is called with every Web API call once it has been
	// answered (its Result set), outside the server's lock, on the request's
	// goroutine: a load test's way to timestamp what the bot did.
	OnCall func(Call)
	// Scopes are the bot token's OAuth scopes, sent as Slack does in the
	// X-OAuth-Scopes header of every answer to a bot-token call
	// (default DefaultScopes).
	Scopes []string
}

// DefaultScopes are the bot scopes slack-app-manifest.yaml asks for.
var DefaultScopes = []string{"app_mentions:read", "chat:write", "channels:history", "groups:history", "im:history",
	"mpim:history", "commands", "users:read", "files:read", "files:write", "assistant:write"}

// Server is a fake Slack. Its methods are safe for concurrent use.
type Server struct {
	opts   Options
	scopes string // X-OAuth-Scopes
	hs     *httptest.Server
	up     websocket.Upgrader
	// echoes queues the bot's own messages for one goroutine to send
	// (Options.EchoOwn), as Slack's event system does, apart from the API
	// call: a handler that sent them itself would hold its keep-alive
	// connection, and the bot's next call on it, while a busy bot reads.
	echoes chan echo

	tsCounter  atomic.Int64
	envCounter atomic.Int64
	idCounter  atomic.Int64

	mu          sync.Mutex
	teams       map[string]string // bot token → team ID
	users       map[string]User
	files       map[string]*storedFile
	uploads     map[string]*pendingUpload // files.getUploadURLExternal's, by file ID
	shared      []Upload
	messages    map[string]map[string]*Message // channel → ts → message
	order       map[string][]string            // channel → ts in posting order
	ephemerals  []Ephemeral
	statuses    []Status
	reactions   []Reaction
	calls       [][]Call // in chunks of callChunk: recording never copies the calls before
	callCount   map[string]int
	limited     int
	failures    map[string][]Failure
	nativeOff   bool
	agent       agentState
	limits      *limiter
	conns       map[*wsConn]bool
	gaps        int // times the last Socket Mode connection closed
	acks        map[string]Ack
	ackWaiters  map[string][]chan struct{}
	connWaiters []chan struct{}
	closed      bool
	redelivered atomic.Int64

	done chan struct{}
	wg   sync.WaitGroup
}

// User is a workspace member as users.info returns it.
type User struct {
	ID          string
	TeamID      string
	Name        string // handle
	RealName    string
	DisplayName string
	IsBot       bool
	IsAdmin     bool
}

// Message is a message the bot posted, as it is visible now.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string // "" for a top-level message
	User     string // the bot's user ID
	BotID    string
	// Text is the text parameter (mrkdwn); for a message with blocks it is
	// only the notification fallback.
	Text string
	// Markdown is the standard Markdown shown: markdown_text, or the text of
	// the message's markdown blocks, joined.
	Markdown string
	// Blocks is the raw blocks JSON of the last post or update.
	Blocks    string
	Streaming bool // started with chat.startStream and not stopped yet
	Streamed  bool // was created with chat.startStream
	// Tasks are the task cards the stream's task_update chunks show, in
	// the order first sent; PlanTitle is the last plan_update's title and
	// TaskDisplayMode chat.startStream's task_display_mode.
	Tasks           []Task
	PlanTitle       string
	TaskDisplayMode string
	// stoppedBySlack: Slack stopped the stream (StopSession); appends fail.
	stoppedBySlack bool
	Edits          int // chat.update and chat.appendStream calls that changed it
	Deleted        bool
	Created        time.Time
	Updated        time.Time
}

// Button is a button in a message's actions blocks.
type Button struct {
	BlockID, ActionID, Value, Text string
}

// Buttons lists the buttons in the message's actions blocks.
func (m Message) Buttons() []Button {
	var blocks []struct {
		Type     string `json:"type"`
		BlockID  string `json:"block_id"`
		Elements []struct {
			Type     string `json:"type"`
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
			Text     struct {
				Text string `json:"text"`
			} `json:"text"`
		} `json:"elements"`
	}
	if m.Blocks == "" || json.Unmarshal([]byte(m.Blocks), &blocks) != nil {
		return nil
	}
	var out []Button
	for _, b := range blocks {
		if b.Type != "actions" {
			continue
		}
		for _, e := range b.Elements {
			if e.Type == "button" {
				out = append(out, Button{BlockID: b.BlockID, ActionID: e.ActionID, Value: e.Value, Text: e.Text.Text})
			}
		}
	}
	return out
}

// Visible is what a user reads: Markdown if the message has any, else Text.
func (m Message) Visible() string {
	if m.Markdown != "" {
		return m.Markdown
	}
	return m.Text
}

// Ephemeral is a message only one user sees: chat.postEphemeral or a
// response_url reply.
type Ephemeral struct {
	Via          string // "chat.postEphemeral" or "response_url"
	Channel      string
	User         string
	ThreadTS     string
	Text         string
	ResponseType string // response_url only: ephemeral or in_channel
	Blocks       string
	ResponseID   string // response_url only: the id in its path
	Time         time.Time
}

// Status is one assistant.threads.setStatus call.
type Status struct {
	Channel, ThreadTS, Status string
	LoadingMessages           []string
	Time                      time.Time
}

// Reaction is one reactions.add call.
type Reaction struct {
	Channel, TS, Name string
}

// Call is one recorded request.
type Call struct {
	Method string
	Team   string
	Params url.Values  // token removed
	Header http.Header // the request's headers
	// Time is when the call reached the server's socket (see arrival),
	// Handled when its handler began: later by this process's wait for a CPU.
	Time, Handled time.Time
	// Result: "ok", "error" (ok:false), "ratelimited" (HTTP 429) or "http_error".
	Result string
	Error  string // the error code for ok:false
}

// Failure is an injected failure for the next calls of a method. A zero
// Failure lets its call through, to fail a later one.
type Failure struct {
	// RetryAfter, when > 0, answers HTTP 429 with this Retry-After (seconds).
	RetryAfter int
	// Error, when set (and RetryAfter is 0), answers ok:false with this code.
	Error string
	// Status, when set (and the others are not), answers this HTTP status.
	Status int
}

// Ack is a Socket Mode acknowledgement received from a client.
type Ack struct {
	EnvelopeID string
	Payload    json.RawMessage
	Time       time.Time
}

type storedFile struct {
	id, name, mimetype, filetype string
	data                         []byte
}

// New starts a fake Slack on a loopback port.
func New(opts Options) *Server {
	if opts.TeamID == "" {
		opts.TeamID = DefaultTeamID
	}
	if opts.TeamName == "" {
		opts.TeamName = DefaultTeamName
	}
	if opts.BotToken == "" {
		opts.BotToken = DefaultBotToken
	}
	if opts.AppToken == "" {
		opts.AppToken = DefaultAppToken
	}
	if opts.BotUserID == "" {
		opts.BotUserID = DefaultBotUserID
	}
	if opts.BotID == "" {
		opts.BotID = DefaultBotID
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = defaultPingInterval
	}
	if opts.Scopes == nil {
		opts.Scopes = DefaultScopes
	}
	s := &Server{
		opts:   opts,
		scopes: strings.Join(opts.Scopes, ","),
		// slack-go sends Origin: https://api.slack.com, as Slack expects.
		up:         websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		teams:      map[string]string{opts.BotToken: opts.TeamID},
		users:      map[string]User{},
		files:      map[string]*storedFile{},
		messages:   map[string]map[string]*Message{},
		order:      map[string][]string{},
		callCount:  map[string]int{},
		failures:   map[string][]Failure{},
		conns:      map[*wsConn]bool{},
		acks:       map[string]Ack{},
		ackWaiters: map[string][]chan struct{}{},
		done:       make(chan struct{}),
		echoes:     make(chan echo, 1<<14),
	}
	s.tsCounter.Store(time.Now().UnixMicro())
	s.users[opts.BotUserID] = User{ID: opts.BotUserID, TeamID: opts.TeamID, Name: "arkbot", RealName: "Ark Bot", DisplayName: "Ark Bot", IsBot: true}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/files/", s.serveFile)
	mux.HandleFunc("/upload/", s.serveUpload)
	mux.HandleFunc("/response/", s.serveResponseURL)
	mux.HandleFunc("/socket", s.serveSocket)
	l, err := arrival.Listen("127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("slacktest: listen on loopback: %v", err))
	}
	s.hs = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnContext: arrival.ConnContext}}
	s.hs.Start()
	if opts.EchoOwn {
		go s.sendEchoes()
	}
	return s
}

// URL is the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.hs.URL }

// APIURL is the Web API base to give slack.OptionAPIURL (ends in "/").
func (s *Server) APIURL() string { return s.hs.URL + "/api/" }

// TeamID is the first workspace's ID.
func (s *Server) TeamID() string { return s.opts.TeamID }

// BotToken is the first workspace's bot token.
func (s *Server) BotToken() string { return s.opts.BotToken }

// AppToken is the app-level token apps.connections.open accepts.
func (s *Server) AppToken() string { return s.opts.AppToken }

// BotUserID is the bot's user ID, as auth.test reports it.
func (s *Server) BotUserID() string { return s.opts.BotUserID }

// BotID is the bot's bot ID, set on every message the bot posts.
func (s *Server) BotID() string { return s.opts.BotID }

// Close stops the server, closing Socket Mode connections. It never hangs
// on a client: connections are closed, not drained.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	s.hs.CloseClientConnections()
	closed := make(chan struct{})
	go func() {
		s.hs.Close()
		s.wg.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		s.logf("slacktest: Close gave up waiting for handlers after 5s")
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// AddWorkspace registers another workspace with its own bot token; its
// calls get their own rate budgets.
func (s *Server) AddWorkspace(teamID, botToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.teams[botToken] = teamID
}

// AddUser registers a user for users.info.
func (s *Server) AddUser(u User) {
	if u.TeamID == "" {
		u.TeamID = s.opts.TeamID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// AddFile stores a file and returns its object as it appears in a message
// event's "files" list (id, name, mimetype, filetype, size, url_private…).
// Downloading url_private needs the bot token as a Bearer header.
func (s *Server) AddFile(name, mimetype string, data []byte) map[string]any {
	id := fmt.Sprintf("F%06d", s.idCounter.Add(1))
	ft := strings.TrimPrefix(extension(name), ".")
	if ft == "" {
		ft = "binary"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[id] = &storedFile{id: id, name: name, mimetype: mimetype, filetype: ft, data: bytes.Clone(data)}
	return s.fileObjectLocked(id)
}

// fileObjectLocked returns a file's event object; s.mu is held.
func (s *Server) fileObjectLocked(id string) map[string]any {
	f := s.files[id]
	if f == nil {
		return nil
	}
	u := s.hs.URL + "/files/" + f.id + "/" + url.PathEscape(f.name)
	return map[string]any{
		"id": f.id, "name": f.name, "title": f.name, "mimetype": f.mimetype, "filetype": f.filetype,
		"size": len(f.data), "mode": "hosted", "is_external": false,
		"url_private": u, "url_private_download": u + "?download=1",
	}
}

func extension(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return strings.ToLower(name[i:])
	}
	return ""
}

// SetNativeStreaming turns chat.startStream/appendStream/stopStream on (the
// default) or off; off, they answer ok:false "unknown_method" as on a
// workspace or plan without streaming.
func (s *Server) SetNativeStreaming(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nativeOff = !on
}

// FailNext makes the next calls of method fail, one Failure per call.
func (s *Server) FailNext(method string, failures ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[method] = append(s.failures[method], failures...)
}

// NextTS returns a fresh, increasing message timestamp ("1700000000.000123").
func (s *Server) NextTS() string {
	us := s.tsCounter.Add(1)
	var buf [32]byte
	b := append(strconv.AppendInt(buf[:0], us/1e6, 10), '.')
	return string(appendPadded(b, us%1e6, 6))
}

// appendPadded appends n (>= 0) in decimal, zero-padded to width digits,
// as fmt's %0*d does.
func appendPadded(b []byte, n int64, width int) []byte {
	var buf [20]byte
	d := strconv.AppendInt(buf[:0], n, 10)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// ---- inspection ----

// Calls returns the recorded calls, of the given methods only if any are named.
func (s *Server) Calls(methods ...string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, chunk := range s.calls {
		for _, c := range chunk {
			if len(methods) == 0 || contains(methods, c.Method) {
				out = append(out, c)
			}
		}
	}
	return out
}

// CallCount is how many calls of method arrived (whatever their result).
func (s *Server) CallCount(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callCount[method]
}

// RateLimited is how many calls were answered with HTTP 429.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limited
}

// Message returns the message at channel and ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[channel][ts]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// Messages returns the bot's messages in channel, in posting order, deleted ones left out.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, ts := range s.order[channel] {
		if m := s.messages[channel][ts]; !m.Deleted {
			out = append(out, *m)
		}
	}
	return out
}

// Replies returns the bot's messages in the thread threadTS of channel
// (threadTS "" means top-level messages), in posting order.
func (s *Server) Replies(channel, threadTS string) []Message {
	var out []Message
	for _, m := range s.Messages(channel) {
		if m.ThreadTS == threadTS {
			out = append(out, m)
		}
	}
	return out
}

// Ephemerals returns ephemeral messages and response_url replies, in order.
func (s *Server) Ephemerals() []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ephemeral(nil), s.ephemerals...)
}

// Statuses returns assistant.threads.setStatus calls, in order.
func (s *Server) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Status(nil), s.statuses...)
}

// Reactions returns reactions.add calls, in order.
func (s *Server) Reactions() []Reaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Reaction(nil), s.reactions...)
}

// WaitFor polls cond every few milliseconds until it holds or ctx ends.
func WaitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ---- Web API ----

type apiRequest struct {
	method string
	team   string
	token  string
	params url.Values
	echo   map[string]any // with Options.EchoOwn: the event the call gives rise to
}

func (r *apiRequest) get(key string) string { return r.params.Get(key) }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	req, err := readAPIRequest(r, method)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	arrived := arrival.Time(r) // before now: without kernel stamps it is now
	now := time.Now()
	s.mu.Lock()
	if method == "apps.connections.open" {
		if req.token == s.opts.AppToken {
			req.team = s.opts.TeamID
		}
	} else {
		req.team = s.teams[req.token]
	}
	s.callCount[method]++
	call := Call{Method: method, Team: req.team, Params: req.params, Header: r.Header, Time: arrived, Handled: now}
	if s.opts.OnCall != nil {
		defer func() { s.opts.OnCall(call) }() // after every path below has unlocked and answered
	}
	// Injected failures come first, then authentication, then rate limits.
	if fs := s.failures[method]; len(fs) > 0 {
		f := fs[0]
		s.failures[method] = fs[1:]
		switch {
		case f.RetryAfter > 0:
			s.limited++
			call.Result = "ratelimited"
			s.record(call)
			s.mu.Unlock()
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			http.Error(w, "ratelimited", http.StatusTooManyRequests)
			return
		case f.Error != "":
			call.Result, call.Error = "error", f.Error
			s.record(call)
			s.mu.Unlock()
			writeJSON(w, apiError(f.Error))
			return
		case f.Status != 0:
			call.Result = "http_error"
			s.record(call)
			s.mu.Unlock()
			http.Error(w, http.StatusText(f.Status), f.Status)
			return
		}
	}
	if req.team == "" {
		call.Result, call.Error = "error", "invalid_auth"
		if req.token == "" {
			call.Error = "not_authed"
		}
		s.record(call)
		s.mu.Unlock()
		writeJSON(w, apiError(call.Error))
		return
	}
	if s.limits != nil {
		if wait, ok := s.limits.take(req.team, method, req.get("channel"), arrived); !ok { // Slack counts a call when it arrives
			s.limited++
			call.Result = "ratelimited"
			s.record(call)
			s.mu.Unlock()
			secs := int((wait + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			http.Error(w, "ratelimited", http.StatusTooManyRequests)
			return
		}
	}
	resp := s.dispatch(&req, now)
	if req.team != "" && method != "apps.connections.open" {
		w.Header().Set("X-OAuth-Scopes", s.scopes)
	}
	call.Result = "ok"
	if e, failed := resp.(errorResponse); failed {
		call.Result, call.Error = "error", e.Error
	}
	s.record(call)
	s.mu.Unlock()
	writeJSON(w, resp)
	if req.echo != nil {
		select {
		case s.echoes <- echo{team: req.team, event: req.echo}:
		case <-s.done:
		}
	}
}

// echo is an event about the bot's own message, to send it.
type echo struct {
	team  string
	event map[string]any
}

// sendEchoes sends queued echoes in order until the server closes.
func (s *Server) sendEchoes() {
	for {
		select {
		case e := <-s.echoes:
			_, _ = s.SendEvent(EventOptions{TeamID: e.team}, e.event)
		case <-s.done:
			return
		}
	}
}

// echoOf is the event Slack sends the bot about its own message m, new or
// changed (Options.EchoOwn), or nil.
func (s *Server) echoOf(m *Message, changed bool) map[string]any {
	if !s.opts.EchoOwn {
		return nil
	}
	msg := map[string]any{"type": "message", "user": m.User, "bot_id": m.BotID, "app_id": DefaultAppID,
		"text": m.Text, "ts": m.TS}
	if m.Markdown != "" && m.Text == "" {
		msg["text"] = m.Markdown
	}
	if m.ThreadTS != "" {
		msg["thread_ts"] = m.ThreadTS
	}
	chType := "channel"
	if strings.HasPrefix(m.Channel, "D") {
		chType = "im"
	}
	if !changed {
		msg["channel"], msg["channel_type"], msg["event_ts"] = m.Channel, chType, m.TS
		return msg
	}
	ts := s.NextTS()
	return map[string]any{"type": "message", "subtype": "message_changed", "hidden": true, "channel": m.Channel,
		"channel_type": chType, "ts": ts, "event_ts": ts, "message": msg}
}

// record appends a call, up to maxRecordedCalls; s.mu is held.
func (s *Server) record(c Call) {
	n := len(s.calls)
	if n == 0 || len(s.calls[n-1]) == cap(s.calls[n-1]) {
		if n*callChunk >= maxRecordedCalls {
			return
		}
		s.calls = append(s.calls, make([]Call, 0, min(callChunk, maxRecordedCalls-n*callChunk)))
		n++
	}
	s.calls[n-1] = append(s.calls[n-1], c)
}

// readAPIRequest reads a call's parameters: the body's (form or JSON), and
// the query string's where the body has none.
func readAPIRequest(r *http.Request, method string) (apiRequest, error) {
	body, err := readBody(r)
	if err != nil {
		return apiRequest{}, err
	}
	req := apiRequest{method: method}
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/json"):
		req.params = url.Values{}
		if len(bytes.TrimSpace(body)) > 0 {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return apiRequest{}, fmt.Errorf("invalid JSON body: %v", err)
			}
			for k, v := range m {
				switch v := v.(type) {
				case string:
					req.params.Set(k, v)
				case nil:
				default:
					b, _ := json.Marshal(v)
					req.params.Set(k, string(b))
				}
			}
		}
	default:
		if req.params, err = url.ParseQuery(string(body)); err != nil {
			return apiRequest{}, fmt.Errorf("invalid form body: %v", err)
		}
	}
	if r.URL.RawQuery != "" {
		q, _ := url.ParseQuery(r.URL.RawQuery)
		for k, v := range q {
			if _, ok := req.params[k]; !ok {
				req.params[k] = v
			}
		}
	}
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		req.token = auth
	}
	if t := req.params.Get("token"); t != "" {
		req.token = t
	}
	req.params.Del("token")
	return req, nil
}

// readBody reads a request's body, up to maxRequestBody bytes, in one
// allocation when its length is known.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= maxRequestBody {
		b := make([]byte, n)
		_, err := io.ReadFull(r.Body, b)
		return b, err
	}
	return io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
}

// jsonContentType is every JSON answer's Content-Type, shared: net/http
// never modifies a header's values in place.
var jsonContentType = []string{"application/json; charset=utf-8"}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header()["Content-Type"] = jsonContentType
	_ = json.NewEncoder(w).Encode(v)
}

// Bodies of the frequent answers. Their fields are in the order of the
// keys' names, as encoding/json writes a map's, so that the bytes on the
// wire are those of the equivalent map[string]any.
type (
	// errorResponse is {"ok":false,"error":…}; dispatch returns it for every failure.
	errorResponse struct {
		Error string `json:"error"`
		OK    bool   `json:"ok"`
	}
	okResponse struct {
		OK bool `json:"ok"`
	}
	// messageResponse answers chat.delete and the streaming methods.
	messageResponse struct {
		Channel string `json:"channel"`
		OK      bool   `json:"ok"`
		TS      string `json:"ts"`
	}
	postMessageResponse struct {
		Channel string `json:"channel"`
		Message struct {
			Text     string `json:"text"`
			ThreadTS string `json:"thread_ts"`
			TS       string `json:"ts"`
		} `json:"message"`
		OK bool   `json:"ok"`
		TS string `json:"ts"`
	}
	updateResponse struct {
		Channel string `json:"channel"`
		OK      bool   `json:"ok"`
		Text    string `json:"text"`
		TS      string `json:"ts"`
	}
	ephemeralResponse struct {
		MessageTS string `json:"message_ts"`
		OK        bool   `json:"ok"`
	}
)

func apiError(code string) errorResponse { return errorResponse{Error: code} }

// dispatch runs one API method and returns the answer's body, an
// errorResponse if the call failed; s.mu is held.
func (s *Server) dispatch(req *apiRequest, now time.Time) any {
	switch req.method {
	case "auth.test":
		return map[string]any{"ok": true, "url": "https://fake.slack.com/", "team": s.opts.TeamName, "user": "arkbot",
			"team_id": req.team, "user_id": s.opts.BotUserID, "bot_id": s.opts.BotID}
	case "users.info":
		u, ok := s.users[req.get("user")]
		if !ok {
			return apiError("user_not_found")
		}
		return map[string]any{"ok": true, "user": map[string]any{
			"id": u.ID, "team_id": u.TeamID, "name": u.Name, "real_name": u.RealName, "is_bot": u.IsBot, "is_admin": u.IsAdmin,
			"profile": map[string]any{"real_name": u.RealName, "display_name": u.DisplayName},
		}}
	case "files.info":
		obj := s.fileObjectLocked(req.get("file"))
		if obj == nil {
			return apiError("file_not_found")
		}
		return map[string]any{"ok": true, "file": obj}
	case "chat.postMessage":
		return s.postMessage(req, now)
	case "chat.update":
		return s.update(req, now)
	case "chat.delete":
		m := s.find(req.get("channel"), req.get("ts"))
		if m == nil {
			return apiError("message_not_found")
		}
		m.Deleted, m.Updated = true, now
		return messageResponse{OK: true, Channel: m.Channel, TS: m.TS}
	case "chat.postEphemeral":
		if req.get("channel") == "" {
			return apiError("channel_not_found")
		}
		if req.get("user") == "" {
			return apiError("user_not_in_channel")
		}
		s.ephemerals = append(s.ephemerals, Ephemeral{Via: "chat.postEphemeral", Channel: req.get("channel"), User: req.get("user"),
			ThreadTS: req.get("thread_ts"), Text: req.get("text"), Blocks: req.get("blocks"), Time: now})
		return ephemeralResponse{OK: true, MessageTS: s.NextTS()}
	case "chat.startStream", "chat.appendStream", "chat.stopStream":
		if s.nativeOff {
			return apiError("unknown_method")
		}
		return s.stream(req, now)
	case "assistant.threads.setStatus":
		if req.get("channel_id") == "" {
			return apiError("channel_not_found")
		}
		if req.get("thread_ts") == "" {
			return apiError("invalid_thread_ts")
		}
		var lm []string
		if v := req.get("loading_messages"); v != "" {
			lm = strings.Split(v, ",")
		}
		s.statuses = append(s.statuses, Status{Channel: req.get("channel_id"), ThreadTS: req.get("thread_ts"), Status: req.get("status"), LoadingMessages: lm, Time: now})
		return okResponse{OK: true}
	case "agents.sessions.setStatus", "agents.sessions.rename", "assistant.threads.setSuggestedPrompts", "assistant.threads.setTitle":
		return s.agentCall(req, now)
	case "reactions.add":
		if req.get("channel") == "" || req.get("timestamp") == "" {
			return apiError("invalid_arguments")
		}
		s.reactions = append(s.reactions, Reaction{Channel: req.get("channel"), TS: req.get("timestamp"), Name: req.get("name")})
		return okResponse{OK: true}
	case "reactions.remove":
		return okResponse{OK: true}
	case "files.getUploadURLExternal":
		return s.uploadURL(req)
	case "files.completeUploadExternal":
		return s.completeUpload(req, now)
	case "apps.connections.open":
		if s.closed {
			return apiError("service_unavailable")
		}
		ws := "ws" + strings.TrimPrefix(s.hs.URL, "http") + "/socket?ticket=" + strconv.FormatInt(s.idCounter.Add(1), 10)
		return map[string]any{"ok": true, "url": ws}
	}
	return apiError("unknown_method")
}

func (s *Server) find(channel, ts string) *Message {
	return s.messages[channel][ts]
}

func (s *Server) store(m *Message) {
	if s.messages[m.Channel] == nil {
		s.messages[m.Channel] = map[string]*Message{}
	}
	s.messages[m.Channel][m.TS] = m
	s.order[m.Channel] = append(s.order[m.Channel], m.TS)
}

// content reads text, markdown_text and blocks of a post or update and
// checks Slack's rules for combining them.
func content(req *apiRequest) (text, markdown, blocks string, errCode string) {
	text, markdown, blocks = req.get("text"), req.get("markdown_text"), req.get("blocks")
	if markdown != "" && (text != "" || blocks != "") {
		return "", "", "", "invalid_arguments" // markdown_text can't be combined with text or blocks
	}
	if utf8.RuneCountInString(markdown) > MaxMarkdownChars {
		return "", "", "", "msg_too_long"
	}
	if blocks != "" {
		var bl []map[string]any
		if err := json.Unmarshal([]byte(blocks), &bl); err != nil {
			return "", "", "", "invalid_blocks_format"
		}
		var parts []string
		total := 0
		for _, b := range bl {
			if b["type"] == "markdown" {
				t, _ := b["text"].(string)
				total += utf8.RuneCountInString(t)
				parts = append(parts, t)
			}
		}
		if total > MaxMarkdownChars {
			return "", "", "", "invalid_blocks"
		}
		if len(parts) > 0 {
			markdown = strings.Join(parts, "\n")
		}
	}
	if text == "" && markdown == "" && blocks == "" {
		return "", "", "", "no_text"
	}
	return text, markdown, blocks, ""
}

func (s *Server) postMessage(req *apiRequest, now time.Time) any {
	ch := req.get("channel")
	if ch == "" {
		return apiError("channel_not_found")
	}
	text, markdown, blocks, code := content(req)
	if code != "" {
		return apiError(code)
	}
	if utf8.RuneCountInString(text) > MaxTextChars {
		text = string([]rune(text)[:MaxTextChars])
	}
	m := &Message{Channel: ch, TS: s.NextTS(), ThreadTS: req.get("thread_ts"), User: s.opts.BotUserID, BotID: s.opts.BotID,
		Text: text, Markdown: markdown, Blocks: blocks, Created: now, Updated: now}
	s.store(m)
	req.echo = s.echoOf(m, false)
	resp := postMessageResponse{OK: true, Channel: ch, TS: m.TS}
	resp.Message.Text, resp.Message.TS, resp.Message.ThreadTS = text, m.TS, m.ThreadTS
	return resp
}

func (s *Server) update(req *apiRequest, now time.Time) any {
	m := s.find(req.get("channel"), req.get("ts"))
	if m == nil || m.Deleted {
		return apiError("message_not_found")
	}
	if m.Streaming {
		return apiError("streaming_state_conflict")
	}
	text, markdown, blocks, code := content(req)
	if code != "" {
		return apiError(code)
	}
	if utf8.RuneCountInString(text) > MaxUpdateTextChars {
		return apiError("msg_too_long")
	}
	m.Text, m.Markdown, m.Blocks = text, markdown, blocks
	m.Edits++
	m.Updated = now
	req.echo = s.echoOf(m, true)
	return updateResponse{OK: true, Channel: m.Channel, TS: m.TS, Text: text}
}

func (s *Server) stream(req *apiRequest, now time.Time) any {
	ch := req.get("channel")
	if ch == "" {
		return apiError("channel_not_found")
	}
	md := req.get("markdown_text")
	chunks, code := parseChunks(req.get("chunks"))
	switch {
	case code != "":
		return apiError(code)
	case md != "" && chunks != nil:
		// The SDKs send text either way, never both; the fake refuses the
		// mix so that the bot never depends on an order Slack leaves open.
		return apiError("invalid_arguments")
	case chunks != nil:
		md = chunksMarkdown(chunks)
	}
	if utf8.RuneCountInString(md) > MaxMarkdownChars {
		return apiError("msg_too_long")
	}
	switch req.method {
	case "chat.startStream":
		thread := req.get("thread_ts")
		if thread == "" {
			return apiError("invalid_thread_ts") // streamed messages are replies to a user's request
		}
		if !strings.HasPrefix(ch, "D") && (req.get("recipient_user_id") == "" || req.get("recipient_team_id") == "") {
			return apiError("invalid_arguments") // recipients are required outside DMs
		}
		mode := req.get("task_display_mode")
		if mode != "" && mode != "timeline" && mode != "plan" {
			return apiError("invalid_arguments")
		}
		m := &Message{Channel: ch, TS: s.NextTS(), ThreadTS: thread, User: s.opts.BotUserID, BotID: s.opts.BotID,
			Markdown: md, Streaming: true, Streamed: true, TaskDisplayMode: mode, Created: now, Updated: now}
		if chunks != nil {
			m.Markdown = ""
			applyChunks(m, chunks)
		}
		s.store(m)
		req.echo = s.echoOf(m, false)
		return messageResponse{OK: true, Channel: ch, TS: m.TS}
	default:
		m := s.find(ch, req.get("ts"))
		if m == nil || m.Deleted {
			return apiError("message_not_found")
		}
		if !m.Streaming {
			return apiError("message_not_in_streaming_state")
		}
		if utf8.RuneCountInString(m.Markdown)+utf8.RuneCountInString(md) > MaxMarkdownChars {
			return apiError("msg_too_long")
		}
		if req.method == "chat.appendStream" && md == "" && chunks == nil {
			return apiError("no_text")
		}
		if req.method == "chat.appendStream" && m.stoppedBySlack {
			return apiError("message_not_in_streaming_state")
		}
		switch {
		case chunks != nil:
			applyChunks(m, chunks)
			m.Edits++
		case md != "":
			m.Markdown += md
			m.Edits++
		}
		if req.method == "chat.stopStream" {
			m.Streaming = false
			s.stopStreamSession(m, req.get("session_status"))
			if b := req.get("blocks"); b != "" {
				var bl []any
				if json.Unmarshal([]byte(b), &bl) != nil {
					return apiError("invalid_blocks_format")
				}
				m.Blocks = b // shown under the streamed text
			}
		}
		m.Updated = now
		req.echo = s.echoOf(m, true)
		return messageResponse{OK: true, Channel: ch, TS: m.TS}
	}
}

// ---- files and response_url ----

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	rest := strings.TrimPrefix(r.URL.Path, "/files/")
	id, _, _ := strings.Cut(rest, "/")
	auth, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	f := s.files[id]
	team := s.teams[auth]
	s.callCount["files.download"]++
	result := "ok"
	switch {
	case team == "":
		result = "error"
	case f == nil:
		result = "http_error"
	}
	s.record(Call{Method: "files.download", Team: team, Params: url.Values{"file": {id}}, Time: time.Now(), Result: result})
	s.mu.Unlock()
	if team == "" {
		// Slack redirects to a sign-in page; a plain 403 is clearer in tests.
		http.Error(w, "not authorized: a bot token is required", http.StatusForbidden)
		return
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.mimetype)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	_, _ = w.Write(f.data)
}

// ResponseURL returns a response_url for a slash command; replies posted
// to it are recorded as Ephemerals with Via "response_url".
func (s *Server) ResponseURL() string {
	return fmt.Sprintf("%s/response/R%06d", s.hs.URL, s.idCounter.Add(1))
}

func (s *Server) serveResponseURL(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := readBody(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg struct {
		Text         string          `json:"text"`
		ResponseType string          `json:"response_type"`
		ThreadTS     string          `json:"thread_ts"`
		Blocks       json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		http.Error(w, "invalid JSON", http.StatusBadRequest)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/response/")
	s.mu.Lock()
	s.callCount["response_url"]++
	s.record(Call{Method: "response_url", Params: url.Values{"id": {id}}, Time: time.Now(), Result: "ok"})
	blocks := ""
	if len(msg.Blocks) > 0 && string(msg.Blocks) != "null" {
		blocks = string(msg.Blocks)
	}
	s.ephemerals = append(s.ephemerals, Ephemeral{Via: "response_url", Text: msg.Text, ResponseType: msg.ResponseType,
		ThreadTS: msg.ThreadTS, Blocks: blocks, ResponseID: id, Time: time.Now()})
	s.mu.Unlock()
	writeJSON(w, okResponse{OK: true})
}

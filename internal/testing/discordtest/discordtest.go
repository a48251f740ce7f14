// Package discordtest is an in-process fake of Discord's REST API (v10) and
// gateway websocket, for tests and load tests of the Discord adapter.
//
// It listens on 127.0.0.1 only. REST routes live under /api/v{N}/ with the
// JSON shapes and X-RateLimit-* headers Discord uses; the gateway speaks the
// real opcodes (HELLO, IDENTIFY, READY, HEARTBEAT/ACK, RESUME, dispatches).
// A test plays the users: it posts messages (MESSAGE_CREATE), runs slash
// commands and clicks buttons (INTERACTION_CREATE), then reads back what the
// bot made visible: every channel's messages with their current content and
// components.
//
// Per-channel rate limiting of message create/edit/delete (Discord's
// unpublished ~5 per 5 s) can be switched on with WithRateLimit or
// SetRateLimit; requests over it get a real 429.
//
// The API takes no *testing.T: errors are returned, waits take timeouts, and
// Close never hangs.
package discordtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/arkbot/arkbot/internal/testing/arrival"
)

// Channel types, as Discord numbers them.
const (
	ChannelText          = 0
	ChannelDM            = 1
	ChannelAnnouncement  = 5
	ChannelPublicThread  = 11
	ChannelPrivateThread = 12
)

// Message types used here.
const (
	MessageDefault          = 0
	MessageReply            = 19
	MessageChatInputCommand = 20
)

// Interaction types.
const (
	InteractionApplicationCommand = 2
	InteractionMessageComponent   = 3
	InteractionAutocomplete       = 4
)

// Interaction callback types.
const (
	CallbackChannelMessage         = 4
	CallbackDeferredChannelMessage = 5
	CallbackDeferredUpdate         = 6
	CallbackUpdateMessage          = 7
	CallbackAutocompleteResult     = 8
)

// Message flags.
const (
	FlagEphemeral = 1 << 6
	FlagLoading   = 1 << 7
)

// discordEpoch is the first millisecond of 2015, the snowflake epoch.
const discordEpoch = 1420070400000

// User is a Discord user as the fake knows it.
type User struct {
	ID         string `json:"id"`
	Username   string `json:"username"`
	GlobalName string `json:"global_name,omitempty"`
	Bot        bool   `json:"bot,omitempty"`
}

// Channel is a guild channel, thread or DM channel.
type Channel struct {
	ID       string
	GuildID  string // "" for DMs
	ParentID string // a thread's parent channel
	Name     string
	Type     int
	// Forbidden makes the bot's message posts and edits there fail with 403
	// Missing Permissions (interactions still work, as on Discord).
	Forbidden bool
}

// Attachment is a file attached to a user's message, served by the fake.
type Attachment struct {
	ID          string `json:"id"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type,omitempty"`
	Size        int    `json:"size"`
	URL         string `json:"url"`
	ProxyURL    string `json:"proxy_url"`
}

// Message is a message as stored by the fake: its current visible state.
type Message struct {
	ID        string
	ChannelID string
	GuildID   string
	Author    User
	Content   string
	// Components is the message's components as last set (JSON array), or nil.
	Components json.RawMessage
	// ReferenceID is the message this one replies to (message_reference).
	ReferenceID string
	Mentions    []User
	Roles       []string // the author's roles (member), for guild messages
	Nick        string
	Attachments []Attachment
	Type        int
	Flags       int
	WebhookID   string
	// InteractionID is set on interaction responses and followups.
	InteractionID string
	Created       time.Time
	// Edits counts the edits made after creation.
	Edits   int
	Deleted bool
}

// Ephemeral reports whether only the interaction's user sees the message.
func (m Message) Ephemeral() bool { return m.Flags&FlagEphemeral != 0 }

// CustomIDs lists the custom_id of every component in the message.
func (m Message) CustomIDs() []string {
	var rows []struct {
		Components []struct {
			CustomID string `json:"custom_id"`
		} `json:"components"`
	}
	if len(m.Components) == 0 {
		return nil
	}
	if json.Unmarshal(m.Components, &rows) != nil {
		return nil
	}
	var out []string
	for _, r := range rows {
		for _, c := range r.Components {
			if c.CustomID != "" {
				out = append(out, c.CustomID)
			}
		}
	}
	return out
}

// Callback is one interaction response the bot sent.
type Callback struct {
	Type int
	Data json.RawMessage
	// After is the time from the interaction's dispatch to the callback.
	After time.Duration
}

// Identify is what a gateway client sent in IDENTIFY, when the fake
// accepted it.
type Identify struct {
	Intents int
	Shard   [2]int
	Time    time.Time
}

// SessionStartLimit is the limit on gateway sessions GET /gateway/bot
// reports as session_start_limit: Remaining of Total IDENTIFYs are left
// until ResetAfter, when Remaining is back to Total for another 24 hours;
// MaxConcurrency IDENTIFYs are taken per identify window, one per bucket
// shard_id % MaxConcurrency.
type SessionStartLimit struct {
	Total, Remaining int
	ResetAfter       time.Duration
	MaxConcurrency   int
}

// Stats counts what the bot did.
type Stats struct {
	// Requests counts requests by "METHOD route", e.g. "PATCH /channels/{c}/messages/{m}".
	Requests map[string]int
	// RateLimited counts 429 responses.
	RateLimited int
	// Identifies and Resumes count gateway sessions started and resumed.
	Identifies, Resumes int
	// IdentifiesTooFast counts IDENTIFYs refused with INVALID_SESSION for
	// coming before their bucket's identify window had passed.
	IdentifiesTooFast int
	// StartsExceeded counts IDENTIFYs made with no session start left: on
	// Discord each resets the bot's token (the fake closes every gateway
	// connection with 4004).
	StartsExceeded int
	// Heartbeats counts HEARTBEATs (op 1) received; HeartbeatSeq is the
	// last one's sequence number (0 for null).
	Heartbeats   int
	HeartbeatSeq int64
}

// Option configures a Server.
type Option func(*Server)

// WithToken sets the bot token the fake accepts (default "fake-token").
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithApplication sets the application ID, bot user ID and bot name.
func WithApplication(appID, botUserID, botName string) Option {
	return func(s *Server) { s.appID, s.bot.ID, s.bot.Username = appID, botUserID, botName }
}

// WithApplicationFlags sets the application's flags that GET
// /applications/@me reports (default 1<<19, the Message Content intent
// switched on in the Developer Portal; 0 is the switch off).
func WithApplicationFlags(flags int) Option { return func(s *Server) { s.appFlags = flags } }

// WithRateLimit switches on per-channel rate limiting of message create,
// edit and delete: at most limit requests per window per channel.
func WithRateLimit(limit int, per time.Duration) Option {
	return func(s *Server) { s.rlLimit, s.rlWindow = limit, per }
}

// WithCallHook calls f with every REST request once it has been answered,
// outside the server's lock, on the request's goroutine: a load test's way
// to timestamp what the bot did.
func WithCallHook(f func(Call)) Option { return func(s *Server) { s.onCall = f } }

// Call is one REST request, as WithCallHook reports it.
type Call struct {
	Time    time.Time   // when it reached the server's socket (see arrival)
	Handled time.Time   // when its handler began: later by this process's wait for a CPU
	Header  http.Header // the request's headers
	Method  string      // GET, POST, PATCH, DELETE
	Route   string      // the route pattern, e.g. "/channels/{channel}/messages/{msg}"
	Channel string      // the route's {channel}, "" if none
	Content *string     // the JSON body's "content", nil if absent
	ReplyTo string      // the JSON body's message_reference.message_id, "" if absent
	Status  int         // the HTTP status answered
}

// WithHeartbeatInterval sets the interval sent in HELLO (default 41.25 s).
func WithHeartbeatInterval(d time.Duration) Option { return func(s *Server) { s.heartbeat = d } }

// WithInteractionDeadline sets how long an interaction waits for its first
// callback (default 3 s, as on Discord) and how long its token stays valid
// for edits and followups (default 15 min).
func WithInteractionDeadline(callback, token time.Duration) Option {
	return func(s *Server) { s.callbackDeadline, s.tokenTTL = callback, token }
}

// WithResumeURL sets the resume_gateway_url READY gives (default
// ResumeURL()), e.g. an address where nothing listens.
func WithResumeURL(u string) Option { return func(s *Server) { s.resumeURL = u } }

// WithSessionStartLimit sets the session start limit (default 1000 of
// 1000, resetting after 24 hours, max_concurrency 1).
func WithSessionStartLimit(l SessionStartLimit) Option {
	return func(s *Server) {
		s.starts = l
		s.startsReset = time.Now().Add(l.ResetAfter)
	}
}

// WithIdentifyWindow sets the window in which each identify bucket takes
// one IDENTIFY (default 5 s, as on Discord); an IDENTIFY sooner gets
// INVALID_SESSION (op 9, not resumable).
func WithIdentifyWindow(d time.Duration) Option { return func(s *Server) { s.identifyWindow = d } }

// WithRecommendedShards sets the shard count GET /gateway/bot recommends.
func WithRecommendedShards(n int) Option { return func(s *Server) { s.shards = n } }

// WithEchoOwnMessages controls whether the bot's own messages come back as
// MESSAGE_CREATE dispatches, as on Discord (default true).
func WithEchoOwnMessages(on bool) Option { return func(s *Server) { s.echoOwn = on } }

// WithEchoOwnEdits controls whether the bot's edits of its channel
// messages come back as MESSAGE_UPDATE dispatches carrying the edited
// message, as on Discord (default false: most tests have no use for them;
// the load test turns them on to pay for them as a real bot does).
func WithEchoOwnEdits(on bool) Option { return func(s *Server) { s.echoEdits = on } }

// Server is a fake Discord. Create it with New, stop it with Close.
type Server struct {
	srv *httptest.Server

	token            string
	appID            string
	appFlags         int
	bot              User
	heartbeat        time.Duration
	callbackDeadline time.Duration
	tokenTTL         time.Duration
	shards           int
	resumeURL        string
	identifyWindow   time.Duration
	echoOwn          bool
	echoEdits        bool
	// echoes queues the bot's own new and edited messages for one
	// goroutine to dispatch in order, apart from the REST call: a handler
	// that dispatched them itself would hold its keep-alive connection,
	// and the bot's next call on it, while the gateway write waits.
	echoes chan echoed
	stop   chan struct{} // closed by Close
	onCall func(Call)

	idSeq atomic.Int64
	// dmu serializes dispatches so sequence numbers go out in order.
	dmu sync.Mutex

	mu           sync.Mutex
	rlLimit      int
	rlWindow     time.Duration
	windows      map[string]*window
	injected     map[string]injected429
	guilds       map[string]string // id → name
	channels     map[string]*Channel
	messages     map[string][]*Message // channel → messages in order
	byID         map[string]*Message
	interactions map[string]*interaction // by ID
	byToken      map[string]*interaction
	attachments  map[string]attachmentData // path → data
	commands     map[string][]json.RawMessage
	threads      []Channel
	stats        Stats
	sessions     map[string]*gwSession
	conns        map[*gwConn]struct{}
	identifies   []Identify
	starts       SessionStartLimit
	startsReset  time.Time
	lastIdentify map[int]time.Time // bucket → its last IDENTIFY accepted
	dials        []string
	noAcks       bool
	changed      chan struct{} // closed and replaced on every change
	closed       bool
	wg           sync.WaitGroup
}

type injected429 struct {
	n     int
	after time.Duration
}

type window struct {
	start time.Time
	count int
}

type attachmentData struct {
	contentType string
	data        []byte
}

type interaction struct {
	id, token, channelID, guildID string
	kind                          int
	name                          string
	user                          User
	messageID                     string // component interactions: the message clicked
	dispatched                    time.Time
	callbacks                     []Callback
	originalID                    string
}

// New starts a fake Discord on 127.0.0.1.
func New(opts ...Option) *Server {
	s := &Server{
		token:            "fake-token",
		appID:            "100000000000000001",
		appFlags:         1 << 19, // GATEWAY_MESSAGE_CONTENT_LIMITED: the portal's Message Content switch on
		bot:              User{ID: "100000000000000001", Username: "arkbot", Bot: true},
		heartbeat:        41250 * time.Millisecond,
		callbackDeadline: 3 * time.Second,
		tokenTTL:         15 * time.Minute,
		shards:           1,
		identifyWindow:   5 * time.Second,
		starts:           SessionStartLimit{Total: 1000, Remaining: 1000, ResetAfter: 24 * time.Hour, MaxConcurrency: 1},
		startsReset:      time.Now().Add(24 * time.Hour),
		lastIdentify:     map[int]time.Time{},
		echoOwn:          true,
		echoes:           make(chan echoed, 1<<14),
		stop:             make(chan struct{}),
		windows:          map[string]*window{},
		injected:         map[string]injected429{},
		guilds:           map[string]string{},
		channels:         map[string]*Channel{},
		messages:         map[string][]*Message{},
		byID:             map[string]*Message{},
		interactions:     map[string]*interaction{},
		byToken:          map[string]*interaction{},
		attachments:      map[string]attachmentData{},
		commands:         map[string][]json.RawMessage{},
		sessions:         map[string]*gwSession{},
		conns:            map[*gwConn]struct{}{},
		changed:          make(chan struct{}),
		stats:            Stats{Requests: map[string]int{}},
	}
	for _, o := range opts {
		o(s)
	}
	s.bot.Bot = true
	s.srv = httptest.NewUnstartedServer(s.routes())
	l, err := arrival.Listen("127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("discordtest: listen on 127.0.0.1: %v", err))
	}
	s.srv.Listener = l
	s.srv.Config.ConnContext = arrival.ConnContext
	s.srv.Start()
	go s.sendEchoes()
	return s
}

// echoed is a dispatch of the bot's own message.
type echoed struct {
	event, guildID string
	data           []byte
}

// sendEchoes dispatches queued echoes in order until the server closes.
func (s *Server) sendEchoes() {
	for {
		select {
		case e := <-s.echoes:
			_ = s.dispatch(e.event, e.guildID, e.data)
		case <-s.stop:
			return
		}
	}
}

// URL is the server's base address, http://127.0.0.1:port.
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the REST base to configure as discord.api_url.
func (s *Server) APIURL() string { return s.srv.URL + "/api/v10/" }

// GatewayURL is the gateway websocket address GET /gateway returns.
func (s *Server) GatewayURL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

// ResumeURL is the address READY gives as resume_gateway_url, where
// clients should reconnect to RESUME.
func (s *Server) ResumeURL() string {
	if s.resumeURL != "" {
		return s.resumeURL
	}
	return s.GatewayURL() + "/resume"
}

// Token is the bot token the fake accepts.
func (s *Server) Token() string { return s.token }

// AppID is the application's ID.
func (s *Server) AppID() string { return s.appID }

// Bot is the bot's user.
func (s *Server) Bot() User { return s.bot }

// Close disconnects every gateway client and stops the server. It never
// waits more than a few seconds.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	conns := make([]*gwConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// NewID returns a fresh snowflake.
func (s *Server) NewID() string {
	ms := time.Now().UnixMilli() - discordEpoch
	return fmt.Sprint(ms<<22 | (s.idSeq.Add(1) & 0x3fffff))
}

// SetRateLimit switches per-channel message rate limiting on (limit > 0) or off.
func (s *Server) SetRateLimit(limit int, per time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rlLimit, s.rlWindow = limit, per
	s.windows = map[string]*window{}
}

// InjectRateLimits makes the next n message create/edit/delete requests in a
// channel fail with 429 and retry_after, whatever the emulated budget says:
// the limits Discord enforces but doesn't announce in headers.
func (s *Server) InjectRateLimits(channelID string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected[channelID] = injected429{n, retryAfter}
}

// AddGuild registers a guild; identified gateway sessions learn it from GUILD_CREATE.
func (s *Server) AddGuild(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.guilds[id] = name
}

// AddChannel registers a channel, thread or DM channel.
func (s *Server) AddChannel(c Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cc := c
	s.channels[c.ID] = &cc
	if c.GuildID != "" {
		if _, ok := s.guilds[c.GuildID]; !ok {
			s.guilds[c.GuildID] = "guild " + c.GuildID
		}
	}
}

// Channel returns a registered channel.
func (s *Server) Channel(id string) (Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[id]
	if !ok {
		return Channel{}, false
	}
	return *c, true
}

// AddAttachment stores a file the fake serves, for use in MessageSpec.Attachments.
func (s *Server) AddAttachment(filename, contentType string, data []byte) Attachment {
	id := s.NewID()
	path := "/attachments/" + id + "/" + filename
	s.mu.Lock()
	s.attachments[path] = attachmentData{contentType, data}
	s.mu.Unlock()
	u := s.srv.URL + path
	return Attachment{ID: id, Filename: filename, ContentType: contentType, Size: len(data), URL: u, ProxyURL: u}
}

// Messages lists a channel's messages (deleted ones left out), oldest first.
func (s *Server) Messages(channelID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages[channelID] {
		if !m.Deleted {
			out = append(out, *m)
		}
	}
	return out
}

// Message returns one stored message.
func (s *Server) Message(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byID[id]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// ForgetMessages drops stored messages (all when no IDs are given), as if
// they had been deleted on Discord; REST fetches then answer 404.
func (s *Server) ForgetMessages(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, m := range s.byID {
		if len(ids) == 0 || contains(ids, id) {
			m.Deleted = true
		}
	}
}

// Commands returns the commands registered by bulk overwrite, by scope:
// "" for global commands, else the guild ID.
func (s *Server) Commands() map[string][]json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]json.RawMessage{}
	for k, v := range s.commands {
		out[k] = append([]json.RawMessage(nil), v...)
	}
	return out
}

// Threads lists the threads the bot created.
func (s *Server) Threads() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Channel(nil), s.threads...)
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = make(map[string]int, len(s.stats.Requests))
	for k, v := range s.stats.Requests {
		st.Requests[k] = v
	}
	return st
}

// SetSessionStartLimit sets the session starts left and the time until
// they are back to the total.
func (s *Server) SetSessionStartLimit(remaining int, resetAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starts.Remaining = remaining
	s.startsReset = time.Now().Add(resetAfter)
}

// sessionStartLimitLocked is the session start limit now, reset to the
// total if its time has come; s.mu must be held.
func (s *Server) sessionStartLimitLocked(now time.Time) SessionStartLimit {
	if !now.Before(s.startsReset) {
		s.starts.Remaining = s.starts.Total
		s.startsReset = now.Add(24 * time.Hour)
	}
	l := s.starts
	l.ResetAfter = s.startsReset.Sub(now)
	return l
}

// Identifies lists the IDENTIFY payloads accepted.
func (s *Server) Identifies() []Identify {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Identify(nil), s.identifies...)
}

// Callbacks lists the responses to an interaction so far.
func (s *Server) Callbacks(interactionID string) []Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.interactions[interactionID]; ok {
		return append([]Callback(nil), in.callbacks...)
	}
	return nil
}

// OriginalResponse returns an interaction's @original message, once created.
func (s *Server) OriginalResponse(interactionID string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.interactions[interactionID]
	if !ok || in.originalID == "" {
		return Message{}, false
	}
	m, ok := s.byID[in.originalID]
	if !ok {
		return Message{}, false
	}
	return *m, true
}

// WaitFor polls cond, which runs with no lock held, after every change to
// the fake's state (and at least every 50 ms) until it returns true or the
// timeout passes.
func (s *Server) WaitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		if closed {
			return errors.New("discordtest: server closed")
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			if cond() {
				return nil
			}
			return fmt.Errorf("discordtest: condition not met within %v", timeout)
		}
	}
}

// WaitCallback waits for an interaction's first response.
func (s *Server) WaitCallback(interactionID string, timeout time.Duration) (Callback, error) {
	var cb Callback
	err := s.WaitFor(timeout, func() bool {
		c := s.Callbacks(interactionID)
		if len(c) > 0 {
			cb = c[0]
			return true
		}
		return false
	})
	return cb, err
}

// notifyLocked wakes WaitFor callers; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ensureChannelLocked registers a channel first seen in a user's message.
func (s *Server) ensureChannelLocked(id, guildID string) *Channel {
	if c, ok := s.channels[id]; ok {
		return c
	}
	c := &Channel{ID: id, GuildID: guildID, Type: ChannelText, Name: "channel-" + id}
	if guildID == "" {
		c.Type = ChannelDM
	} else if _, ok := s.guilds[guildID]; !ok {
		s.guilds[guildID] = "guild " + guildID
	}
	s.channels[id] = c
	return c
}

func (s *Server) storeLocked(m *Message) {
	s.messages[m.ChannelID] = append(s.messages[m.ChannelID], m)
	s.byID[m.ID] = m
	s.notifyLocked()
}

// MessageSpec is a user's message for PostUserMessage.
type MessageSpec struct {
	ID        string // "" for a fresh snowflake
	ChannelID string
	GuildID   string // "" for a DM
	Author    User
	Roles     []string
	Nick      string
	Content   string
	Mentions  []User
	// ReplyTo makes the message a reply to that message in the same channel.
	ReplyTo     string
	Attachments []Attachment
	WebhookID   string
}

// PostUserMessage stores a user's message and dispatches MESSAGE_CREATE to
// the gateway clients. Posting a spec with the ID of a stored message
// redelivers that message's MESSAGE_CREATE.
func (s *Server) PostUserMessage(spec MessageSpec) (Message, error) {
	s.mu.Lock()
	if spec.ID != "" {
		if m, ok := s.byID[spec.ID]; ok {
			payload, msg := s.messageJSONLocked(m, true, true), *m // copied under the lock: edits change m
			s.mu.Unlock()
			return msg, s.dispatchMessage(payload)
		}
	}
	if spec.ID == "" {
		spec.ID = s.NewID()
	}
	s.ensureChannelLocked(spec.ChannelID, spec.GuildID)
	m := &Message{
		ID: spec.ID, ChannelID: spec.ChannelID, GuildID: spec.GuildID, Author: spec.Author,
		Content: spec.Content, Mentions: spec.Mentions, Roles: spec.Roles, Nick: spec.Nick,
		Attachments: spec.Attachments, Type: MessageDefault, WebhookID: spec.WebhookID,
		Created: time.Now(),
	}
	if spec.ReplyTo != "" {
		if _, ok := s.byID[spec.ReplyTo]; !ok {
			s.mu.Unlock()
			return Message{}, fmt.Errorf("discordtest: reply to unknown message %s", spec.ReplyTo)
		}
		m.ReferenceID = spec.ReplyTo
		m.Type = MessageReply
	}
	s.storeLocked(m)
	payload, msg := s.messageJSONLocked(m, true, true), *m
	s.mu.Unlock()
	return msg, s.dispatchMessage(payload)
}

// CommandOption is one option of a slash command interaction.
type CommandOption struct {
	Name    string `json:"name"`
	Type    int    `json:"type"` // 3 string, 4 integer, 5 boolean, 11 attachment
	Value   any    `json:"value,omitempty"`
	Focused bool   `json:"focused,omitempty"`
}

// InteractionSpec is a user's interaction for Interact.
type InteractionSpec struct {
	Type      int // InteractionApplicationCommand, InteractionMessageComponent, InteractionAutocomplete
	GuildID   string
	ChannelID string
	User      User
	Roles     []string
	Nick      string
	// Command name and options, for commands and autocomplete.
	Command string
	Options []CommandOption
	// Attachments resolved for attachment options, by attachment ID.
	Attachments []Attachment
	// CustomID and MessageID, for a component (button) click.
	CustomID  string
	MessageID string
}

// InteractionRef names a dispatched interaction.
type InteractionRef struct {
	ID    string
	Token string
}

// Interact dispatches INTERACTION_CREATE and remembers the interaction so the
// bot's callbacks, edits and followups can be checked.
func (s *Server) Interact(spec InteractionSpec) (InteractionRef, error) {
	id := s.NewID()
	token := "itok-" + id
	s.mu.Lock()
	ch := s.ensureChannelLocked(spec.ChannelID, spec.GuildID)
	in := &interaction{
		id: id, token: token, channelID: spec.ChannelID, guildID: spec.GuildID,
		kind: spec.Type, name: spec.Command, user: spec.User, messageID: spec.MessageID,
		dispatched: time.Now(),
	}
	s.interactions[id] = in
	s.byToken[token] = in
	d := map[string]any{
		"id": id, "application_id": s.appID, "type": spec.Type, "token": token, "version": 1,
		"channel_id": spec.ChannelID, "channel": s.channelJSONLocked(ch),
		"locale": "en-US", "app_permissions": "309237763072",
		"context": 0, "entitlements": []any{},
		"authorizing_integration_owners": map[string]string{"0": spec.GuildID},
	}
	if spec.GuildID != "" {
		d["guild_id"] = spec.GuildID
		d["guild_locale"] = "en-US"
		d["member"] = memberJSON(spec.User, spec.Roles, spec.Nick, true)
	} else {
		d["user"] = spec.User
		d["context"] = 1
	}
	switch spec.Type {
	case InteractionApplicationCommand, InteractionAutocomplete:
		data := map[string]any{"id": s.commandIDLocked(spec.Command), "name": spec.Command, "type": 1}
		if spec.Options != nil {
			data["options"] = spec.Options
		}
		if len(spec.Attachments) > 0 {
			att := map[string]Attachment{}
			for _, a := range spec.Attachments {
				att[a.ID] = a
			}
			data["resolved"] = map[string]any{"attachments": att}
		}
		d["data"] = data
	case InteractionMessageComponent:
		d["data"] = map[string]any{"custom_id": spec.CustomID, "component_type": 2}
		if m, ok := s.byID[spec.MessageID]; ok {
			d["message"] = s.messageJSONLocked(m, false, false)
		} else {
			s.mu.Unlock()
			return InteractionRef{}, fmt.Errorf("discordtest: component on unknown message %s", spec.MessageID)
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	return InteractionRef{ID: id, Token: token}, s.Dispatch("INTERACTION_CREATE", d)
}

func (s *Server) commandIDLocked(name string) string {
	for _, cmds := range s.commands {
		for _, raw := range cmds {
			var c struct{ ID, Name string }
			if json.Unmarshal(raw, &c) == nil && c.Name == name {
				return c.ID
			}
		}
	}
	return "0"
}

// memberObject is a guild member as Discord renders it.
type memberObject struct {
	Roles    []string `json:"roles"`
	JoinedAt string   `json:"joined_at"`
	Deaf     bool     `json:"deaf"`
	Mute     bool     `json:"mute"`
	Flags    int      `json:"flags"`
	Pending  bool     `json:"pending"`
	Nick     *string  `json:"nick"`
	// User and Permissions are set in interactions only.
	User        *User  `json:"user,omitempty"`
	Permissions string `json:"permissions,omitempty"`
}

// memberJSON is a guild member object; withUser embeds the user (interactions).
func memberJSON(u User, roles []string, nick string, withUser bool) *memberObject {
	if roles == nil {
		roles = []string{}
	}
	m := &memberObject{Roles: roles, JoinedAt: "2024-01-01T00:00:00+00:00"}
	if nick != "" {
		n := nick
		m.Nick = &n
	}
	if withUser {
		user := u
		m.User = &user
		m.Permissions = "309237763072"
	}
	return m
}

// userObject is a user as Discord renders it.
type userObject struct {
	ID            string  `json:"id"`
	Username      string  `json:"username"`
	Discriminator string  `json:"discriminator"`
	Avatar        *string `json:"avatar"` // always null
	GlobalName    *string `json:"global_name"`
	PublicFlags   int     `json:"public_flags"`
	Bot           bool    `json:"bot,omitempty"`
}

// userJSON renders a user.
func userJSON(u User) userObject {
	o := userObject{ID: u.ID, Username: u.Username, Discriminator: "0", Bot: u.Bot}
	if u.GlobalName != "" {
		name := u.GlobalName
		o.GlobalName = &name
	}
	return o
}

func (s *Server) channelJSONLocked(c *Channel) map[string]any {
	m := map[string]any{"id": c.ID, "type": c.Type, "name": c.Name, "flags": 0}
	if c.GuildID != "" {
		m["guild_id"] = c.GuildID
		m["position"] = 0
		m["permission_overwrites"] = []any{}
		m["nsfw"] = false
	}
	if c.ParentID != "" {
		m["parent_id"] = c.ParentID
	}
	if c.Type == ChannelPublicThread || c.Type == ChannelPrivateThread {
		m["owner_id"] = s.bot.ID
		m["thread_metadata"] = map[string]any{
			"archived": false, "auto_archive_duration": 1440, "locked": false,
			"archive_timestamp": time.Now().UTC().Format(time.RFC3339),
		}
		m["message_count"] = len(s.messages[c.ID])
		m["member_count"] = 1
	}
	if c.Type == ChannelDM {
		m["recipients"] = []any{}
	}
	return m
}

// messageObject is a message as Discord renders it.
type messageObject struct {
	ID                  string               `json:"id"`
	ChannelID           string               `json:"channel_id"`
	GuildID             string               `json:"guild_id,omitempty"`
	Author              userObject           `json:"author"`
	Member              *memberObject        `json:"member,omitempty"`
	Content             string               `json:"content"`
	Timestamp           string               `json:"timestamp"`
	EditedTimestamp     *string              `json:"edited_timestamp"`
	TTS                 bool                 `json:"tts"`
	MentionEveryone     bool                 `json:"mention_everyone"`
	Mentions            []userObject         `json:"mentions"`
	MentionRoles        []any                `json:"mention_roles"`
	Attachments         []Attachment         `json:"attachments"`
	Embeds              []any                `json:"embeds"`
	Components          json.RawMessage      `json:"components"`
	Pinned              bool                 `json:"pinned"`
	Type                int                  `json:"type"`
	Flags               int                  `json:"flags"`
	WebhookID           string               `json:"webhook_id,omitempty"`
	ApplicationID       *string              `json:"application_id,omitempty"`
	InteractionMetadata *interactionMetadata `json:"interaction_metadata,omitempty"`
	Interaction         *messageInteraction  `json:"interaction,omitempty"`
	MessageReference    *messageReference    `json:"message_reference,omitempty"`
	// ReferencedMessage is nil when absent, a nil *messageObject for null.
	ReferencedMessage any            `json:"referenced_message,omitempty"`
	Thread            map[string]any `json:"thread,omitempty"`
}

type interactionMetadata struct {
	ID   string     `json:"id"`
	Type int        `json:"type"`
	User userObject `json:"user"`
}

type messageInteraction struct {
	interactionMetadata
	Name string `json:"name"`
}

type messageReference struct {
	Type      int    `json:"type"`
	MessageID string `json:"message_id"`
	ChannelID string `json:"channel_id"`
	GuildID   string `json:"guild_id,omitempty"`
}

// emptyArray is the components of a message that has none.
var emptyArray = json.RawMessage("[]")

// timestampLayout is how Discord writes message timestamps.
const timestampLayout = "2006-01-02T15:04:05.000000-07:00"

// messageJSONLocked renders a message as Discord does. withRef includes the
// referenced message (one level); gateway adds member for guild user messages.
func (s *Server) messageJSONLocked(m *Message, withRef, gateway bool) *messageObject {
	mentions := make([]userObject, 0, len(m.Mentions))
	for _, u := range m.Mentions {
		mentions = append(mentions, userJSON(u))
	}
	comps := emptyArray
	if len(m.Components) > 0 && string(m.Components) != "null" {
		comps = m.Components
	}
	out := &messageObject{
		ID: m.ID, ChannelID: m.ChannelID, GuildID: m.GuildID, Author: userJSON(m.Author), Content: m.Content,
		Timestamp: m.Created.UTC().Format(timestampLayout), Mentions: mentions, MentionRoles: []any{},
		Attachments: append([]Attachment{}, m.Attachments...), Embeds: []any{}, Components: comps,
		Type: m.Type, Flags: m.Flags, WebhookID: m.WebhookID,
	}
	if m.Edits > 0 {
		edited := time.Now().UTC().Format(timestampLayout)
		out.EditedTimestamp = &edited
	}
	if m.GuildID != "" && gateway && !m.Author.Bot && m.WebhookID == "" {
		out.Member = memberJSON(m.Author, m.Roles, m.Nick, false)
	}
	if m.InteractionID != "" {
		out.ApplicationID = &s.appID
		if in, ok := s.interactions[m.InteractionID]; ok {
			meta := interactionMetadata{ID: in.id, Type: in.kind, User: userJSON(in.user)}
			out.InteractionMetadata = &meta
			out.Interaction = &messageInteraction{meta, in.name}
		}
	}
	if m.ReferenceID != "" {
		out.MessageReference = &messageReference{MessageID: m.ReferenceID, ChannelID: m.ChannelID, GuildID: m.GuildID}
		if withRef {
			if r, ok := s.byID[m.ReferenceID]; ok && !r.Deleted {
				out.ReferencedMessage = s.messageJSONLocked(r, false, false)
			} else {
				out.ReferencedMessage = (*messageObject)(nil)
			}
		}
	}
	if t, ok := s.channels[m.ID]; ok && isThread(t.Type) {
		out.Thread = s.channelJSONLocked(t)
	}
	return out
}

// encode encodes a rendered message. It cannot fail: the only raw JSON in a
// message, its components, came from a request body that decoded.
func (o *messageObject) encode() []byte {
	b, _ := json.Marshal(o)
	return b
}

func isThread(t int) bool { return t == ChannelPublicThread || t == ChannelPrivateThread || t == 10 }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sortedKeys is used for stable output in Stats dumps.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String formats the stats, one route per line.
func (st Stats) String() string {
	var b strings.Builder
	for _, k := range sortedKeys(st.Requests) {
		fmt.Fprintf(&b, "%s: %d\n", k, st.Requests[k])
	}
	fmt.Fprintf(&b, "429s: %d, identifies: %d (too fast: %d, over the start limit: %d), resumes: %d",
		st.RateLimited, st.Identifies, st.IdentifiesTooFast, st.StartsExceeded, st.Resumes)
	return b.String()
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/internal/work"
	"github.com/arkbot/arkbot/metrics"
)

// Adapter connects one Slack app to a conversation.Handler.
type Adapter struct {
	cfg          config.Slack
	limits       config.Limits
	h            conversation.Handler
	log          *slog.Logger
	api          *slack.Client
	client       *http.Client // the API's, for file downloads too
	budget       *ratelimit.Budget
	presence     *presence // nil: the budget share is fixed
	socket       bool
	allowDMs     bool
	editInterval time.Duration
	grace        time.Duration
	pieceLimit   int
	finalWait    time.Duration // bounds a final render, see finalWait

	id         atomic.Pointer[identity]
	ready      atomic.Bool
	running    atomic.Bool
	users      *userCache
	noNative   sync.Map       // team ID → time until which native streaming is not tried
	noSessions sync.Map       // team ID → time until which agent sessions are not tried
	bg         sync.WaitGroup // session statuses and titles set off the answers' path
	fair       render.Fair    // intermediate renders shared among a workspace's answers

	// pool runs accepted messages, slack.max_concurrent at a time; Run
	// opens accepting once authenticated and closes it to drain.
	pool      *work.Pool
	accepting atomic.Bool
	tidy      *work.Pool // tidy jobs (see tidyJob)
	chores    Chores     // nil: tidy jobs live in this process
}

// identity is who the bot is, from auth.test.
type identity struct {
	userID, botID, teamID string
}

func (a *Adapter) identity() identity {
	if p := a.id.Load(); p != nil {
		return *p
	}
	return identity{}
}

// Option configures an Adapter.
type Option func(*options)

type options struct {
	log     *slog.Logger
	client  *http.Client
	budgets Budgets
	grace   time.Duration
	limit   int
	queue   int // -1: work.DefaultQueue

	presence      Presence
	presenceEvery time.Duration
	chores        Chores
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHTTPClient sets the HTTP client for the Web API, file downloads and
// response_url replies (default: a client with a 30 s timeout that keeps a
// connection per worker, slack.max_concurrent).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithBudgets replaces the per-workspace rate budgets (default DefaultBudgets()).
func WithBudgets(b Budgets) Option { return func(o *options) { o.budgets = b } }

// WithShutdownGrace sets how long Run waits, once its context ends, for
// answers in flight before cancelling them (default 10 s).
func WithShutdownGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithWorkQueue sets how many accepted messages may wait for one of the
// slack.max_concurrent workers (default work.DefaultQueue of it). Beyond
// it an event is refused so that Slack delivers it again: over HTTP with a
// 503, in Socket Mode by leaving its envelope unacknowledged.
func WithWorkQueue(n int) Option { return func(o *options) { o.queue = n } }

// WithMessageLimit sets how many characters of an answer go into one Slack
// message before it continues in the next: 200 to 11,000, the default
// (Slack's markdown limit is 12,000; the rest is kept for the closing note).
func WithMessageLimit(n int) Option { return func(o *options) { o.limit = n } }

// DefaultMessageLimit is the default WithMessageLimit.
const DefaultMessageLimit = 11000

// New builds the adapter. It makes no network call: Run resolves the bot's
// identity with auth.test and connects.
func New(cfg config.Slack, limits config.Limits, h conversation.Handler, opts ...Option) (*Adapter, error) {
	o := options{grace: 10 * time.Second, limit: DefaultMessageLimit, queue: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.budgets == nil {
		o.budgets = DefaultBudgets()
	}
	if h == nil {
		return nil, errors.New("slack: a conversation handler is required")
	}
	if cfg.BotToken == "" {
		return nil, errors.New("slack.bot_token is required")
	}
	if cfg.AppToken == "" && cfg.SigningSecret == "" {
		return nil, errors.New("slack: set slack.app_token (Socket Mode) or slack.signing_secret (HTTP Events API)")
	}
	if cfg.AppToken != "" && !strings.HasPrefix(cfg.AppToken.Value(), "xapp-") {
		return nil, errors.New("slack.app_token must be an app-level token (xapp-…) with the connections:write scope")
	}
	cfg = cfg.WithDefaults()
	cfg.APIURL = apiURL(cfg.APIURL)
	switch cfg.ReplyInThreads {
	case "mentioned", "always":
	default:
		return nil, fmt.Errorf("slack.reply_in_threads must be mentioned or always, not %q", cfg.ReplyInThreads)
	}
	switch cfg.Streaming {
	case "auto", "native", "update":
	default:
		return nil, fmt.Errorf("slack.streaming must be auto, native or update, not %q", cfg.Streaming)
	}
	workers := cfg.MaxConcurrent
	if o.client == nil {
		// Each worker makes one call at a time: keep that many connections.
		o.client = &http.Client{Timeout: 30 * time.Second, Transport: transport.New(workers)}
	}
	o.limit = min(max(o.limit, 200), DefaultMessageLimit)
	apiOpts := []slack.Option{slack.OptionAPIURL(cfg.APIURL), slack.OptionHTTPClient(o.client)}
	if cfg.AppToken != "" {
		apiOpts = append(apiOpts, slack.OptionAppLevelToken(cfg.AppToken.Value()))
	}
	log := o.log
	poolOpts := []work.Option{work.WithLogger(log), work.WithStopWait(stopWait)}
	if o.queue >= 0 {
		poolOpts = append(poolOpts, work.WithQueue(o.queue))
	}
	a := &Adapter{
		cfg:          cfg,
		limits:       limits,
		h:            h,
		log:          log,
		api:          slack.New(cfg.BotToken.Value(), apiOpts...),
		client:       o.client,
		budget:       ratelimit.New("slack", rateLimits(o.budgets), ratelimit.WithClassifier(classify), ratelimit.WithLogger(log)),
		socket:       cfg.AppToken != "",
		allowDMs:     *cfg.AllowDMs,
		editInterval: cfg.EditInterval.D(),
		grace:        o.grace,
		pieceLimit:   o.limit,
		finalWait:    finalWait(o.budgets, workers),
		users:        newUserCache(),
		pool:         work.New(context.Background(), conversation.PlatformSlack, workers, poolOpts...),
		tidy:         work.New(context.Background(), conversation.PlatformSlack, tidyWorkers, work.WithLogger(log), work.WithQueue(tidyQueue)),
		chores:       o.chores,
	}
	if o.presence != nil {
		if o.presenceEvery <= 0 {
			o.presenceEvery = DefaultPresenceInterval
		}
		a.presence = newPresence(o.presence, o.presenceEvery)
	}
	return a, nil
}

// Ready reports whether the adapter is connected: in Socket Mode, a
// websocket is open; in HTTP mode, Run has verified the bot token.
func (a *Adapter) Ready() bool { return a.ready.Load() }

// Run resolves the bot's identity (auth.test), then in Socket Mode keeps a
// websocket open (reconnecting as needed), or in HTTP mode serves events
// through HTTPHandler, until ctx ends. It then stops taking events, waits
// for answers in flight (up to the shutdown grace), cancels the rest, and
// returns. It returns an error only if the adapter can't run (bad tokens).
func (a *Adapter) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("slack: Run called twice")
	}
	if err := a.authenticate(ctx); err != nil {
		a.drain()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if a.chores != nil {
		go a.runChores(ctx)
	}
	if a.presence != nil {
		// Count before taking events, so the first answers already spend
		// this replica's share only.
		a.countReplicas(ctx)
		go a.keepCounting(ctx)
		defer a.leave()
	}
	a.accepting.Store(true)
	var err error
	if a.socket {
		err = a.runSocket(ctx)
	} else {
		a.ready.Store(true)
		a.log.Info("serving the HTTP Events API", "events_path", a.cfg.EventsPath, "commands_path", a.cfg.CommandsPath, "interactivity_path", a.cfg.InteractivityPath)
		<-ctx.Done()
	}
	a.ready.Store(false)
	a.drain()
	return err
}

// authenticate calls auth.test, retrying network errors a few times.
func (a *Adapter) authenticate(ctx context.Context) error {
	var lastErr error
	for attempt := range 5 {
		if attempt > 0 {
			if err := ratelimit.Sleep(ctx, time.Duration(attempt)*time.Second); err != nil {
				return err
			}
		}
		var resp *slack.AuthTestResponse
		err := a.call(ctx, ratelimit.MustDeliver, "", "", "auth.test", func(ctx context.Context) error {
			var err error
			resp, err = a.api.AuthTestContext(ctx)
			return err
		})
		if err == nil {
			a.id.Store(&identity{userID: resp.UserID, botID: resp.BotID, teamID: resp.TeamID})
			a.log.Info("authenticated", "team", resp.TeamID, "team_name", resp.Team, "bot_user", resp.UserID, "mode", a.mode())
			return nil
		}
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			return fmt.Errorf("slack auth.test: %s (check slack.bot_token: a bot token xoxb-… of an installed app)", se.Err)
		}
		lastErr = err
		a.log.Warn("slack auth.test failed; retrying", "err", err)
	}
	return fmt.Errorf("slack auth.test: %w", lastErr)
}

func (a *Adapter) mode() string {
	if a.socket {
		return "socket"
	}
	return "http"
}

// stopWait is how long answers have, once cancelled at shutdown, to
// render their last frame: enough for final renders not queued for budget.
const stopWait = 45 * time.Second

// drain stops taking events, waits for the answers in flight (those queued
// included) up to the shutdown grace, then cancels them and waits up to
// stopWait more.
func (a *Adapter) drain() {
	a.accepting.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), a.grace+stopWait)
	defer cancel()
	a.pool.Drain(ctx)
	a.tidy.Drain(ctx)
	// Session statuses set off the answers' path end within sessionCallWait.
	a.bg.Wait()
}

// dispatch runs fn for one accepted message on the work pool. It reports
// false if the adapter is not taking work (not yet running, or shutting
// down) or the pool's queue is full, so the caller can have Slack deliver
// the message again. A message still queued when shutdown cancels the
// work is dropped.
func (a *Adapter) dispatch(what string, fn func(ctx context.Context)) bool {
	if !a.accepting.Load() {
		return false
	}
	err := a.pool.Submit(what, func(ctx context.Context) {
		if ctx.Err() != nil {
			a.log.Debug("shutting down: dropping a message not yet begun", "what", what)
			return
		}
		fn(ctx)
	})
	return err == nil
}

// ---- Socket Mode: see socket.go ----

// ---- events → messages ----

// onEvent handles one Events API payload; it returns at once. It reports
// false when the event is for the bot but could not be taken (queue full,
// or not running), so Slack should deliver it again; events not for the
// bot, and unreadable ones, report true: done with.
func (a *Adapter) onEvent(raw []byte, retry int) bool {
	var p eventPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		a.log.Warn("unreadable event payload", "err", err)
		return true
	}
	if p.Type == "app_rate_limited" {
		a.log.Warn("Slack is dropping events for this app: it exceeded 30,000 events per hour in a workspace", "team", p.TeamID)
		return true
	}
	if p.Type != "event_callback" || len(p.Event) == 0 {
		return true
	}
	var ev innerEvent
	if err := json.Unmarshal(p.Event, &ev); err != nil {
		a.log.Warn("unreadable event", "event_id", p.EventID, "err", err)
		return true
	}
	if taken, agent := a.onAgentEvent(p.TeamID, ev.Type, p.Event); agent {
		return taken
	}
	d, reason := a.classify(p.TeamID, ev)
	if reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		a.log.Debug("event ignored", "event_id", p.EventID, "type", ev.Type, "subtype", ev.Subtype, "channel", ev.Channel, "reason", reason)
		return true
	}
	log := a.log.With("team", d.msg.Workspace, "channel", d.msg.Channel, "ts", ev.TS, "event_id", p.EventID)
	if retry > 0 {
		log.Debug("event redelivered", "retry_attempt", retry)
	}
	return a.dispatch("event", func(ctx context.Context) { a.process(ctx, d, nil, log) })
}

// onSlash handles one slash command; it returns at once, with a refusal
// to show the user if the command is not allowed here.
func (a *Adapter) onSlash(cmd slack.SlashCommand) string {
	d, reason := a.classifySlash(cmd)
	if reason != "" {
		metrics.Messages.WithLabelValues(conversation.PlatformSlack, "ignored").Inc()
		a.log.Debug("slash command refused", "command", cmd.Command, "channel", cmd.ChannelID, "user", cmd.UserID, "reason", reason)
		return "Sorry, I'm not available here."
	}
	log := a.log.With("team", cmd.TeamID, "channel", cmd.ChannelID, "command", cmd.Command)
	target := &replyTarget{team: cmd.TeamID, channel: cmd.ChannelID, user: cmd.UserID, dm: d.msg.DM, responseURL: cmd.ResponseURL, slash: true}
	if !a.dispatch("slash command", func(ctx context.Context) { a.process(ctx, d, target, log) }) {
		return "I'm busy right now. Please try again in a minute."
	}
	return ""
}

// process completes a message (attachments; the user's name on its way) and
// hands it to the engine.
func (a *Adapter) process(ctx context.Context, d *draft, target *replyTarget, log *slog.Logger) {
	m := d.msg
	m.ResolveName = a.users.later(ctx, a, m.Workspace, m.User.ID, cmp.Or(m.User.Name, m.User.ID))
	if len(d.files) > 0 {
		a.attachments(ctx, &m, d.files, log)
	}
	if target == nil {
		target = &replyTarget{team: m.Workspace, channel: m.Channel, thread: m.Thread, user: m.User.ID, dm: m.DM, question: m.ID, title: m.Text}
	}
	r := a.newReply(*target, log)
	defer r.close()
	a.titleThread(ctx, m, log)
	if err := a.h.Handle(ctx, m, r); err != nil && ctx.Err() == nil {
		log.Warn("handling the message failed", "err", err)
	}
	r.endSession()
}

// ---- HTTP Events API ----

// maxHTTPBody bounds an event or command request body.
const maxHTTPBody = 1 << 20

// HTTPHandler serves the HTTP Events API on slack.events_path and slash
// commands on slack.commands_path. Every request must carry a valid Slack
// signature (slack.signing_secret) no older than five minutes, else it is
// refused with 401. Requests are acknowledged at once and answered
// asynchronously; before Run has authenticated, after it ends, and when
// the work queue is full (see WithWorkQueue), they get 503 so Slack
// retries them (perhaps on another replica). Events not for the bot get 200.
func (a *Adapter) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	a.Register(mux)
	return mux
}

// Register adds the events and commands endpoints to mux.
func (a *Adapter) Register(mux *http.ServeMux) {
	mux.HandleFunc(a.cfg.EventsPath, a.serveEvents)
	mux.HandleFunc(a.cfg.CommandsPath, a.serveCommands)
	mux.HandleFunc(a.cfg.InteractivityPath, a.serveInteractivity)
}

// verified reads the body and checks Slack's signature, answering the
// request itself (and returning nil) when it fails.
func (a *Adapter) verified(w http.ResponseWriter, r *http.Request) []byte {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return nil
	}
	body, err := readBody(w, r)
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return nil
	}
	secret := a.cfg.SigningSecret.Value()
	if secret == "" {
		a.log.Warn("refused an HTTP request: slack.signing_secret is not set", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "signing secret not configured", http.StatusUnauthorized)
		return nil
	}
	sv, err := slack.NewSecretsVerifier(r.Header, secret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		a.log.Warn("refused an HTTP request with a bad or stale Slack signature", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return nil
	}
	return body
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	defer r.Body.Close()
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxHTTPBody))
}

// parseSlashForm reads a slash command from its form-encoded body.
func parseSlashForm(body []byte) (slack.SlashCommand, error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return slack.SlashCommand{}, err
	}
	return slack.SlashCommand{
		TeamID: v.Get("team_id"), TeamDomain: v.Get("team_domain"), EnterpriseID: v.Get("enterprise_id"),
		ChannelID: v.Get("channel_id"), ChannelName: v.Get("channel_name"),
		UserID: v.Get("user_id"), UserName: v.Get("user_name"),
		Command: v.Get("command"), Text: v.Get("text"),
		ResponseURL: v.Get("response_url"), TriggerID: v.Get("trigger_id"), APIAppID: v.Get("api_app_id"),
	}, nil
}

func (a *Adapter) serveEvents(w http.ResponseWriter, r *http.Request) {
	body := a.verified(w, r)
	if body == nil {
		return
	}
	var p eventPayload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "invalid JSON", http.StatusBadRequest)
		return
	}
	if p.Type == "url_verification" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"challenge": p.Challenge})
		return
	}
	if !a.takingHTTP() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	retry := 0
	if n := r.Header.Get("X-Slack-Retry-Num"); n != "" {
		retry = 1
		a.log.Debug("HTTP event redelivered", "retry_num", n, "reason", r.Header.Get("X-Slack-Retry-Reason"))
	}
	if !a.onEvent(body, retry) {
		busy(w)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// busy answers a request for work the adapter could not take with 503 and
// a Retry-After hint: Slack delivers it again, perhaps to another replica.
func busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	http.Error(w, "busy", http.StatusServiceUnavailable)
}

func (a *Adapter) serveCommands(w http.ResponseWriter, r *http.Request) {
	body := a.verifiedWork(w, r)
	if body == nil {
		return
	}
	cmd, err := parseSlashForm(body)
	if err != nil {
		http.Error(w, "invalid form", http.StatusBadRequest)
		return
	}
	if refusal := a.onSlash(cmd); refusal != "" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"response_type": "ephemeral", "text": refusal})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// verifiedWork is a signed request's body when the adapter takes work now;
// otherwise it answers 401 or 503 (Slack retries, perhaps elsewhere) and
// returns nil.
func (a *Adapter) verifiedWork(w http.ResponseWriter, r *http.Request) []byte {
	body := a.verified(w, r)
	if body != nil && !a.takingHTTP() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return nil
	}
	return body
}

// takingHTTP reports whether HTTP events are accepted now.
func (a *Adapter) takingHTTP() bool {
	return a.accepting.Load() && a.id.Load() != nil
}

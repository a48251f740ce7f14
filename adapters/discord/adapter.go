package discord

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/internal/work"
	"github.com/arkbot/arkbot/metrics"
)

// InvitePermissions are the permissions the bot asks for in InviteURL: View
// Channel, Send Messages, Send Messages in Threads, Create Public Threads,
// Read Message History, Embed Links and Attach Files.
const InvitePermissions = discordgo.PermissionViewChannel |
	discordgo.PermissionSendMessages |
	discordgo.PermissionSendMessagesInThreads |
	discordgo.PermissionCreatePublicThreads |
	discordgo.PermissionReadMessageHistory |
	discordgo.PermissionEmbedLinks |
	discordgo.PermissionAttachFiles

// Intents are the gateway intents the adapter identifies with. MessageContent
// is privileged: switch it on in the Developer Portal (Bot → Privileged
// Gateway Intents) or mention text arrives empty.
const Intents = discordgo.IntentsGuilds |
	discordgo.IntentsGuildMessages |
	discordgo.IntentsDirectMessages |
	discordgo.IntentsMessageContent

const (
	// maxChainFetches bounds the REST fetches spent finding a reply chain's root.
	maxChainFetches = 8
	// cacheSize bounds the in-memory maps (bot message → conversation, channel info).
	cacheSize = 50000
	// finalTimeout bounds the wait for a final render (budget, 429 retries).
	finalTimeout = 2 * time.Minute
	// callTimeout bounds one REST call made on the interaction's clock.
	callTimeout = 10 * time.Second
	// ackWorkers bounds the interactions being acknowledged at once (each
	// within Discord's 3 s), apart from the answers, so that a Stop click
	// or a /ask's acknowledgement never waits for answers to end.
	ackWorkers = 32
)

// Option configures an Adapter.
type Option func(*options)

type options struct {
	log           *slog.Logger
	client        *http.Client
	channelCalls  int
	channelWindow time.Duration
	globalPerSec  float64
	shutdownWait  time.Duration
	queue         int // -1: work.DefaultQueue
	// invalidSessionWait is the least wait after an INVALID_SESSION; the
	// wait is random, up to five times that (Discord asks for 1–5 s).
	invalidSessionWait time.Duration
	// identifyInterval spaces the IDENTIFYs of a bucket (default 5 s).
	identifyInterval time.Duration
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHTTPClient sets the client for REST calls and attachment downloads
// (default: 20 s timeout, keeping a connection per answer in flight,
// discord.max_concurrent).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithChannelBudget sets how many message posts and edits the adapter makes
// per channel in a window (default DefaultChannelCalls per DefaultChannelWindow).
// Intermediate renders beyond it are skipped; first posts and final renders wait.
func WithChannelBudget(calls int, window time.Duration) Option {
	return func(o *options) { o.channelCalls, o.channelWindow = calls, window }
}

// WithGlobalBudget sets the adapter's request rate across all channels
// (default DefaultGlobalPerSec per second).
func WithGlobalBudget(perSecond float64) Option {
	return func(o *options) { o.globalPerSec = perSecond }
}

// WithWorkQueue sets how many messages may wait for one of the
// discord.max_concurrent workers (default work.DefaultQueue of it). Beyond
// it a message is dropped (Discord doesn't deliver gateway events again)
// and a command is answered with a busy notice.
func WithWorkQueue(n int) Option { return func(o *options) { o.queue = n } }

// WithShutdownWait bounds how long Run waits, once its context ends, for
// running answers to render their last frame (default 15 s).
func WithShutdownWait(d time.Duration) Option { return func(o *options) { o.shutdownWait = d } }

// Adapter connects Discord to a conversation.Handler. Create it with New and
// start it with Run.
type Adapter struct {
	cfg    config.Discord
	limits config.Limits
	h      conversation.Handler
	log    *slog.Logger
	client *http.Client
	opts   options
	token  string // "Bot …"

	sess   *discordgo.Session
	budget *ratelimit.Budget
	fair   render.Fair // intermediate renders shared among a channel's answers
	// pool runs answers, each from its event's first REST call or download
	// to its last render, discord.max_concurrent at a time; acks runs
	// interactions' acknowledgements, which hand their answers to pool.
	pool, acks *work.Pool

	ready     atomic.Bool
	readyOnce sync.Once
	readyCh   chan struct{}
	idMu      sync.RWMutex
	botID     string
	appID     string

	// chains maps a bot message ID to the reply chain (Message.Thread) it belongs to.
	chains *lru[string, string]
	// channels caches channel types and parents, from events and REST.
	channels *lru[string, chanInfo]
	// joined remembers threads the bot posted in or created.
	joined *lru[string, bool]

	runMu   sync.Mutex
	running bool
	closing bool
	baseCtx context.Context // the pools' jobs run under it; cancelled at shutdown
	cancel  context.CancelFunc

	stats struct {
		calls, errors, rateLimited, skipped atomic.Int64
	}
}

// Stats are the adapter's counters since New.
type Stats struct {
	Calls       int64 // REST calls made by the adapter
	Errors      int64 // of which failed (429s excluded)
	RateLimited int64 // 429 responses seen (waited out and retried, or skipped)
	Skipped     int64 // intermediate renders (or parts) skipped for lack of budget
}

// New creates an adapter for cfg. It does not connect; Run does.
func New(cfg config.Discord, limits config.Limits, h conversation.Handler, opts ...Option) (*Adapter, error) {
	if cfg.Token == "" {
		return nil, errors.New("discord: token is empty")
	}
	if h == nil {
		return nil, errors.New("discord: nil handler")
	}
	o := options{
		log:           slog.Default(),
		channelCalls:  DefaultChannelCalls,
		channelWindow: DefaultChannelWindow,
		globalPerSec:  DefaultGlobalPerSec,
		shutdownWait:  15 * time.Second,
		queue:         -1,

		invalidSessionWait: time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	cfg = cfg.WithDefaults()
	if u, err := url.Parse(cfg.APIURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("discord: api_url %q is not an http(s) URL", cfg.APIURL)
	}
	if o.client == nil {
		// Each answer makes one call at a time: keep that many connections.
		o.client = &http.Client{Timeout: 20 * time.Second, Transport: transport.New(cfg.MaxConcurrent)}
	}
	tok := strings.TrimSpace(cfg.Token.Value())
	if !strings.HasPrefix(tok, "Bot ") {
		tok = "Bot " + tok
	}
	a := &Adapter{
		cfg: cfg, limits: limits, h: h, log: o.log.With("platform", "discord"), client: o.client, opts: o,
		token:    tok,
		readyCh:  make(chan struct{}),
		chains:   newLRU[string, string](cacheSize),
		channels: newLRU[string, chanInfo](cacheSize),
		joined:   newLRU[string, bool](cacheSize),
	}
	a.budget = ratelimit.New("discord", rateLimits(o.channelCalls, o.channelWindow, o.globalPerSec),
		ratelimit.WithClassifier(classify), ratelimit.WithObserver(a.count), ratelimit.WithLogger(a.log))
	a.baseCtx, a.cancel = context.WithCancel(context.Background())
	poolOpts := []work.Option{work.WithLogger(a.log)}
	if o.queue >= 0 {
		poolOpts = append(poolOpts, work.WithQueue(o.queue))
	}
	a.pool = work.New(a.baseCtx, conversation.PlatformDiscord, cfg.MaxConcurrent, poolOpts...)
	a.acks = work.New(a.baseCtx, conversation.PlatformDiscord, ackWorkers, work.WithLogger(a.log))
	return a, nil
}

// Ready reports whether the gateway connection is up.
func (a *Adapter) Ready() bool { return a.ready.Load() }

// Stats returns the adapter's counters.
func (a *Adapter) Stats() Stats {
	return Stats{
		Calls: a.stats.calls.Load(), Errors: a.stats.errors.Load(),
		RateLimited: a.stats.rateLimited.Load(), Skipped: a.stats.skipped.Load(),
	}
}

// InviteURL is the OAuth2 link that adds the bot to a server with the
// permissions it needs. The application ID comes from the gateway's READY,
// or before that from the token (whose first part encodes the bot's ID,
// equal to the application ID for bots created since 2020).
func (a *Adapter) InviteURL() string {
	id := a.ids()
	if id.app == "" {
		id.app = idFromToken(a.token)
	}
	return fmt.Sprintf("https://discord.com/oauth2/authorize?client_id=%s&scope=bot+applications.commands&permissions=%d", id.app, InvitePermissions)
}

func idFromToken(tok string) string {
	tok = strings.TrimPrefix(tok, "Bot ")
	first, _, _ := strings.Cut(tok, ".")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.StdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(first); err == nil && len(b) > 0 && strings.Trim(string(b), "0123456789") == "" {
			return string(b)
		}
	}
	return ""
}

type botIDs struct{ bot, app string }

func (a *Adapter) ids() botIDs {
	a.idMu.RLock()
	defer a.idMu.RUnlock()
	return botIDs{a.botID, a.appID}
}

// Run connects to the gateway, registers the slash commands, and handles
// events until ctx ends; then it stops taking new events, cancels running
// answers (which still render their last frame, within WithShutdownWait)
// and closes the connection. A rejected token is returned at once; an
// unreachable gateway is retried with backoff until ctx ends.
func (a *Adapter) Run(ctx context.Context) error {
	a.runMu.Lock()
	if a.running || a.closing {
		a.runMu.Unlock()
		return errors.New("discord: Run called twice")
	}
	a.running = true
	a.runMu.Unlock()
	defer a.cancel()

	s, err := discordgo.New(a.token)
	if err != nil {
		return fmt.Errorf("discord: %w", err)
	}
	if s.Client, err = apiClient(a.client, a.cfg.APIURL); err != nil {
		return err
	}
	s.StateEnabled = false // the adapter keeps its own bounded caches
	s.ShouldRetryOnRateLimit = true
	setDiscordgoLogger()
	a.sess = s
	s.AddHandler(func(_ *discordgo.Session, rl *discordgo.RateLimit) {
		// A call outside the budget: discordgo retries it after rl.RetryAfter, holding the bucket.
		a.stats.rateLimited.Add(1)
		metrics.PlatformCall("discord", routeName(rl.URL), "ratelimited")
		a.log.Debug("rate limited by Discord; discordgo retries", "route", routeName(rl.URL), "retry_after", rl.RetryAfter)
	})

	me, err := s.User("@me", discordgo.WithContext(ctx))
	a.observe("users.me", err)
	if err != nil {
		var re *discordgo.RESTError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized {
			return errors.New("discord: the bot token was rejected (401): copy it again from the Developer Portal → Bot → Reset Token")
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("could not read the bot user; continuing", "err", err)
	} else {
		a.idMu.Lock()
		a.botID = me.ID
		a.idMu.Unlock()
	}
	gateway := make(chan error, 1)
	go func() { gateway <- a.runGateway(ctx) }()
	select {
	case <-a.readyCh:
	case err := <-gateway:
		a.shutdown()
		return err
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		a.log.Warn("no READY from the gateway within 30 s")
	}
	if ctx.Err() == nil {
		a.registerCommands(ctx)
		a.log.Info("Discord adapter running", "invite_url", a.InviteURL(), "shard", a.cfg.ShardID, "shards", a.cfg.ShardCount)
	}
	err = <-gateway // nil once ctx ends; an error no reconnection mends
	a.shutdown()
	return err
}

// shutdown stops taking events and cancels the work in flight at once:
// answers render their last frame (queued ones say the bot is restarting)
// within the shutdown wait, and 2 s more.
func (a *Adapter) shutdown() {
	a.runMu.Lock()
	a.closing = true
	a.runMu.Unlock()
	a.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.shutdownWait+2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { a.acks.Drain(ctx) })
	a.pool.Drain(ctx)
	wg.Wait()
	a.ready.Store(false)
}

// track runs a gateway event's handler, which sorts the event without any
// I/O and hands its work to a pool (see onMessage and onInteraction), so
// it returns at once; a panic in it is logged.
func (a *Adapter) track(fn func()) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("panic in Discord event handler", "panic", p)
		}
	}()
	fn()
}

// submit hands an event's work to pool, which drops it (logged, counted
// as overload) when full: Discord does not deliver gateway events again.
func (a *Adapter) submit(pool *work.Pool, what string, fn func(ctx context.Context)) error {
	err := pool.Submit(what, fn)
	if errors.Is(err, work.ErrClosed) {
		a.log.Debug("shutting down: event dropped", "what", what)
	}
	return err
}

// observe counts one REST call made outside the budget (which counts its
// own) in the metrics and the adapter's stats.
func (a *Adapter) observe(method string, err error) {
	result := "ok"
	var rl *discordgo.RateLimitError
	switch {
	case err == nil:
	case errors.As(err, &rl):
		result = "ratelimited"
	default:
		result = "error"
	}
	metrics.PlatformCall("discord", method, result)
	a.count(method, result)
}

// count adds one REST call's result ("ok", "error", "ratelimited") to the
// adapter's stats.
func (a *Adapter) count(_, result string) {
	a.stats.calls.Add(1)
	switch result {
	case "ratelimited":
		a.stats.rateLimited.Add(1)
	case "error":
		a.stats.errors.Add(1)
	}
}

var apiPath = regexp.MustCompile(`/api/v\d+/`)

// routeName turns a REST URL into a low-cardinality method label. It reads
// no discordgo globals: it runs in discordgo's event goroutines.
func routeName(u string) string {
	p := u
	if loc := apiPath.FindStringIndex(p); loc != nil {
		p = p[loc[1]:]
	}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	parts := strings.Split(strings.TrimSuffix(p, "/"), "/")
	n := len(parts)
	switch {
	case parts[0] == "channels" && n >= 5 && parts[2] == "messages" && parts[4] == "threads", parts[0] == "channels" && n == 3 && parts[2] == "threads":
		return "threads.create"
	case parts[0] == "channels" && n == 3 && parts[2] == "messages":
		return "messages.create"
	case parts[0] == "channels" && n == 4 && parts[2] == "messages":
		return "messages.edit" // also GET and DELETE of one message
	case parts[0] == "channels" && n == 2:
		return "channels.get"
	case parts[0] == "webhooks" && n >= 5:
		return "webhooks.edit"
	case parts[0] == "webhooks":
		return "webhooks.execute"
	case parts[0] == "interactions":
		return "interactions.callback"
	case parts[0] == "applications":
		return "commands.bulk_overwrite"
	case parts[0] != "":
		return parts[0]
	}
	return "other"
}

var loggerOnce sync.Once

// setDiscordgoLogger routes discordgo's own log lines (errors only, at its
// default level) through slog once per process.
func setDiscordgoLogger() {
	loggerOnce.Do(func() {
		discordgo.Logger = func(level, caller int, format string, a ...any) {
			l := slog.LevelError
			switch level {
			case discordgo.LogWarning:
				l = slog.LevelWarn
			case discordgo.LogInformational:
				l = slog.LevelInfo
			case discordgo.LogDebug:
				l = slog.LevelDebug
			}
			slog.Default().Log(context.Background(), l, "discordgo: "+fmt.Sprintf(format, a...), "platform", "discord")
		}
	})
}

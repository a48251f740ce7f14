package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// roleEnv, set to "bot", makes the process the bot process (see bot.go).
const roleEnv = "ARKBOT_LOADTEST_ROLE"

// The simulated Discord guild and the channel its threads hang off.
const (
	guildID  = "910000000000000001"
	parentID = "910000000000000002"
)

// harness runs the fakes, the Redis server and the bot process, and keeps
// what the fakes saw.
type harness struct {
	opts   options
	ark    *arktest.Server
	fs     *slacktest.Server
	fd     *discordtest.Server
	mr     *embedredis.Server // nil with -redis
	rdb    *redis.Client
	redis  string // URL
	prefix string
	bot    *botProc

	convs   map[string]*conv // by id
	slack   sync.Map         // "channel/thread_ts" → *conv, once its first message is sent
	discord map[string]*conv // by thread (channel) ID; none with -channels
	asked   sync.Map         // with -channels: Discord question's message ID → *conv
	stats   *callStats
}

// startFakes starts the fake Ark, Slack and Discord on 127.0.0.1 and the
// Redis server (embedded unless -redis names one), and registers the
// conversations' users and channels.
func startFakes(o options, convs []*conv) (*harness, error) {
	h := &harness{opts: o, convs: map[string]*conv{}, discord: map[string]*conv{},
		stats: newCallStats(), prefix: fmt.Sprintf("loadtest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	for _, c := range convs {
		h.convs[c.id] = c
		if c.platform == platformDiscord && o.channels == 0 {
			h.discord[c.channel] = c
		}
	}
	h.ark = arktest.New(arktest.WithAPIKey(arkKey), arktest.WithFirstChunkHook(h.onFirstChunk))
	h.ark.SetHandler(h.answer)
	h.fs = slacktest.New(slacktest.Options{OnCall: h.onSlackCall, EchoOwn: o.echo, Redeliver: slackRedeliver})
	dopts := []discordtest.Option{discordtest.WithCallHook(h.onDiscordCall), discordtest.WithEchoOwnMessages(o.echo), discordtest.WithEchoOwnEdits(o.echo)}
	if o.ratelimits {
		h.fs.SetRateLimits(&slacktest.RateLimits{Scale: o.rateScale})
		dopts = append(dopts, discordtest.WithRateLimit(5, time.Duration(float64(5*time.Second)/o.rateScale)))
	}
	h.fd = discordtest.New(dopts...)
	h.fd.AddGuild(guildID, "load test")
	h.fd.AddChannel(discordtest.Channel{ID: parentID, GuildID: guildID, Name: "general", Type: discordtest.ChannelText})
	for _, c := range convs {
		if c.platform == platformSlack {
			h.fs.AddUser(slacktest.User{ID: c.user, Name: "user" + c.id, RealName: "User " + c.id})
		} else if o.channels > 0 {
			if _, ok := h.fd.Channel(c.channel); !ok {
				h.fd.AddChannel(discordtest.Channel{ID: c.channel, GuildID: guildID, Name: "channel " + c.channel, Type: discordtest.ChannelText})
			}
		} else {
			h.fd.AddChannel(discordtest.Channel{ID: c.channel, GuildID: guildID, ParentID: parentID, Name: "thread " + c.id, Type: discordtest.ChannelPublicThread})
		}
	}
	h.redis = o.redisURL
	if h.redis == "" {
		mr, err := embedredis.Start()
		if err != nil {
			h.close()
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		h.mr = mr
		h.redis = "redis://" + mr.Addr() + "/0"
	}
	opt, err := redis.ParseURL(h.redis)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("-redis: %w", err)
	}
	h.rdb = redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.rdb.Ping(ctx).Err(); err != nil {
		h.close()
		return nil, fmt.Errorf("redis %s: %w", h.redis, err)
	}
	return h, nil
}

// slackRedeliver is how long the fake Slack waits for an event's
// acknowledgement before it sends the event again, as Slack does: an event
// written to a connection as it closed, or sent while none was open (a
// refresh under -churn), still reaches the bot. The bot acknowledges
// within milliseconds, so under a steady load nothing is sent twice.
const slackRedeliver = 2 * time.Second

// arkKey is the API key the fake Ark demands and the bot sends.
const arkKey = "loadtest-ark-key"

// botConfig is the bot's configuration: the example config.yaml's settings
// that matter here (one model, 20 requests a minute per user), pointed at
// the fakes.
func (h *harness) botConfig(slackConvs, discordConvs int) string {
	var b strings.Builder
	maxStarting := "" // the bot's default
	if h.opts.maxStarting >= 0 {
		maxStarting = fmt.Sprintf(", max_starting: %d", h.opts.maxStarting)
	}
	fmt.Fprintf(&b, `log: {level: %s}
ark: {base_url: %q, api_key: %q}
models:
  - {name: doubao, id: doubao-seed-1-6-250615, thinking: disabled, vision: true, context_window: 256000, max_tokens: 4096}
limits: {requests_per_minute: %d}
redis: {url: %q, prefix: %q, ttl: 1h}
server: {shutdown_timeout: 10s%s}
`, h.opts.logLevel, h.ark.URL, arkKey, max(20, h.opts.turns), h.redis, h.prefix, maxStarting)
	if slackConvs > 0 {
		fmt.Fprintf(&b, "slack: {bot_token: %q, app_token: %q, api_url: %q, edit_interval: %s, max_concurrent: %d}\n",
			h.fs.BotToken(), h.fs.AppToken(), h.fs.APIURL(), h.opts.slackEdit, slackConvs+1)
	}
	if discordConvs > 0 {
		fmt.Fprintf(&b, "discord: {token: %q, api_url: %q, guild_ids: [%q], edit_interval: %s, max_concurrent: %d}\n",
			h.fd.Token(), h.fd.APIURL(), guildID, h.opts.discordEdit, discordConvs+1)
	}
	return b.String()
}

// startBot starts the bot process and waits until it is connected (and, on
// Discord, its commands are registered).
func (h *harness) startBot(ctx context.Context, slackConvs, discordConvs int, log io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=bot")
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &botProc{cmd: cmd, in: stdin, out: bufio.NewScanner(stdout), exited: make(chan struct{})}
	// Process.Wait, not cmd.Wait: that closes stdout once the process ends,
	// maybe before its last reply has been read.
	go func() { _, _ = cmd.Process.Wait(); close(p.exited) }()
	h.bot = p
	spec := botSpec{Config: h.botConfig(slackConvs, discordConvs), Unlimited: !h.opts.ratelimits, RateScale: h.opts.rateScale}
	var ready struct {
		Ready bool
		Error string
	}
	if err := p.exchange(spec, &ready, 45*time.Second); err != nil {
		return fmt.Errorf("bot process: %w", err)
	}
	if !ready.Ready {
		return fmt.Errorf("bot process: %s", ready.Error)
	}
	if discordConvs > 0 {
		err := h.fd.WaitFor(time.Until(deadlineOf(ctx, 20*time.Second)), func() bool { return len(h.fd.Commands()[guildID]) > 0 })
		if err != nil {
			return fmt.Errorf("the bot registered no Discord commands: %w", err)
		}
	}
	return nil
}

func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// close stops whatever runs; the bot process is killed if still alive.
func (h *harness) close() {
	if h.bot != nil {
		h.bot.kill()
	}
	if h.fs != nil {
		h.fs.Close()
	}
	if h.fd != nil {
		h.fd.Close()
	}
	if h.ark != nil {
		h.ark.Close()
	}
	if h.rdb != nil {
		h.rdb.Close()
	}
	if h.mr != nil {
		h.mr.Close()
	}
}

// cleanRedis deletes the run's keys from a shared Redis (bounded SCAN).
func (h *harness) cleanRedis(ctx context.Context) {
	if h.mr != nil {
		return
	}
	for _, pattern := range []string{h.prefix + ":*", "rate:" + h.prefix + ":*"} {
		var cursor uint64
		for range 100000 {
			keys, next, err := h.rdb.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				break
			}
			if len(keys) > 0 {
				h.rdb.Del(ctx, keys...)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
}

// botProc is the bot process and its command channel.
type botProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex // one exchange at a time
	in     io.WriteCloser
	out    *bufio.Scanner
	exited chan struct{}
}

// exchange sends one JSON line and reads the one-line reply into reply.
func (p *botProc) exchange(req, reply any, timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() {
		if !p.out.Scan() {
			got <- errors.Join(errors.New("the bot process exited"), p.out.Err())
			return
		}
		got <- json.Unmarshal(p.out.Bytes(), reply)
	}()
	select {
	case err := <-got:
		return err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// snap asks for a snapshot of the bot's resource use.
func (p *botProc) snap(gc bool, heapProfile string) (snapshot, error) {
	return p.do(command{Cmd: "snap", GC: gc, Path: heapProfile})
}

// do sends a snapshot command and returns the snapshot.
func (p *botProc) do(c command) (snapshot, error) {
	var s snapshot
	if err := p.exchange(c, &s, 30*time.Second); err != nil {
		return s, err
	}
	if s.Err != "" {
		return s, errors.New(s.Err)
	}
	return s, nil
}

// stop shuts the bot down as SIGTERM would and returns its last snapshot.
func (p *botProc) stop() (snapshot, error) {
	var s snapshot
	err := p.exchange(command{Cmd: "stop"}, &s, 60*time.Second)
	p.in.Close()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
	}
	return s, err
}

func (p *botProc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// churn replaces the bot's event connections every d, as Slack and
// Discord do now and then: Slack asks for a new Socket Mode connection and
// closes the old one a grace later, Discord sends RECONNECT. The returned
// func stops it and says how many times it did.
func (h *harness) churn(d time.Duration) (stop func() int) {
	if d <= 0 {
		return func() int { return 0 }
	}
	done := make(chan struct{})
	count := make(chan int, 1)
	go func() {
		n := 0
		defer func() { count <- n }()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			h.fs.Disconnect(min(d/2, 10*time.Second))
			h.fd.Reconnect()
			n++
		}
	}()
	return func() int {
		close(done)
		return <-count
	}
}

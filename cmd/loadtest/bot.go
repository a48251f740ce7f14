package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/adapters/discord"
	"github.com/arkbot/arkbot/adapters/slack"
	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	botmetrics "github.com/arkbot/arkbot/metrics"
)

// The bot process: the same wiring as cmd/bot (config, Redis client, Ark
// client, store, engine, Slack and Discord adapters), run in a process of
// its own so that its CPU, memory and goroutines are measured apart from
// the fakes. It talks to the harness in JSON lines: a botSpec on stdin,
// "ready" on stdout, then one reply per command.

// botSpec is what the harness tells the bot process.
type botSpec struct {
	Config string // YAML, read with config.Parse
	// Unlimited switches the adapters' own rate budgets off, as for
	// platforms without rate limits; else they are the production budgets
	// with rates multiplied by RateScale.
	Unlimited bool
	RateScale float64
}

// command is a request from the harness.
type command struct {
	Cmd string // "snap", "cpuprofile", "stop"
	// GC runs a garbage collection before a snapshot, so Live is the live heap.
	GC bool
	// Path is the CPU profile to start (cpuprofile), or the heap profile to
	// write with the snapshot (snap).
	Path string
}

// snapshot is the bot process's resource use at one moment.
type snapshot struct {
	CPU        float64 // user + system seconds so far (getrusage)
	MaxRSS     int64   // peak resident set, bytes
	Allocs     uint64  // heap bytes allocated so far
	AllocObjs  uint64  // heap objects allocated so far
	Live       uint64  // heap bytes in objects (live after a GC; else live plus garbage)
	Stacks     uint64  // goroutine stack bytes
	Goroutines int
	Streams    int   // answers streaming now (arkbot_active_streams)
	Redis      int64 // Redis round trips so far
	Err        string
}

// roundTrips counts Redis round trips: one per command or pipeline sent,
// as conversation/roundtrips_test.go does.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// runBot is the bot process: it runs until told to stop or stdin closes.
func runBot(stdin io.Reader, stdout, stderr io.Writer) int {
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	out := json.NewEncoder(stdout)
	fail := func(err error) int {
		_ = out.Encode(map[string]string{"error": err.Error()})
		return 1
	}
	var spec botSpec
	if !in.Scan() {
		return fail(errors.New("no spec on stdin"))
	}
	if err := json.Unmarshal(in.Bytes(), &spec); err != nil {
		return fail(err)
	}
	b, err := startBot(spec, stderr)
	if err != nil {
		return fail(err)
	}
	if err := out.Encode(map[string]bool{"ready": true}); err != nil {
		b.stop()
		return 1
	}
	for in.Scan() {
		var c command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			_ = out.Encode(snapshot{Err: err.Error()})
			continue
		}
		switch c.Cmd {
		case "snap":
			s := b.snap(c.GC)
			if c.Path != "" {
				if err := writeHeapProfile(c.Path); err != nil {
					s.Err = err.Error()
				}
			}
			_ = out.Encode(s)
		case "cpuprofile":
			s := snapshot{}
			if err := b.startCPUProfile(c.Path); err != nil {
				s.Err = err.Error()
			}
			_ = out.Encode(s)
		case "stop":
			b.stop()
			_ = out.Encode(b.snap(false))
			return 0
		default:
			_ = out.Encode(snapshot{Err: "unknown command " + c.Cmd})
		}
	}
	b.stop() // stdin closed: the harness is gone
	return 0
}

// bot is the running bot.
type bot struct {
	log      *slog.Logger
	rdb      *redis.Client
	rt       *roundTrips
	engine   *conversation.Engine
	shutdown time.Duration
	cancel   context.CancelFunc
	done     []chan error
	profile  *os.File
}

// startBot wires the bot as cmd/bot does and waits until every configured
// messenger is connected.
func startBot(spec botSpec, stderr io.Writer) (*bot, error) {
	cfg, err := config.Parse([]byte(spec.Config))
	if err != nil {
		return nil, err
	}
	level := slog.LevelWarn
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	opt, err := redis.ParseURL(cfg.Redis.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	rdb := redis.NewClient(opt)
	rt := &roundTrips{}
	rdb.AddHook(rt)
	ark, err := arkclient.New(cfg.Ark.BaseURL, cfg.Ark.APIKey.Value(),
		arkclient.WithFirstTokenTimeout(cfg.Ark.FirstTokenTimeout.D()),
		arkclient.WithIdleTimeout(cfg.Ark.IdleTimeout.D()),
		arkclient.WithRetries(cfg.Ark.MaxRetries, cfg.Ark.RetryBase.D(), cfg.Ark.RetryMax.D()),
		arkclient.WithLogger(log))
	if err != nil {
		rdb.Close()
		return nil, err
	}
	store := conversation.NewStore(rdb, conversation.StoreOptions{
		Prefix: cfg.Redis.Prefix, TTL: cfg.Redis.TTL.D(), MaxTurns: cfg.Redis.MaxTurns,
		LockTTL: cfg.Redis.LockTTL.D(), LockWait: cfg.Redis.LockWait.D(), DedupeTTL: cfg.Redis.DedupeTTL.D(),
	})
	engine := conversation.NewEngine(cfg, store, ark,
		conversation.WithLogger(log),
		conversation.WithRenderInterval(conversation.PlatformSlack, cfg.Slack.EditInterval.D()),
		conversation.WithRenderInterval(conversation.PlatformDiscord, cfg.Discord.EditInterval.D()))

	b := &bot{log: log, rdb: rdb, rt: rt, engine: engine, shutdown: cfg.Server.ShutdownTimeout.D()}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	var ready []func() bool
	run := func(r func(context.Context) error, isReady func() bool) {
		done := make(chan error, 1)
		go func() { done <- r(ctx) }()
		b.done = append(b.done, done)
		ready = append(ready, isReady)
	}
	if cfg.Slack.Enabled() {
		budgets := slack.Budgets{} // no method listed: none limited
		if !spec.Unlimited {
			budgets = slack.DefaultBudgets().Scaled(spec.RateScale)
		}
		a, err := slack.New(cfg.Slack, cfg.Limits, engine, slack.WithLogger(log.With("adapter", "slack")),
			slack.WithShutdownGrace(b.shutdown), slack.WithBudgets(budgets))
		if err != nil {
			b.stop()
			return nil, err
		}
		run(a.Run, a.Ready)
	}
	if cfg.Discord.Enabled() {
		opts := []discord.Option{discord.WithLogger(log.With("adapter", "discord")), discord.WithShutdownWait(b.shutdown)}
		if spec.Unlimited {
			opts = append(opts, discord.WithChannelBudget(1<<30, time.Second), discord.WithGlobalBudget(0))
		} else {
			opts = append(opts,
				discord.WithChannelBudget(discord.DefaultChannelCalls, time.Duration(float64(discord.DefaultChannelWindow)/spec.RateScale)),
				discord.WithGlobalBudget(discord.DefaultGlobalPerSec*spec.RateScale))
		}
		a, err := discord.New(cfg.Discord, cfg.Limits, engine, opts...)
		if err != nil {
			b.stop()
			return nil, err
		}
		run(a.Run, a.Ready)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, isReady := range ready {
		for !isReady() {
			for _, d := range b.done {
				select {
				case err := <-d:
					d <- err // keep it for stop
					b.stop()
					return nil, fmt.Errorf("a messenger adapter stopped at start-up: %v", err)
				default:
				}
			}
			if time.Now().After(deadline) {
				b.stop()
				return nil, errors.New("the messenger adapters did not connect within 30 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return b, nil
}

// stop ends the bot as cmd/bot does on SIGTERM: answers in flight get the
// shutdown grace, then the adapters stop and Redis is closed.
func (b *bot) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), b.shutdown)
	b.engine.Shutdown(ctx)
	cancel()
	b.cancel()
	for _, d := range b.done {
		select {
		case err := <-d:
			if err != nil {
				b.log.Error("adapter", "err", err)
			}
		case <-time.After(30 * time.Second):
			b.log.Error("an adapter did not stop within 30 s")
		}
	}
	b.rdb.Close()
	if b.profile != nil {
		pprof.StopCPUProfile()
		b.profile.Close()
		b.profile = nil
	}
}

// startCPUProfile profiles the bot process until it stops.
func (b *bot) startCPUProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	b.profile = f
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runtimeSamples are the runtime/metrics a snapshot reads.
var runtimeSamples = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/sched/goroutines:goroutines",
}

func (b *bot) snap(gc bool) snapshot {
	if gc {
		runtime.GC()
	}
	samples := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		samples[i].Name = name
	}
	metrics.Read(samples)
	s := snapshot{
		Allocs:     samples[0].Value.Uint64(),
		AllocObjs:  samples[1].Value.Uint64(),
		Live:       samples[2].Value.Uint64(),
		Stacks:     samples[3].Value.Uint64(),
		Goroutines: int(samples[4].Value.Uint64()),
		Redis:      b.rt.n.Load(),
	}
	s.CPU, s.MaxRSS = rusage()
	for _, p := range []string{conversation.PlatformSlack, conversation.PlatformDiscord} {
		var m dto.Metric
		if botmetrics.ActiveStreams.WithLabelValues(p).Write(&m) == nil {
			s.Streams += int(m.GetGauge().GetValue())
		}
	}
	return s
}

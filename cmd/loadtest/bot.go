package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/adapters/discord"
	"github.com/arkbot/arkbot/adapters/slack"
	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/internal/wire"
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
	Cmd string // "snap", "cpuprofile", "trace", "stop"
	// GC runs a garbage collection before a snapshot, so Live is the live heap.
	GC bool
	// CloseIdle closes idle pooled HTTP connections first, so that Live
	// counts what the bot holds, not connections kept for the next answers.
	CloseIdle bool
	// Path is the CPU profile to start (cpuprofile), the execution trace
	// to write (trace), or the heap profile to write with the snapshot (snap).
	Path string
}

// snapshot is the bot process's resource use at one moment.
type snapshot struct {
	usage
	Allocs     uint64 // heap bytes allocated so far
	AllocObjs  uint64 // heap objects allocated so far
	Live       uint64 // heap bytes in objects (live after a GC; else live plus garbage)
	Stacks     uint64 // goroutine stack bytes
	Goroutines int
	Streams    int     // answers streaming now (arkbot_active_streams)
	GCCycles   uint64  // garbage collections so far
	GCCPU      float64 // CPU seconds spent collecting garbage so far (estimated by the runtime)
	// SchedWait is how long goroutines waited, runnable, for a CPU so far:
	// a histogram, as bucket upper bounds (seconds) and counts.
	SchedWait  []bucket
	Redis      int64    // Redis round trips so far
	RedisSetup int64    // connection handshakes, not in Redis
	RedisBeats int64    // timed commands: replica-count heartbeats (slack.replicas: auto), looks for stored tidy jobs; not in Redis
	Dials      [3]int64 // HTTP connections opened to Ark, Slack and Discord so far
	Err        string
}

// usage is a process's resource use so far, from getrusage.
type usage struct {
	CPU    float64 // user + system seconds
	SysCPU float64 // of which in the kernel
	MaxRSS int64   // peak resident set, bytes
	// Faults counts page faults: each new page of memory the process
	// touches costs one (about 10 µs of CPU in a virtual machine).
	Faults int64
}

// bucket is one bucket of a histogram: N values up to Le.
type bucket struct {
	Le float64
	N  uint64
}

// roundTrips counts Redis round trips: one per command or pipeline sent,
// as conversation/roundtrips_test.go does, keeping apart the handshake
// go-redis makes on each new pooled connection (HELLO, CLIENT SETINFO),
// the replica count's heartbeat (every 10 s) and the look for stored
// tidy jobs (every second): neither is per turn.
type roundTrips struct{ n, setup, beats atomic.Int64 }

func (h *roundTrips) count(cmds ...redis.Cmder) {
	for _, c := range cmds {
		switch c.Name() {
		case "hello", "auth", "client", "select", "multi":
		default:
			if periodic(c) {
				h.beats.Add(1)
			} else {
				h.n.Add(1)
			}
			return
		}
	}
	h.setup.Add(1)
}

// periodic reports a command the bot sends on a timer, not per turn: the
// replica count's heartbeat, the look for stored tidy jobs.
func periodic(c redis.Cmder) bool {
	args := c.Args()
	switch c.Name() {
	case "zadd":
		return len(args) > 1 && strings.Contains(fmt.Sprint(args[1]), ":replicas:")
	case "evalsha", "eval":
		return len(args) > 3 && strings.Contains(fmt.Sprint(args[3]), ":chores:")
	}
	return false
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.count(cmd); return next(ctx, cmd) }
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.count(cmds...); return next(ctx, cmds) }
}

// runBot is the bot process: it runs until told to stop or stdin closes.
func runBot(stdin io.Reader, stdout, stderr io.Writer) int {
	wire.TuneGC() // as cmd/bot does
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
			if c.CloseIdle {
				for _, t := range b.transports {
					t.CloseIdleConnections()
				}
				time.Sleep(500 * time.Millisecond) // their goroutines exit, dropping their buffers
			}
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
		case "trace":
			s := snapshot{}
			if err := b.startTrace(c.Path, traceSpan); err != nil {
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
	// stopTrace ends the execution trace, if one was started.
	stopTrace func()
	// transports are the HTTP clients' pools (Ark, Slack, Discord), dials
	// the connections each opened.
	transports []*http.Transport
	dials      *[3]atomic.Int64
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
	// The HTTP clients are the adapters' and the Ark client's defaults, made
	// here to be able to close their idle connections.
	arkT, slackT, discordT := transport.New(1024), transport.New(cfg.Slack.MaxConcurrent), transport.New(cfg.Discord.MaxConcurrent)
	dials := &[3]atomic.Int64{}
	for i, t := range []*http.Transport{arkT, slackT, discordT} {
		dial := t.DialContext
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials[i].Add(1)
			return dial(ctx, network, addr)
		}
	}
	engine, store, err := wire.Core(cfg, rdb, log, arkclient.WithHTTPClient(&http.Client{Transport: arkT}))
	if err != nil {
		rdb.Close()
		return nil, err
	}

	b := &bot{log: log, rdb: rdb, rt: rt, engine: engine, dials: dials, shutdown: cfg.Server.ShutdownTimeout.D(),
		transports: []*http.Transport{arkT, slackT, discordT}}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	var ready []func() bool
	run := func(r func(context.Context) error, isReady func() bool) {
		done := make(chan error, 1)
		go func() { done <- r(ctx) }()
		b.done = append(b.done, done)
		ready = append(ready, isReady)
	}
	var listening atomic.Bool
	run(func(ctx context.Context) error {
		engine.ListenForStops(ctx, func() { listening.Store(true) })
		return nil
	}, listening.Load)
	if cfg.Slack.Enabled() {
		budgets := slack.Budgets{} // no method listed: none limited
		if !spec.Unlimited {
			budgets = slack.DefaultBudgets().WithLimits(cfg.Slack.RateLimits).Scaled(spec.RateScale * cfg.Slack.Replicas.Share())
		}
		opts := []slack.Option{slack.WithLogger(log.With("adapter", "slack")),
			slack.WithShutdownGrace(b.shutdown), slack.WithBudgets(budgets),
			slack.WithHTTPClient(&http.Client{Timeout: 30 * time.Second, Transport: stamped{slackT}}), slack.WithChores(store)}
		if cfg.Slack.Replicas.Auto() {
			opts = append(opts, slack.WithPresence(store, slack.DefaultPresenceInterval))
		}
		a, err := slack.New(cfg.Slack, cfg.Limits, engine, opts...)
		if err != nil {
			b.stop()
			return nil, err
		}
		run(a.Run, a.Ready)
	}
	if cfg.Discord.Enabled() {
		opts := []discord.Option{discord.WithLogger(log.With("adapter", "discord")), discord.WithShutdownWait(b.shutdown),
			discord.WithHTTPClient(&http.Client{Timeout: 20 * time.Second, Transport: stamped{discordT}})}
		if spec.Unlimited {
			opts = append(opts, discord.WithChannelBudget(1<<30, time.Second), discord.WithGlobalBudget(0))
		} else {
			opts = append(opts,
				discord.WithChannelBudget(discord.DefaultChannelCalls, time.Duration(float64(discord.DefaultChannelWindow)/spec.RateScale)),
				discord.WithGlobalBudget(discord.DefaultGlobalPerSec*spec.RateScale/float64(cfg.Discord.ShardCount)))
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

// sentHeader carries the moment the bot made a platform call, in Unix
// nanoseconds.
const sentHeader = "X-Loadtest-Sent"

// stamped marks each platform call with the moment the bot made it, so the
// harness can tell the latency the bot adds from its own delay in taking
// the call: on a machine shared with the fakes, their goroutines wait for
// a CPU too.
type stamped struct{ next http.RoundTripper }

func (s stamped) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not modify its request: a shallow copy with a
	// header map of its own, sharing the values (Header.Clone copied them
	// too, and was 5% of the bot's allocations under load).
	c := *r
	c.Header = make(http.Header, len(r.Header)+1)
	maps.Copy(c.Header, r.Header)
	c.Header[sentHeader] = []string{strconv.FormatInt(time.Now().UnixNano(), 10)}
	return s.next.RoundTrip(&c)
}

// stop ends the bot as cmd/bot does on SIGTERM: within the one shutdown
// deadline, answers in flight get the grace, then the adapters stop; then
// Redis is closed.
func (b *bot) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), b.shutdown)
	defer cancel()
	b.engine.Shutdown(ctx, wire.ShutdownGrace(b.shutdown))
	b.cancel()
	for _, d := range b.done {
		select {
		case err := <-d:
			if err != nil {
				b.log.Error("adapter", "err", err)
			}
		case <-ctx.Done():
			b.log.Error("an adapter did not stop by the shutdown deadline")
		}
	}
	b.rdb.Close()
	if b.stopTrace != nil {
		b.stopTrace()
	}
	if b.profile != nil {
		pprof.StopCPUProfile()
		b.profile.Close()
		b.profile = nil
	}
}

// startCPUProfile profiles the bot process until it stops.
func (b *bot) startCPUProfile(path string) error {
	f, err := startWriting(path, pprof.StartCPUProfile)
	if err != nil {
		return err
	}
	b.profile = f
	return nil
}

// startWriting creates path and starts start writing to it, closing the
// file if start fails.
func startWriting(path string, start func(io.Writer) error) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// traceSpan is how long an execution trace runs: long enough for the
// load's first turns to begin and stream, short enough to stay a file
// `go tool trace` opens.
const traceSpan = 4 * time.Second

// startTrace writes an execution trace of the bot process to path for
// span, or until the bot stops.
func (b *bot) startTrace(path string, span time.Duration) error {
	f, err := startWriting(path, trace.Start)
	if err != nil {
		return err
	}
	b.stopTrace = sync.OnceFunc(func() {
		trace.Stop()
		f.Close()
	})
	time.AfterFunc(span, b.stopTrace)
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
	"/sched/latencies:seconds",
	"/gc/cycles/total:gc-cycles",
	"/cpu/classes/gc/total:cpu-seconds",
}

// schedWait reads this process's histogram of how long runnable goroutines
// waited for a CPU.
func schedWait() []bucket {
	return buckets(metric("/sched/latencies:seconds").Float64Histogram())
}

// metric reads one of this process's runtime/metrics.
func metric(name string) metrics.Value {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value
}

func buckets(hist *metrics.Float64Histogram) []bucket {
	var out []bucket
	for i, n := range hist.Counts {
		if n > 0 {
			out = append(out, bucket{Le: hist.Buckets[i+1], N: n})
		}
	}
	return out
}

func (b *bot) snap(gc bool) snapshot {
	if gc {
		// Twice: a sync.Pool keeps what it held for one collection more, and
		// how many collections ran since a wave filled the pools depends on
		// the GC's pacing, not on what the conversations left.
		runtime.GC()
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
		GCCycles:   samples[6].Value.Uint64(),
		GCCPU:      samples[7].Value.Float64(),
		Redis:      b.rt.n.Load(),
		RedisSetup: b.rt.setup.Load(),
		RedisBeats: b.rt.beats.Load(),
		Dials:      [3]int64{b.dials[0].Load(), b.dials[1].Load(), b.dials[2].Load()},
	}
	s.usage = rusage()
	s.SchedWait = buckets(samples[5].Value.Float64Histogram())
	for _, p := range []string{conversation.PlatformSlack, conversation.PlatformDiscord} {
		var m dto.Metric
		if botmetrics.ActiveStreams.WithLabelValues(p).Write(&m) == nil {
			s.Streams += int(m.GetGauge().GetValue())
		}
	}
	return s
}

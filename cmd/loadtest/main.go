// Command loadtest measures the bot under load on one machine.
//
//	go run ./cmd/loadtest [-conversations 1000] [-turns 3] [-platform both]
//	    [-ttft 500ms] [-ttft-jitter 0.5] [-token-interval 25ms] [-tokens 120]
//	    [-ramp 1s] [-warmup -1] [-echo] [-churn 0] [-ratelimits [-ratelimit-scale 1]] [-channels 0] [-redis redis://host:6379/0]
//	    [-json report.json] [-cpuprofile cpu.pprof] [-memprofile heap.pprof]
//	    [-harness-cpuprofile harness.pprof] [-trace trace.out] [-timeline]
//	    [-max-starting -1] [-harness-procs 1] [-timeout 110s]
//
// On 127.0.0.1 only, it starts a fake Ark streaming at the given pace, fake
// Slack and Discord APIs (their rate limits emulated with -ratelimits) and a
// Redis server (embedded, unless -redis names a real one), then runs the bot
// in a process of its own, wired as cmd/bot wires it: Ark client, engine,
// Redis store, Slack adapter in Socket Mode, Discord adapter on the gateway.
// N users then talk to it, each beginning at a random moment within -ramp,
// M turns each: on Slack in a thread of a channel of its own (or of one of
// -channels channels of the workspace), on Discord in a thread of its own; the first message mentions the bot, the follow-ups
// don't. -ramp 0 -ttft-jitter 0 is the worst case: everything in lockstep.
//
// Before the measured load, a warm-up wave of as many other new
// conversations, one turn each (-warmup; 2 with -ratelimits), gives the bot
// process what one that has served before has: connections in its pools, a
// heap and stacks grown to size. The warm-up's own figures, a fresh
// process's first burst, are reported apart as the cold start.
//
// As on Slack and Discord, the bot hears of its own posts and edits: the
// fakes send each back to it as an event (a message or message_changed
// event over Socket Mode, MESSAGE_CREATE or MESSAGE_UPDATE on the
// gateway), which it must read, decode and drop; -echo=false leaves them
// out.
//
// With -churn d, every d of the measured load the fakes replace the bot's
// event connections as Slack and Discord do now and then: Slack asks for a
// new Socket Mode connection and closes the old one a grace later (half of
// d, at most 10 s), Discord sends RECONNECT and the bot resumes its session.
// No answer may be lost to it. As Slack does, the fake Slack sends an event
// not acknowledged within 2 s again (an event written to a connection as it
// closed, or sent while none was open), and the report counts them.
//
// It prints a table (and with -json writes it): the latency the bot adds
// between the fake Ark writing an answer's first token and the first
// platform call showing it, the time from a message to the first sign of
// life and to the whole answer, platform calls and 429s per answer, answers
// completed, turns found in Redis word for word, the bot process's CPU per
// 1,000 tokens, allocations per token, peak RSS, how long its goroutines
// waited for a CPU, Redis round trips per turn, and which of the issue's
// targets are met. Without -ratelimits a memory probe follows: as many new
// conversations again, one turn each, measure the heap and goroutines per
// active stream and the heap a finished conversation leaves behind.
// -cpuprofile profiles the bot process during the load, -memprofile takes
// its heap at the probe's busiest moment, -trace writes an execution trace
// of the bot process for the load's first seconds, -harness-cpuprofile
// profiles this process (fakes and simulated users) during the load.
// -max-starting sets the bot's server.max_starting, to weigh a
// burst's signs of life against the pace of the answers already streaming.
// -timeline also prints the added latency per quarter second of the cold
// start and of the load. -harness-procs is how many CPUs this process may use
// at once (default 1, 0 for all); the bot process always has all.
//
// Without -ratelimits the adapters' own rate budgets are off too, as on a
// platform without limits, so latency is the bot's own; with it, the fakes
// enforce Slack's tiers and Discord's 5 per 5 s per channel and the adapters
// use their production budgets, both sped up by -ratelimit-scale.
//
// It exits 1 when an answer or a turn is lost, or a 429 arrives with rate
// limits on; 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arrival"
)

func main() {
	if os.Getenv(roleEnv) == "bot" {
		os.Exit(runBot(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command's flags.
type options struct {
	conversations, turns int
	platform             string
	ttft, tokenInterval  time.Duration
	ttftJitter           float64
	ramp                 time.Duration
	warmup               int
	tokens               int
	ratelimits           bool
	channels             int
	echo                 bool
	churn                time.Duration
	rateScale            float64
	redisURL             string
	slackEdit            time.Duration
	discordEdit          time.Duration
	timeout              time.Duration
	jsonPath             string
	cpuProfile           string
	memProfile           string
	harnessProfile       string
	trace                string
	timeline             bool
	maxStarting          int
	harnessProcs         int
	botLog               string
	logLevel             string
	flags                map[string]any // every flag's value, for the report
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.conversations, "conversations", 1000, "conversations at once, split between the platforms")
	fs.IntVar(&o.turns, "turns", 3, "turns (question and answer) per conversation")
	fs.StringVar(&o.platform, "platform", "both", "slack, discord or both")
	fs.DurationVar(&o.ttft, "ttft", 500*time.Millisecond, "the fake Ark's time to first token")
	fs.DurationVar(&o.tokenInterval, "token-interval", 25*time.Millisecond, "the fake Ark's time between tokens")
	fs.Float64Var(&o.ttftJitter, "ttft-jitter", 0.5, "each answer's time to first token is -ttft times 1±this, at random (0: all alike)")
	fs.DurationVar(&o.ramp, "ramp", time.Second, "the conversations begin at random moments within this span (0: all at once)")
	fs.IntVar(&o.warmup, "warmup", -1, "new conversations, one turn each, warming the bot up before the measured load (reported as its cold start; -1: as many as -conversations, or 2 with -ratelimits)")
	fs.IntVar(&o.tokens, "tokens", 120, "tokens (words) per answer")
	fs.BoolVar(&o.echo, "echo", true, "the fakes send the bot its own posts and edits back as events, as Slack and Discord do (false: leave that cost out)")
	fs.DurationVar(&o.churn, "churn", 0, "replace the bot's event connections this often during the load, as Slack (a refresh) and Discord (RECONNECT) do now and then (0: never)")
	fs.BoolVar(&o.ratelimits, "ratelimits", false, "emulate Slack's and Discord's rate limits, and use the adapters' budgets")
	fs.IntVar(&o.channels, "channels", 0, "the conversations share this many channels: on Slack of the one workspace, each in a thread of its own; on Discord each a mention answered in the channel (with -turns 1) (0: a channel or Discord thread each)")
	fs.Float64Var(&o.rateScale, "ratelimit-scale", 1, "with -ratelimits, multiply every platform rate (fakes and budgets) by this, to compress time")
	fs.StringVar(&o.redisURL, "redis", "", "a Redis server to use (redis://host:port/db); empty: an embedded one")
	fs.DurationVar(&o.slackEdit, "slack-edit-interval", time.Second, "slack.edit_interval: the least time between two renders of an answer")
	fs.DurationVar(&o.discordEdit, "discord-edit-interval", 1200*time.Millisecond, "discord.edit_interval")
	fs.DurationVar(&o.timeout, "timeout", 110*time.Second, "stop everything after this long")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report to this JSON file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the bot process during the load to this file")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace of the bot process during the load's first 4 s to this file (go tool trace)")
	fs.StringVar(&o.harnessProfile, "harness-cpuprofile", "", "write a CPU profile of this process (the fakes and the simulated users) during the load to this file")
	fs.IntVar(&o.maxStarting, "max-starting", -1, "the bot's server.max_starting: answers set up at once (-1: its default, 8 per CPU; 0: no limit)")
	fs.IntVar(&o.harnessProcs, "harness-procs", 1, "how many CPUs this process (the fakes and the simulated users) may use at once, its GOMAXPROCS; the bot process keeps all (0: all here too)")
	fs.BoolVar(&o.timeline, "timeline", false, "also print the added latency per quarter second of the cold start and of the load (to line up with GODEBUG=gctrace=1)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the bot process at the busiest moment to this file")
	fs.StringVar(&o.botLog, "botlog", "", "write the bot's log here (default: a temporary file)")
	fs.StringVar(&o.logLevel, "loglevel", "warn", "the bot's log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.warmup == -1 {
		// Under rate limits a warm-up would only double the run: what it
		// measures is 429s and complete answers, not latency.
		o.warmup = o.conversations
		if o.ratelimits {
			o.warmup = min(o.conversations, 2)
		}
	}
	switch {
	case o.platform != "slack" && o.platform != "discord" && o.platform != "both":
		return o, fmt.Errorf("-platform must be slack, discord or both, not %q", o.platform)
	case o.conversations < 1 || o.conversations > 100000:
		return o, errors.New("-conversations must be 1 to 100000")
	case o.turns < 1 || o.turns > 100:
		return o, errors.New("-turns must be 1 to 100")
	case o.tokens < 1 || o.tokens > 250:
		return o, errors.New("-tokens must be 1 to 250 (an answer stays one Discord message)")
	case o.churn < 0:
		return o, errors.New("-churn must be 0 (never) or a positive interval")
	case o.warmup < -1 || o.warmup > 100000:
		return o, errors.New("-warmup must be -1 (as many as -conversations) or 0 to 100000")
	case o.ttftJitter < 0 || o.ttftJitter > 1:
		return o, errors.New("-ttft-jitter must be 0 to 1")
	case o.maxStarting < -1:
		return o, errors.New("-max-starting must be -1 (the bot's default), 0 (no limit) or more")
	case o.ttft < 0 || o.tokenInterval < 0 || o.ramp < 0 || o.slackEdit < 0 || o.discordEdit < 0:
		return o, errors.New("durations must not be negative")
	case o.harnessProcs < 0:
		return o, errors.New("-harness-procs must not be negative")
	case o.channels < 0:
		return o, errors.New("-channels must be 0 (a channel each) or more")
	case o.channels > 0 && o.platform != "slack" && o.turns != 1:
		return o, errors.New("-channels with Discord conversations needs -turns 1 (each is a mention in a shared channel)")
	case o.rateScale <= 0:
		return o, errors.New("-ratelimit-scale must be positive")
	case o.timeout < 10*time.Second:
		return o, errors.New("-timeout must be at least 10s")
	}
	o.flags = map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			switch v := g.Get().(type) {
			case time.Duration:
				o.flags[f.Name] = v.String()
			default:
				o.flags[f.Name] = v
			}
		}
	})
	return o, nil
}

// newRand gives each conversation its own random numbers, the same in
// every run.
func newRand(phase, platform, i int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(phase)<<32|uint64(platform), uint64(i)))
}

// discordChannel is Discord conversation i's thread, or with -channels
// the text channel it shares.
func discordChannel(o options, digit, i int) string {
	if o.channels > 0 {
		return fmt.Sprintf("94%d%015d", digit, channelOf(o, i))
	}
	return fmt.Sprintf("92%d%015d", digit, i)
}

// channelOf is the number of conversation i's channel.
func channelOf(o options, i int) int {
	if o.channels > 0 {
		return i % o.channels
	}
	return i
}

// convSet is the simulated users of one phase.
type convSet struct {
	all            []*conv
	slack, discord int
}

// makeConvs lays out n conversations split between the platforms; prefix
// tells phases apart in IDs ("" for the measured load, "p" for the memory
// probe), counted marks the measured load's.
func makeConvs(o options, n int, prefix string, counted bool) convSet {
	var cs convSet
	switch o.platform {
	case "slack":
		cs.slack = n
	case "discord":
		cs.discord = n
	default:
		cs.slack, cs.discord = (n+1)/2, n/2
	}
	digit := map[string]int{"": 0, "p": 1, "w": 2}[prefix]
	for i := range cs.slack {
		cs.all = append(cs.all, &conv{id: fmt.Sprintf("%ss%d", prefix, i), platform: platformSlack, counted: counted,
			channel: fmt.Sprintf("C%d%07d", digit, channelOf(o, i)), user: fmt.Sprintf("U%d%07d", digit, i), rand: newRand(digit, 0, i)})
	}
	for i := range cs.discord {
		cs.all = append(cs.all, &conv{id: fmt.Sprintf("%sd%d", prefix, i), platform: platformDiscord, counted: counted,
			channel: discordChannel(o, digit, i), user: fmt.Sprintf("93%d%015d", digit, i), rand: newRand(digit, 1, i)})
	}
	return cs
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "loadtest:", err)
		}
		return 2
	}
	// The harness's garbage collections would delay the fakes' timestamps,
	// counting as the bot's latency, and take CPU from it: it collects less
	// often, with memory to spare, and not at all during the measured load
	// (see pauseGC). The bot process runs with cmd/bot's GC setting
	// (wire.DefaultGOGC, or GOGC if set).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// The fakes stand in for services on other machines, but here they share
	// the bot's CPUs: with as many threads as the bot running at once, the
	// kernel time-slices the bot's between theirs and a first token waits
	// milliseconds for its thread's turn. One CPU for the fakes (enough for
	// the default load, whose answers keep their pace) leaves the bot at
	// least the other, and both whenever the fakes idle.
	if o.harnessProcs > 0 {
		runtime.GOMAXPROCS(o.harnessProcs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := load(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	r.print(stdout, o.timeline)
	if o.jsonPath != "" {
		if err := r.writeJSON(o.jsonPath); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 1
		}
	}
	if len(r.Failures) > 0 {
		return 1
	}
	return 0
}

// progress prints a line to stderr, for the impatient.
func progress(w io.Writer, start time.Time, format string, args ...any) {
	fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// load runs the whole test and measures it.
func load(ctx context.Context, o options, stderr io.Writer) (*result, error) {
	start := time.Now()
	loadSet := makeConvs(o, o.conversations, "", true)
	probeSet := makeConvs(o, o.conversations, "p", false)
	warmSet := makeConvs(o, o.warmup, "w", false)
	all := append(append(append([]*conv(nil), loadSet.all...), probeSet.all...), warmSet.all...)
	h, err := startFakes(o, all)
	if err != nil {
		return nil, err
	}
	defer h.close()
	logPath := o.botLog
	if logPath == "" {
		f, err := os.CreateTemp("", "arkbot-loadtest-*.log")
		if err != nil {
			return nil, err
		}
		logPath = f.Name()
		f.Close()
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	if err := h.startBot(ctx, max(loadSet.slack, warmSet.slack), max(loadSet.discord, warmSet.discord), logFile); err != nil {
		return nil, fmt.Errorf("%w (bot log: %s)", err, logPath)
	}
	progress(stderr, start, "bot connected (Slack %d, Discord %d conversations); warming up with %d more x 1 turn", loadSet.slack, loadSet.discord, len(warmSet.all))

	// The warm-up: the fresh process's first burst, measured as such.
	fresh, err := h.bot.snap(false, "")
	if err != nil {
		return nil, err
	}
	wctx, wcancel := context.WithTimeout(ctx, max(45*time.Second, o.timeout/4))
	warmLaunch := time.Now()
	h.run(wctx, warmSet.all, 1, nil, nil)
	wcancel()
	base, err := h.bot.snap(true, "")
	if err != nil {
		return nil, err
	}
	cold := coldStart(warmSet.all, fresh, base)
	if o.timeline {
		cold.Timeline = timeline(warmSet.all, warmLaunch)
	}
	if o.cpuProfile != "" {
		var s snapshot
		if err := h.bot.exchange(command{Cmd: "cpuprofile", Path: o.cpuProfile}, &s, 10*time.Second); err != nil || s.Err != "" {
			return nil, fmt.Errorf("cpu profile: %v %s", err, s.Err)
		}
	}
	if o.trace != "" {
		var s snapshot
		if err := h.bot.exchange(command{Cmd: "trace", Path: o.trace}, &s, 10*time.Second); err != nil || s.Err != "" {
			return nil, fmt.Errorf("trace: %v %s", err, s.Err)
		}
	}
	if o.harnessProfile != "" {
		f, err := os.Create(o.harnessProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	resumeGC := pauseGC(len(loadSet.all) * o.turns)
	harnessUse := rusage()
	harnessWait := schedWait()
	harnessGCs := gcCycles()

	// The measured load: every conversation at once, until done or 15 s
	// before the timeout. Without rate limits the memory probe follows, so
	// the load stops 15 s earlier still to leave it time.
	reserve := 15 * time.Second
	if !o.ratelimits {
		reserve += 15 * time.Second
	}
	dctx, dcancel := context.WithDeadline(ctx, deadlineOf(ctx, o.timeout).Add(-reserve))
	defer dcancel()
	progress(stderr, start, "%d conversations x %d turns starting", len(loadSet.all), o.turns)
	h.stats.measuring.Store(true)
	launch := time.Now()
	var atMid func() // with rate limits there is no probe: profile the heap here
	if o.ratelimits && o.memProfile != "" {
		atMid = func() {
			if _, err := h.bot.snap(true, o.memProfile); err != nil {
				progress(stderr, start, "heap profile: %v", err)
			}
		}
	}
	stopChurn := h.churn(o.churn)
	h.run(dctx, loadSet.all, o.turns, func(finished int) {
		if s, err := h.bot.snap(false, ""); err == nil {
			progress(stderr, start, "%d/%d conversations finished, %d answers streaming", finished, len(loadSet.all), s.Streams)
		}
	}, atMid)
	churns := stopChurn()
	wall := time.Since(launch)
	if o.harnessProfile != "" {
		pprof.StopCPUProfile()
	}
	h.stats.measuring.Store(false)
	end, err := h.bot.snap(false, "")
	if err != nil {
		return nil, err
	}
	harnessEnd := rusage()
	harnessGCs = gcCycles() - harnessGCs
	resumeGC()
	progress(stderr, start, "load done in %.1fs", wall.Seconds())
	r := &result{Options: o.flags, WallSeconds: wall.Seconds(), Tokens: h.stats.tokens.Load(), BotLog: logPath, Cold: cold, Churns: churns, Redelivered: h.fs.Redelivered(),
		CPUSeconds: end.CPU - base.CPU, SysCPUSeconds: end.SysCPU - base.SysCPU, Faults: end.Faults - base.Faults,
		HarnessCPU: harnessEnd.CPU - harnessUse.CPU, HarnessFaults: harnessEnd.Faults - harnessUse.Faults, HarnessGCs: harnessGCs, KernelStamps: arrival.Stamped()}
	if r.Tokens > 0 {
		r.CPUPer1kTok = r.CPUSeconds / float64(r.Tokens) * 1000
		r.AllocPerToken = float64(end.Allocs-base.Allocs) / float64(r.Tokens)
		r.ObjsPerToken = float64(end.AllocObjs-base.AllocObjs) / float64(r.Tokens)
	}
	r.SchedWaitP50, r.SchedWaitP99 = quantile(base.SchedWait, end.SchedWait, 0.5), quantile(base.SchedWait, end.SchedWait, 0.99)
	hw := schedWait()
	r.HarnessWaitP50, r.HarnessWaitP99 = quantile(harnessWait, hw, 0.5), quantile(harnessWait, hw, 0.99)
	r.GCCycles, r.GCCPUSeconds = end.GCCycles-base.GCCycles, end.GCCPU-base.GCCPU
	found := h.verify(context.WithoutCancel(ctx), loadSet.all)
	r.RedisHandshakes, r.RedisHeartbeats = end.RedisSetup-base.RedisSetup, end.RedisBeats-base.RedisBeats
	for i := range r.Dials {
		r.Dials[i] = end.Dials[i] - base.Dials[i]
	}
	r.results(h, loadSet.all, found, end.Redis-base.Redis)
	r.Timeline = timeline(loadSet.all, launch)

	if !o.ratelimits {
		if err := h.probe(ctx, r, probeSet, stderr, start); err != nil {
			r.Failures = append(r.Failures, "memory probe: "+err.Error())
		}
	}
	last, stopErr := h.bot.stop()
	if stopErr != nil {
		r.Failures = append(r.Failures, "stopping the bot: "+stopErr.Error())
	}
	r.PeakRSS = max(last.MaxRSS, end.MaxRSS)
	h.cleanRedis(context.WithoutCancel(ctx))
	r.BotLogWarnings, r.BotLogFirstLines = logSummary(logPath)
	r.judge(o)
	return r, nil
}

// pauseGC stops this process's garbage collection for the measured load,
// unless GOGC is set: the fakes stand in for services on other machines, and
// their collections would take CPU from the bot and stall the fakes'
// timestamps. A memory limit makes it collect all the same should a large
// load outgrow it (the report counts those collections). The returned func
// restores collection. Before pausing it maps the heap the load will take
// (see prefault).
func pauseGC(convTurns int) (resume func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	prefault(min(int64(convTurns)*prefaultPerTurn, harnessMemLimit/2))
	runtime.GC()
	limit := debug.SetMemoryLimit(-1)
	debug.SetMemoryLimit(harnessMemLimit)
	percent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// prefault allocates n bytes, touches every page and drops them for the
// collection that follows to free: with collection paused, everything the
// fakes allocate during the load is new heap, and without this each new
// page cost the harness a page fault in the middle of the load (63,000 at
// the default size, measured; about 2,400 with it), CPU taken from the bot
// on a shared machine. The freed pages stay mapped: the scavenger leaves
// memory alone below the memory limit while GOGC is off.
func prefault(n int64) {
	page := os.Getpagesize()
	chunks := make([][]byte, 0, n>>20+1)
	for ; n > 0; n -= 1 << 20 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		chunks = append(chunks, b)
	}
	runtime.KeepAlive(chunks)
}

// prefaultPerTurn is the heap the harness maps ahead per conversation turn
// of the load: the default load allocates about 85 KiB per turn.
const prefaultPerTurn = 96 << 10

// harnessMemLimit bounds the harness's memory while its collection is
// paused: the default load takes about half of it.
const harnessMemLimit = 1 << 30

// gcCycles is how many garbage collections this process has finished.
func gcCycles() uint64 { return metric("/gc/cycles/total:gc-cycles").Uint64() }

// probe measures memory with a second wave of conversations, one turn each,
// as many at once as the load had: the connection pools and caches have
// grown already, so the heap added at the wave's busiest moment is the
// streams' own, and the heap left after it is what finished conversations
// cost.
func (h *harness) probe(ctx context.Context, r *result, set convSet, stderr io.Writer, start time.Time) error {
	idle, err := h.idle()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithDeadline(ctx, deadlineOf(ctx, h.opts.timeout).Add(-15*time.Second))
	defer cancel()
	progress(stderr, start, "memory probe: %d more conversations x 1 turn", len(set.all))
	var peak snapshot
	peakErr := errors.New("the probe ended before its busiest moment")
	h.run(pctx, set.all, 1, nil, func() { peak, peakErr = h.bot.snap(true, h.opts.memProfile) })
	after, err := h.idle()
	if err != nil {
		return err
	}
	found := h.verify(context.WithoutCancel(ctx), set.all)
	p := &r.Probe
	p.Conversations = len(set.all)
	for _, c := range set.all {
		c.mu.Lock()
		for _, t := range c.turns {
			if !t.final.IsZero() {
				p.Completed++
			}
		}
		c.mu.Unlock()
		p.TurnsFound += found[c]
	}
	if p.Completed != p.Conversations || p.TurnsFound != 2*p.Conversations {
		return fmt.Errorf("%d of %d answers completed, %d of %d turns in Redis", p.Completed, p.Conversations, p.TurnsFound, 2*p.Conversations)
	}
	if peakErr != nil {
		return peakErr
	}
	if peak.Streams > 0 {
		p.Streams = peak.Streams
		p.HeapPerStream = (float64(peak.Live) - float64(idle.Live)) / float64(peak.Streams)
		p.StackPerStream = (float64(peak.Stacks) - float64(idle.Stacks)) / float64(peak.Streams)
		p.GoroutinesPerStream = float64(peak.Goroutines-idle.Goroutines) / float64(peak.Streams)
	}
	p.IdleHeapPerConv = (float64(after.Live) - float64(idle.Live)) / float64(p.Conversations)
	p.Measured = true
	return nil
}

// run plays the conversations, each beginning at a random moment within
// -ramp, turns each, and returns when they are done or ctx ends (they stop
// at once then). Every 5 s it calls
// every, if set, with how many have finished; at the middle of the first
// answers it calls atMid, if set.
func (h *harness) run(ctx context.Context, convs []*conv, turns int, every func(finished int), atMid func()) {
	done := make(chan struct{}, len(convs))
	for _, c := range convs {
		go func() {
			defer func() { done <- struct{}{} }()
			if wait := time.Duration(c.rand.Int64N(int64(h.opts.ramp) + 1)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
			h.converse(ctx, c, turns)
		}()
	}
	mid := time.Now().Add(h.opts.ramp/2 + h.opts.ttft + time.Duration(h.opts.tokens)*h.opts.tokenInterval/2)
	report := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for finished := 0; finished < len(convs); {
		select {
		case <-done:
			finished++
			continue
		case <-tick.C:
		}
		if atMid != nil && time.Now().After(mid) {
			atMid()
			atMid = nil
		}
		if every != nil && time.Now().After(report) {
			report = time.Now().Add(5 * time.Second)
			every(finished)
		}
	}
}

// idle waits (up to 5 s) until nothing streams, and takes a snapshot after
// closing idle HTTP connections (pooled for the next answers, they expire
// by themselves) and a GC.
func (h *harness) idle() (snapshot, error) {
	for range 50 {
		s, err := h.bot.snap(false, "")
		if err != nil || s.Streams == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h.bot.do(command{Cmd: "snap", GC: true, CloseIdle: true})
}

// samples are the durations measured in some conversations' turns.
type samples struct {
	started, completed                 int
	added, made, handled, sign, answer []time.Duration
	afterLast                          []time.Duration // the whole answer visible after Ark wrote its last token
	renders                            []int           // intermediate renders per completed answer
	begin, end                         time.Time       // the first question, the last answer complete
	interval                           time.Duration   // the fake Ark's time between tokens
}

// add takes in c's turns and returns why c stopped early, if it did.
func (m *samples) add(c *conv) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.turns {
		m.started++
		if m.begin.IsZero() || t.event.Before(m.begin) {
			m.begin = t.event
		}
		if !t.final.IsZero() {
			m.completed++
			m.answer = append(m.answer, t.final.Sub(t.event))
			m.renders = append(m.renders, max(t.renders-1, 0))
			if t.final.After(m.end) {
				m.end = t.final
			}
			if !t.first.IsZero() {
				last := t.first.Add(time.Duration(len(t.tokens)-1) * m.interval)
				m.afterLast = append(m.afterLast, t.final.Sub(last))
			}
		}
		if !t.sign.IsZero() {
			m.sign = append(m.sign, t.sign.Sub(t.event))
		}
		if !t.shown.IsZero() && !t.first.IsZero() {
			m.added = append(m.added, t.shown.Sub(t.first))
			m.handled = append(m.handled, t.handled.Sub(t.first))
			if !t.sent.IsZero() {
				m.made = append(m.made, t.sent.Sub(t.first))
			}
		}
	}
	return c.err
}

// coldStart sums up the warm-up wave from the bot's snapshots before and
// after it.
func coldStart(convs []*conv, before, after snapshot) coldResult {
	var m samples
	for _, c := range convs {
		_ = m.add(c) // a conversation that stopped early shows as incomplete
	}
	cr := coldResult{Conversations: len(convs), Completed: m.completed,
		AddedLatency: summarize(m.added), SignOfLife: summarize(m.sign),
		CPUSeconds: after.CPU - before.CPU, Faults: after.Faults - before.Faults}
	for i := range cr.Dials {
		cr.Dials[i] = after.Dials[i] - before.Dials[i]
	}
	return cr
}

// results fills in the per-platform figures.
func (r *result) results(h *harness, measured []*conv, found map[*conv]int, redisTrips int64) {
	answered := 0
	for _, p := range []string{platformSlack, platformDiscord} {
		pr := platformResult{Platform: p}
		m := samples{interval: h.opts.tokenInterval}
		for _, c := range measured {
			if c.platform != p {
				continue
			}
			pr.Conversations++
			if err := m.add(c); err != nil {
				r.Failures = append(r.Failures, fmt.Sprintf("conversation %s: %v", c.id, err))
			}
			pr.TurnsFound += found[c]
		}
		if pr.Conversations == 0 {
			continue
		}
		pr.Started, pr.Completed, pr.TurnsExpected = m.started, m.completed, 2*m.started
		answered += pr.Started
		pr.AddedLatency, pr.CallLatency, pr.HandledLatency = summarize(m.added), summarize(m.made), summarize(m.handled)
		pr.SignOfLife, pr.AnswerTime, pr.AfterLast = summarize(m.sign), summarize(m.answer), summarize(m.afterLast)
		if len(m.renders) > 0 {
			pr.MinRenders = slices.Min(m.renders)
			sum := 0
			for _, n := range m.renders {
				sum += n
			}
			pr.Renders = float64(sum) / float64(len(m.renders))
		}
		if span := m.end.Sub(m.begin); span > 0 {
			pr.PerMinute = float64(m.completed) / span.Minutes()
		}
		h.stats.mu.Lock()
		pr.Calls = h.stats.calls[p]
		pr.RateLimited = h.stats.limited[p]
		h.stats.mu.Unlock()
		kinds := map[string]int{}
		for m, n := range pr.Calls {
			kinds[classify(p, m)] += n
		}
		per := func(n int) float64 { return float64(n) / float64(max(pr.Completed, 1)) }
		pr.Posts, pr.Edits, pr.Appends, pr.Other = per(kinds["posts"]), per(kinds["edits"]), per(kinds["appends"]), per(kinds["other"])
		want := pr.Conversations * h.opts.turns
		if pr.Started != want || pr.Completed != pr.Started {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d of %d answers completed", p, pr.Completed, want))
		}
		if pr.TurnsFound != 2*want {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d of %d turns in Redis (%d lost)", p, pr.TurnsFound, 2*want, 2*want-pr.TurnsFound))
		}
		if h.opts.ratelimits && pr.RateLimited > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d responses were 429 with rate limits emulated", p, pr.RateLimited))
		}
		r.Platforms = append(r.Platforms, pr)
	}
	if answered > 0 {
		r.RedisPerTurn = float64(redisTrips) / float64(answered)
	}
}

// judge checks the targets.
func (r *result) judge(o options) {
	if c := r.Cold; c.Completed != c.Conversations {
		r.Failures = append(r.Failures, fmt.Sprintf("warm-up: %d of %d answers completed", c.Completed, c.Conversations))
	}
	var p99 float64
	all, lost := 0, 0
	limited := 0
	complete := true
	for _, p := range r.Platforms {
		p99 = max(p99, p.AddedLatency.P99)
		all += p.Started
		lost += p.TurnsExpected - p.TurnsFound
		limited += p.RateLimited
		complete = complete && p.Completed == p.Started && p.Started == p.Conversations*o.turns
	}
	r.Targets = []target{
		{"p99 added latency <= 25 ms (rate limits off)", !o.ratelimits, p99 <= 25, fmt.Sprintf("%.1f ms", p99)},
		{"all answers complete", true, complete, fmt.Sprintf("%d answers", all)},
		{"no turn lost", true, lost == 0, fmt.Sprintf("%d lost", lost)},
		{"zero 429s (rate limits on)", o.ratelimits, limited == 0, fmt.Sprintf("%d", limited)},
		{"<= 4 Redis round trips per turn", true, r.RedisPerTurn <= 4, fmt.Sprintf("%.2f", r.RedisPerTurn)},
		{"<= 64 KiB heap per active stream (memory probe)", r.Probe.Measured, r.Probe.HeapPerStream <= 64<<10, fmt.Sprintf("%.1f KiB", r.Probe.HeapPerStream/1024)},
		{"idle conversations cost no memory in the process (memory probe: caches only, <= 1 KiB each)", r.Probe.Measured, r.Probe.IdleHeapPerConv <= 1024, fmt.Sprintf("%.0f B", r.Probe.IdleHeapPerConv)},
	}
}

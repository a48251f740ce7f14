package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// latency summarizes durations in milliseconds.
type latency struct {
	N   int
	P50 float64
	P99 float64
	Max float64
}

func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return latency{N: len(ds), P50: ms(at(0.50)), P99: ms(at(0.99)), Max: ms(ds[len(ds)-1])}
}

// window is the added latency of the answers whose first token came in one
// quarter second of the load, beginning At seconds into it: a spike lines
// up with what happened then (a GC in GODEBUG=gctrace=1, a burst of turns).
type window struct {
	At      float64
	Latency latency
}

func timeline(convs []*conv, launch time.Time) []window {
	const width = 250 * time.Millisecond
	by := map[int][]time.Duration{}
	last := 0
	for _, c := range convs {
		c.mu.Lock()
		for _, t := range c.turns {
			if !t.shown.IsZero() && !t.first.IsZero() {
				k := int(t.first.Sub(launch) / width)
				by[k] = append(by[k], t.shown.Sub(t.first))
				last = max(last, k)
			}
		}
		c.mu.Unlock()
	}
	var ws []window
	for k := 0; k <= last; k++ {
		if ds := by[k]; len(ds) > 0 {
			ws = append(ws, window{At: (time.Duration(k) * width).Seconds(), Latency: summarize(ds)})
		}
	}
	return ws
}

func printTimeline(w io.Writer, of string, ws []window) {
	if len(ws) == 0 {
		return
	}
	fmt.Fprintf(w, "\nadded latency by when the first token came (s into %s: answers, p50/p99/max ms):\n", of)
	for _, win := range ws {
		l := win.Latency
		fmt.Fprintf(w, "  %6.2f  %4d  %.1f / %.1f / %.1f\n", win.At, l.N, l.P50, l.P99, l.Max)
	}
}

// platformResult is what one platform's conversations measured.
type platformResult struct {
	Platform      string
	Conversations int
	Started       int // answers asked for
	Completed     int // answers whose whole text became visible
	TurnsExpected int // 2 per answer asked for
	TurnsFound    int // in Redis, word for word
	// AddedLatency runs from the fake Ark writing the first token to the
	// first platform call showing it reaching the fake's socket (the
	// kernel's receive timestamp where result.KernelStamps, else the fake's
	// handler taking it; see internal/arrival); SignOfLife from the user's message to
	// the first visible reaction; AnswerTime from the message to the whole
	// answer visible.
	AddedLatency, SignOfLife, AnswerTime latency
	// AfterLast runs from the fake Ark writing the answer's last token to
	// the whole answer visible.
	AfterLast latency
	// Intermediate renders (calls showing the answer's text before the
	// one that completes it) per answer: the mean and the fewest.
	Renders    float64
	MinRenders int
	// PerMinute is answers completed per minute, from the first question
	// to the last answer complete.
	PerMinute float64
	// CallLatency runs from the fake Ark writing the first token to the
	// bot making the platform call showing it, as the bot's HTTP client
	// stamps it: AddedLatency without the fakes' own wait to take the call.
	CallLatency latency
	// HandledLatency runs to the fake's handler taking that call:
	// AddedLatency plus the harness's own wait for a CPU.
	HandledLatency latency
	// Per completed answer.
	Posts, Edits, Appends, Other float64
	RateLimited                  int            // 429s, all the run
	Calls                        map[string]int // by method, during the measured load
}

// result is the whole report, also written with -json.
type result struct {
	Options       map[string]any
	WallSeconds   float64 // the measured load, from the first message to the last answer
	Platforms     []platformResult
	Tokens        int64   // streamed by the fake Ark in measured answers
	CPUSeconds    float64 // the bot process's, during the measured load
	SysCPUSeconds float64 // of which in the kernel (system calls, page faults)
	Faults        int64   // the bot process's page faults during the load
	CPUPer1kTok   float64 // CPU seconds per 1,000 streamed tokens
	AllocPerToken float64 // heap bytes allocated per token
	ObjsPerToken  float64 // heap objects allocated per token
	PeakRSS       int64   // bytes
	// In the bot process during the load: how long runnable goroutines
	// waited for a CPU (ms), and garbage collection.
	SchedWaitP50, SchedWaitP99 float64
	// The same in the harness: it delays the fakes' events and their
	// handlers, not the arrival stamps of calls.
	HarnessWaitP50, HarnessWaitP99 float64
	GCCycles                       uint64
	GCCPUSeconds                   float64
	Cold                           coldResult // the warm-up wave
	Probe                          probeResult
	Timeline                       []window // added latency over the load
	RedisPerTurn                   float64  // Redis round trips per answered turn
	RedisHandshakes                int64    // not counted in it: handshakes of new pooled connections
	RedisHeartbeats                int64    // nor timed commands: the replica count's heartbeats (one per 10 s), looks for stored tidy jobs (one a second)
	Dials                          [3]int64 // HTTP connections the bot opened to Ark, Slack and Discord
	Churns                         int      // times the event connections were replaced during the load (-churn)
	Redelivered                    int64    // Slack events sent again, not acknowledged in time (as Slack does), until the load's end
	HarnessCPU                     float64  // the harness's CPU seconds (fakes and driver), for context
	HarnessFaults                  int64    // its page faults during the load
	HarnessGCs                     uint64   // its garbage collections during the load (0 unless its heap hit the limit)
	KernelStamps                   bool     // calls' arrival is the kernel's receive timestamp, not the handler's clock
	Targets                        []target
	Failures                       []string // why the run failed, if it did
	BotLog                         string
	BotLogWarnings                 int
	BotLogFirstLines               []string
}

// coldResult is the warm-up wave: a fresh bot process's first burst, as
// many new conversations as -warmup, one turn each, before the measured
// load. A bot that has been idle for minutes meets its next burst much the
// same way: its pooled connections expired, its heap given back.
type coldResult struct {
	Conversations int
	Completed     int
	AddedLatency  latency
	SignOfLife    latency
	CPUSeconds    float64  // the bot process's, during the wave
	Faults        int64    // its page faults during the wave
	Dials         [3]int64 // HTTP connections it opened to Ark, Slack and Discord
	Timeline      []window // with -timeline: by when the first token came, s into the wave
}

// probeResult is the memory probe: a second wave of as many conversations,
// one turn each, after the load (without rate limits only).
type probeResult struct {
	Measured      bool
	Conversations int
	Completed     int
	TurnsFound    int
	// At the wave's busiest moment, after a GC, per streaming answer: the
	// live heap, goroutine stack and goroutines added since before the wave.
	Streams             int
	HeapPerStream       float64
	StackPerStream      float64
	GoroutinesPerStream float64
	// Live heap left per finished conversation once the wave is over.
	IdleHeapPerConv float64
}

type target struct {
	Name    string
	Applies bool
	Met     bool
	Value   string
}

// classify sorts a platform method into posts, edits, appends or other.
func classify(platform, method string) string {
	switch platform + " " + method {
	case "slack chat.postMessage", "slack chat.startStream", "discord POST " + routeMessages:
		return "posts"
	case "slack chat.update", "discord PATCH " + routeMessage:
		return "edits"
	case "slack chat.appendStream", "slack chat.stopStream":
		return "appends"
	}
	return "other"
}

// quantile returns the q-quantile (ms) of the values added to a histogram
// between two snapshots of it.
func quantile(before, after []bucket, q float64) float64 {
	counts := map[float64]uint64{}
	for _, b := range after {
		counts[b.Le] += b.N
	}
	for _, b := range before {
		counts[b.Le] -= b.N
	}
	var les []float64
	var total uint64
	for le, n := range counts {
		if n > 0 {
			les = append(les, le)
			total += n
		}
	}
	slices.Sort(les)
	var seen uint64
	for _, le := range les {
		seen += counts[le]
		if float64(seen) >= q*float64(total) {
			return le * 1000
		}
	}
	return 0
}

// print writes the report as a table.
func (r *result) print(w io.Writer, withTimeline bool) {
	fmt.Fprintf(w, "\narkbot load test: %v\n", describe(r.Options))
	fmt.Fprintf(w, "measured load: %.1f s, %d tokens streamed\n", r.WallSeconds, r.Tokens)
	if r.KernelStamps {
		fmt.Fprintf(w, "platform calls timed on arrival at the fakes' sockets (kernel receive timestamps)\n\n")
	} else {
		fmt.Fprintf(w, "platform calls timed by the fakes' handlers: this kernel gives no TCP receive timestamps, so added latency includes the harness's wait for a CPU\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "platform\tanswers\tturns in Redis\tadded latency p50/p99/max ms\t(call made) p50/p99/max ms\tsign of life p50/p99/max ms\tanswer p50/p99/max s\tposts\tedits\tappends\tother /answer\t429s\t")
	for _, p := range r.Platforms {
		fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d\t%.1f / %.1f / %.1f\t%.1f / %.1f / %.1f\t%.0f / %.0f / %.0f\t%.1f / %.1f / %.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n",
			p.Platform, p.Completed, p.Started, p.TurnsFound, p.TurnsExpected,
			p.AddedLatency.P50, p.AddedLatency.P99, p.AddedLatency.Max,
			p.CallLatency.P50, p.CallLatency.P99, p.CallLatency.Max,
			p.SignOfLife.P50, p.SignOfLife.P99, p.SignOfLife.Max,
			p.AnswerTime.P50/1000, p.AnswerTime.P99/1000, p.AnswerTime.Max/1000,
			p.Posts, p.Edits, p.Appends, p.Other, p.RateLimited)
	}
	tw.Flush()
	for _, p := range r.Platforms {
		fmt.Fprintf(w, "%s: whole answer visible p50/p99/max %.2f / %.2f / %.2f s after Ark's last token; %.1f intermediate renders per answer (fewest %d); %.0f answers a minute\n",
			p.Platform, p.AfterLast.P50/1000, p.AfterLast.P99/1000, p.AfterLast.Max/1000, p.Renders, p.MinRenders, p.PerMinute)
		fmt.Fprintf(w, "%s: the fake's handlers took those first-token calls p50/p99/max %.1f / %.1f / %.1f ms after the token (the harness's wait for a CPU added)\n",
			p.Platform, p.HandledLatency.P50, p.HandledLatency.P99, p.HandledLatency.Max)
	}
	fmt.Fprintf(w, "\nbot process: CPU %.1f s (%.1f s in the kernel) = %.3f s per 1,000 tokens; allocations %.0f B, %.1f objects per token; peak RSS %.0f MiB, %d page faults\n",
		r.CPUSeconds, r.SysCPUSeconds, r.CPUPer1kTok, r.AllocPerToken, r.ObjsPerToken, float64(r.PeakRSS)/(1<<20), r.Faults)
	fmt.Fprintf(w, "bot scheduling: runnable goroutines waited p50 %.2f ms, p99 %.1f ms for a CPU; %d GCs took %.1f s CPU\n",
		r.SchedWaitP50, r.SchedWaitP99, r.GCCycles, r.GCCPUSeconds)
	fmt.Fprintf(w, "harness (fakes and driver): CPU %.1f s, %d GCs, %d page faults; its goroutines waited p50 %.2f ms, p99 %.1f ms\n",
		r.HarnessCPU, r.HarnessGCs, r.HarnessFaults, r.HarnessWaitP50, r.HarnessWaitP99)
	fmt.Fprintf(w, "Redis round trips per turn: %.2f (and %d handshakes of new pooled connections, %d timed commands: replica-count heartbeats, looks for stored tidy jobs); HTTP connections opened: Ark %d, Slack %d, Discord %d\n",
		r.RedisPerTurn, r.RedisHandshakes, r.RedisHeartbeats, r.Dials[0], r.Dials[1], r.Dials[2])
	if r.Churns > 0 {
		fmt.Fprintf(w, "event connections replaced %d times during the load (-churn %s: a Slack refresh, a Discord RECONNECT)\n", r.Churns, r.Options["churn"])
	}
	if r.Redelivered > 0 {
		fmt.Fprintf(w, "Slack events sent again, not acknowledged within %v (as Slack redelivers them): %d\n", slackRedeliver, r.Redelivered)
	}
	if c := r.Cold; c.Conversations > 0 {
		fmt.Fprintf(w, "cold start (the warm-up before it: %d new conversations x 1 turn on the fresh bot process, %d/%d answers): added latency p50/p99/max %.1f / %.1f / %.1f ms, sign of life %.0f / %.0f / %.0f ms; bot CPU %.1f s, %d page faults; HTTP connections opened: Ark %d, Slack %d, Discord %d\n",
			c.Conversations, c.Completed, c.Conversations, c.AddedLatency.P50, c.AddedLatency.P99, c.AddedLatency.Max,
			c.SignOfLife.P50, c.SignOfLife.P99, c.SignOfLife.Max, c.CPUSeconds, c.Faults, c.Dials[0], c.Dials[1], c.Dials[2])
	}
	if p := r.Probe; p.Measured {
		fmt.Fprintf(w, "memory probe (%d more conversations x 1 turn, %d/%d answers, %d/%d turns in Redis): per active stream (%d streaming) heap %.1f KiB, stack %.1f KiB, %.1f goroutines; per finished conversation %.0f B of heap\n",
			p.Conversations, p.Completed, p.Conversations, p.TurnsFound, 2*p.Conversations, p.Streams,
			p.HeapPerStream/1024, p.StackPerStream/1024, p.GoroutinesPerStream, p.IdleHeapPerConv)
	}
	if withTimeline {
		printTimeline(w, "the cold start", r.Cold.Timeline)
		printTimeline(w, "the load", r.Timeline)
	}
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range r.Targets {
		mark := "n/a "
		if t.Applies {
			mark = "MISS"
			if t.Met {
				mark = "ok  "
			}
		}
		fmt.Fprintf(w, "  [%s] %s: %s\n", mark, t.Name, t.Value)
	}
	if r.BotLog != "" {
		fmt.Fprintf(w, "\nbot log: %s (%d warnings or errors)\n", r.BotLog, r.BotLogWarnings)
		for _, l := range r.BotLogFirstLines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w, "\nFAILED:")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	} else {
		fmt.Fprintln(w, "\nPASSED: every answer complete, every turn in Redis"+map[bool]string{true: ", no 429", false: ""}[r.Options["ratelimits"] == true])
	}
}

func describe(o map[string]any) string {
	limits := "rate limits off"
	if o["ratelimits"] == true {
		limits = fmt.Sprintf("rate limits on (x%v)", o["ratelimit-scale"])
	}
	redis := "embedded Redis"
	if u, _ := o["redis"].(string); u != "" {
		redis = "Redis " + u
	}
	echo := "its own posts and edits echoed to it"
	if o["echo"] == false {
		echo = "no echoes of its own posts and edits"
	}
	if d, _ := o["churn"].(string); d != "" && d != "0s" {
		echo += "; event connections replaced every " + d
	}
	fakes := "the fakes on all CPUs"
	if n, _ := o["harness-procs"].(int); n > 0 {
		fakes = fmt.Sprintf("the fakes on %d CPU(s)", n)
	}
	starting := "answers set up at once: the bot's default"
	if n, ok := o["max-starting"].(int); ok && n == 0 {
		starting = "answers set up at once: no limit"
	} else if ok && n > 0 {
		starting = fmt.Sprintf("answers set up at once: %d", n)
	}
	return fmt.Sprintf("%v conversations x %v turns on %v, begun within %v; Ark TTFT %v ±%v%%, %v tokens every %v; renders Slack %v, Discord %v; %s; %s; %s; %s; %s",
		o["conversations"], o["turns"], o["platform"], o["ramp"], o["ttft"], o["ttft-jitter"].(float64)*100, o["tokens"], o["token-interval"],
		o["slack-edit-interval"], o["discord-edit-interval"], limits, echo, starting, redis, fakes)
}

// writeJSON writes the report to path.
func (r *result) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// logSummary counts the warning and error lines of the bot's log and
// returns the first few.
func logSummary(path string) (int, []string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil
	}
	n := 0
	var first []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			n++
			if len(first) < 5 {
				first = append(first, strings.TrimSpace(line))
			}
		}
	}
	return n, first
}

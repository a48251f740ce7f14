package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMain lets the test binary be the bot process too, as the command is.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "bot" {
		os.Exit(runBot(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// smallRun runs the command on a few conversations with fast fakes and
// returns its report.
func smallRun(t *testing.T, extra ...string) *result {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the bot process and the fakes")
	}
	dir := t.TempDir()
	args := append([]string{"-conversations", "6", "-turns", "2", "-ttft", "50ms", "-token-interval", "5ms", "-tokens", "20",
		"-ramp", "100ms", "-slack-edit-interval", "100ms", "-discord-edit-interval", "100ms", "-timeout", "60s",
		"-json", filepath.Join(dir, "report.json"), "-botlog", filepath.Join(dir, "bot.log")}, extra...)
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "PASSED") {
		t.Errorf("report:\n%s", stdout.String())
	}
	return &r
}

func TestSmallRun(t *testing.T) {
	r := smallRun(t)
	if len(r.Platforms) != 2 {
		t.Fatalf("platforms %+v", r.Platforms)
	}
	for _, p := range r.Platforms {
		if p.Started != 6 || p.Completed != 6 || p.TurnsFound != 12 || p.AddedLatency.N != 6 || p.SignOfLife.N != 6 || p.Posts < 1 {
			t.Errorf("%s: %+v", p.Platform, p)
		}
	}
	if r.Tokens != 12*20 || r.CPUSeconds <= 0 || r.SysCPUSeconds > r.CPUSeconds || r.PeakRSS <= 0 || r.RedisPerTurn <= 0 || r.HarnessGCs != 0 {
		t.Errorf("tokens %d, CPU %v (kernel %v), RSS %d, Redis %v, harness GCs %d", r.Tokens, r.CPUSeconds, r.SysCPUSeconds, r.PeakRSS, r.RedisPerTurn, r.HarnessGCs)
	}
	if runtime.GOOS == "linux" && (r.Faults <= 0 || r.HarnessFaults < 0) {
		t.Errorf("page faults: bot %d, harness %d", r.Faults, r.HarnessFaults)
	}
	// The warm-up: as many conversations, one turn each, on the fresh
	// process, which dials Ark for them.
	if c := r.Cold; c.Conversations != 6 || c.Completed != 6 || c.AddedLatency.N != 6 || c.SignOfLife.N != 6 || c.CPUSeconds <= 0 || c.Dials[0] < 1 {
		t.Errorf("cold start %+v", c)
	}
	if p := r.Probe; !p.Measured || p.Completed != 6 || p.TurnsFound != 12 {
		t.Errorf("probe %+v", p)
	}
	// The bot makes each call before it reaches the fake, and it reaches
	// the fake before the fake's handler runs: each quantile is at most the
	// next one's.
	inTimeline := 0
	for _, w := range r.Timeline {
		inTimeline += w.Latency.N
	}
	for _, p := range r.Platforms {
		c, a, h := p.CallLatency, p.AddedLatency, p.HandledLatency
		if c.N != a.N || c.P50 > a.P50 || c.P99 > a.P99 || c.Max > a.Max {
			t.Errorf("%s: call made %+v, arrived %+v", p.Platform, c, a)
		}
		if h.N != a.N || a.P50 > h.P50 || a.P99 > h.P99 || a.Max > h.Max {
			t.Errorf("%s: arrived %+v, handled %+v", p.Platform, a, h)
		}
		inTimeline -= a.N
	}
	if inTimeline != 0 || len(r.Timeline) == 0 {
		t.Errorf("timeline %+v does not hold every answer", r.Timeline)
	}
}

func TestSmallRunWithRateLimits(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace.out")
	r := smallRun(t, "-platform", "slack", "-ratelimits", "-ratelimit-scale", "10", "-trace", trace)
	if len(r.Platforms) != 1 || r.Platforms[0].Completed != 12 || r.Platforms[0].RateLimited != 0 || r.Probe.Measured || r.Cold.Completed != 2 {
		t.Errorf("%+v", r)
	}
	// The bot stopped before the trace's span ended: it is complete all
	// the same (an execution trace begins with its header).
	b, err := os.ReadFile(trace)
	if err != nil || !bytes.HasPrefix(b, []byte("go 1.")) || len(b) < 1000 {
		t.Errorf("trace: %d bytes, %q..., %v", len(b), b[:min(len(b), 16)], err)
	}
}

// With -channels the conversations share channels: Slack threads in two
// channels, Discord mentions answered in two shared channels; every call
// is still told apart by conversation, and every answer completes.
func TestSmallRunInSharedChannels(t *testing.T) {
	r := smallRun(t, "-channels", "2", "-turns", "1", "-ratelimits", "-ratelimit-scale", "10")
	if len(r.Platforms) != 2 {
		t.Fatalf("%+v", r)
	}
	for _, p := range r.Platforms {
		if p.Completed != 3 || p.TurnsFound != 6 || p.RateLimited != 0 || p.SignOfLife.N != 3 || p.AfterLast.N != 3 || p.PerMinute <= 0 {
			t.Errorf("%s: %+v", p.Platform, p)
		}
	}
	if _, err := parseFlags([]string{"-channels", "2", "-turns", "2"}, new(bytes.Buffer)); err == nil {
		t.Error("-channels with Discord conversations of two turns accepted")
	}
	if _, err := parseFlags([]string{"-channels", "2", "-turns", "2", "-platform", "slack"}, new(bytes.Buffer)); err != nil {
		t.Errorf("-channels on Slack with two turns: %v", err)
	}
}

// Under connection churn (a Slack refresh and a Discord RECONNECT every
// 100 ms) no answer is lost.
func TestSmallRunWithChurn(t *testing.T) {
	r := smallRun(t, "-churn", "100ms")
	if r.Churns < 2 {
		t.Errorf("%d churns", r.Churns)
	}
	for _, p := range r.Platforms {
		if p.Completed != 6 || p.TurnsFound != 12 {
			t.Errorf("%s: %+v", p.Platform, p)
		}
	}
	if !strings.Contains(describe(r.Options), "event connections replaced every 100ms") {
		t.Errorf("the description leaves the churn out: %s", describe(r.Options))
	}
}

func TestFlags(t *testing.T) {
	for _, bad := range [][]string{{"-churn", "-1s"}, {"-platform", "irc"}, {"-conversations", "0"}, {"-tokens", "1000"}, {"-ttft-jitter", "2"}, {"-warmup", "-2"}, {"extra"}} {
		if _, err := parseFlags(bad, new(bytes.Buffer)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	o, err := parseFlags(nil, new(bytes.Buffer))
	if err != nil || o.conversations != 1000 || o.warmup != 1000 || o.turns != 3 || o.timeout != 110*time.Second || o.flags["platform"] != "both" || !o.echo {
		t.Errorf("defaults %+v, %v", o, err)
	}
	if d := describe(o.flags); !strings.Contains(d, "its own posts and edits echoed to it") {
		t.Errorf("the description does not say the bot hears its own messages: %s", d)
	}
	if o, _ := parseFlags([]string{"-echo=false"}, new(bytes.Buffer)); o.echo || !strings.Contains(describe(o.flags), "no echoes") {
		t.Errorf("-echo=false: %v, %s", o.echo, describe(o.flags))
	}
	if o, err := parseFlags([]string{"-conversations", "50", "-warmup", "0"}, new(bytes.Buffer)); err != nil || o.warmup != 0 {
		t.Errorf("-warmup 0: %d, %v", o.warmup, err)
	}
	if o, err := parseFlags([]string{"-conversations", "50", "-ratelimits"}, new(bytes.Buffer)); err != nil || o.warmup != 2 {
		t.Errorf("-ratelimits: warm-up %d, %v", o.warmup, err)
	}
}

func TestSummaries(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if l := summarize(ds); l.N != 100 || l.P50 != 51 || l.P99 != 100 || l.Max != 100 {
		t.Errorf("summarize = %+v", l)
	}
	before := []bucket{{Le: 0.001, N: 10}}
	after := []bucket{{Le: 0.001, N: 100}, {Le: 0.01, N: 10}}
	if q := quantile(before, after, 0.5); q != 1 {
		t.Errorf("p50 = %v ms", q)
	}
	if q := quantile(before, after, 0.99); q != 10 {
		t.Errorf("p99 = %v ms", q)
	}
	tr := newTurn("s17", 2, 5)
	if !strings.HasPrefix(tr.answer, "a-s17-2 ") || len(tr.tokens) != 5 || strings.Join(tr.tokens, "") != tr.answer {
		t.Errorf("turn %+v", tr)
	}
	if m := questionRE.FindStringSubmatch(question("ps3", 12)); m == nil || m[1] != "ps3" || m[2] != "12" {
		t.Errorf("question not recognized: %v", m)
	}
}

// TestRoundTripCount: a command or pipeline is one round trip; connection
// handshakes and the timed commands (the replica count's heartbeat, the
// look for stored tidy jobs) are counted apart.
func TestRoundTripCount(t *testing.T) {
	ctx := context.Background()
	var h roundTrips
	h.count(redis.NewCmd(ctx, "evalsha", "abc", 1, "k"))
	h.count(redis.NewStatusCmd(ctx, "multi"), redis.NewIntCmd(ctx, "hset", "p:thread:{t}:meta", "model", "m"), redis.NewSliceCmd(ctx, "exec"))
	h.count(redis.NewStatusCmd(ctx, "hello", 3), redis.NewStatusCmd(ctx, "client", "setinfo"))
	h.count(redis.NewStatusCmd(ctx, "multi"), redis.NewIntCmd(ctx, "zadd", "p:replicas:{slack}", 1, "me"), redis.NewSliceCmd(ctx, "exec"))
	h.count(redis.NewIntCmd(ctx, "zadd", "p:other", 1, "x"))
	h.count(redis.NewCmd(ctx, "evalsha", "abc", 2, "p:chores:{slack-tidy}", "p:chores:{slack-tidy}:jobs", 1, 2, "16"))
	if n, setup, beats := h.n.Load(), h.setup.Load(), h.beats.Load(); n != 3 || setup != 1 || beats != 2 {
		t.Fatalf("round trips %d, handshakes %d, timed commands %d; want 3, 1, 2", n, setup, beats)
	}
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/sentineltest"
	"github.com/arkbot/arkbot/metrics"
)

// finalReply keeps an answer's last frame.
type finalReply struct {
	mu    sync.Mutex
	final *conversation.Frame
}

func (r *finalReply) Begin(context.Context) error { return nil }

func (r *finalReply) Render(_ context.Context, f conversation.Frame) error {
	if f.Final {
		r.mu.Lock()
		r.final = &f
		r.mu.Unlock()
	}
	return nil
}

func (r *finalReply) Notice(_ context.Context, text string) error {
	return r.Render(context.Background(), conversation.Frame{Final: true, Note: text})
}

func (r *finalReply) frame() conversation.Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final == nil {
		return conversation.Frame{}
	}
	return *r.final
}

// TestSentinelFailoverKeepsEveryTurn streams 60 answers from two bots
// opened on a Sentinel URL as cmd/bot opens it, forces a failover while
// they stream, then asks an unmentioned follow-up in every thread through
// the other bot: each turn must be on the new master, and each follow-up
// answered with its thread's first exchange in the prompt.
func TestSentinelFailoverKeepsEveryTurn(t *testing.T) {
	set := sentineltest.New(t)
	ark := arktest.New(arktest.WithTiming(20*time.Millisecond, 60*time.Millisecond))
	t.Cleanup(ark.Close)
	ark.SetHandler(func(r arktest.Request) arktest.Response {
		q := r.Messages[len(r.Messages)-1].Text
		return arktest.Response{Content: arktest.SplitWords("answer to " + q + " in a dozen words or so, streamed word by word")}
	})
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
ark: {api_key: k, base_url: %q}
models: [{name: doubao, id: doubao-seed-1-6-250615}]
redis: {url: %q, lock_ttl: 5s}
slack: {edit_interval: 100ms}
`, ark.URL, set.URL)))
	if err != nil {
		t.Fatal(err)
	}
	var bots [2]*bot
	for i := range bots {
		c := *cfg
		b, err := newBot(&c, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.closeRedis)
		if *c.Redis.MinReplicas != 1 {
			t.Fatalf("redis.min_replicas settled to %d with a replica connected, want 1", *c.Redis.MinReplicas)
		}
		bots[i] = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	oldMaster, err := set.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const threads = 60
	msg := func(i int, id, text string, mentioned bool) conversation.Message {
		return conversation.Message{Platform: conversation.PlatformSlack, Workspace: "T1", Channel: "C1",
			Thread: fmt.Sprintf("t%d", i), ID: id, User: conversation.User{ID: "U1", Name: "ann"},
			Text: text, Mentioned: mentioned, InThread: !mentioned, Time: time.Now()}
	}
	ask := func(round string, mentioned bool, pick func(i int) *bot) []*finalReply {
		replies := make([]*finalReply, threads)
		var wg sync.WaitGroup
		for i := range threads {
			replies[i] = &finalReply{}
			wg.Go(func() {
				m := msg(i, fmt.Sprintf("%s%d", round, i), fmt.Sprintf("%s %d.", round, i), mentioned)
				if err := pick(i).engine.Handle(ctx, m, replies[i]); err != nil {
					t.Errorf("%s %d: %v", round, i, err)
				}
			})
			time.Sleep(25 * time.Millisecond) // 60 arrivals over 1.5 s
			if round == "question" && i == threads/3 {
				// A third of the answers have started: fail over while they stream.
				if err := set.Failover(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		wg.Wait()
		return replies
	}

	unconfirmed := counterValue(metrics.SavesUnconfirmed)
	firsts := ask("question", true, func(i int) *bot { return bots[i%2] })
	var answered atomic.Int64
	for i, r := range firsts {
		if f := r.frame(); f.Outcome != conversation.OutcomeDone || f.Note != "" {
			t.Errorf("question %d: outcome %q, note %q, text %q", i, f.Outcome, f.Note, f.Text)
		} else {
			answered.Add(1)
		}
	}
	newMaster, err := set.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newMaster == oldMaster {
		t.Fatalf("the master is still %s after SENTINEL FAILOVER", oldMaster)
	}
	// Every turn is on the new master: the old one becomes its replica.
	nm := set.Client(newMaster)
	for i := range threads {
		key := fmt.Sprintf("arkbot:thread:{slack:T1:C1:t%d}:turns", i)
		if n, err := nm.LLen(ctx, key).Result(); err != nil || n != 2 {
			t.Errorf("thread %d: %d turns on the new master (%v), want 2", i, n, err)
		}
	}

	seen := len(ark.Requests())
	follow := ask("follow-up", false, func(i int) *bot { return bots[(i+1)%2] })
	for i, r := range follow {
		if f := r.frame(); f.Outcome != conversation.OutcomeDone || f.Note != "" {
			t.Errorf("follow-up %d: outcome %q, note %q, text %q", i, f.Outcome, f.Note, f.Text)
		}
	}
	followUp := regexp.MustCompile(`follow-up (\d+)\.`)
	carried := map[int]bool{}
	for _, req := range ark.Requests()[seen:] {
		sub := followUp.FindStringSubmatch(req.Messages[len(req.Messages)-1].Text)
		if sub == nil {
			continue
		}
		i, _ := strconv.Atoi(sub[1])
		q := fmt.Sprintf("question %d.", i)
		var asked, answered bool
		for _, m := range req.Messages {
			asked = asked || (m.Role == "user" && strings.Contains(m.Text, q))
			answered = answered || (m.Role == "assistant" && strings.Contains(m.Text, "answer to") && strings.Contains(m.Text, q))
		}
		carried[i] = asked && answered
	}
	for i := range threads {
		if c, ok := carried[i]; !ok {
			t.Errorf("follow-up %d never reached Ark", i)
		} else if !c {
			t.Errorf("follow-up %d's prompt lacks its first exchange", i)
		}
	}
	t.Logf("%d of %d answers done across the failover from %s to %s; %v saves unconfirmed at first",
		answered.Load(), threads, oldMaster, newMaster, counterValue(metrics.SavesUnconfirmed)-unconfirmed)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

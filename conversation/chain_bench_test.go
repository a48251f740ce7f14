package conversation

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/metrics"
)

// chainTurns is the length of the thread BenchmarkThreadUpload runs.
const chainTurns = 20

// BenchmarkThreadUpload runs 20-turn threads against the fake Ark (a
// question of about 60 words, an answer of about 120) and reports per
// turn: the bytes the bot uploads (request bodies), the tokens of the
// messages it sends (the engine's estimate), the input tokens Ark counts
// (usage.input_tokens / prompt_tokens, context Ark carries included) and
// the cached tokens Ark reports; and the same for the 20th turn alone.
// Variants: chat completions (the whole history every turn), the
// Responses API with its chain (previous_response_id and the new input),
// and the Responses API with every chain lost (the transcript every turn).
func BenchmarkThreadUpload(b *testing.B) {
	mr, err := embedredis.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer mr.Close()
	rdb := mr.Client()
	defer rdb.Close()
	question := strings.Repeat("Tell me more about the history of the Grand Canal and its locks. ", 5)
	answer := arktest.SplitWords(strings.Repeat("The canal was built in stages over many centuries by several dynasties. ", 10))
	for _, v := range []struct {
		name, model string
		lose        bool // Ark loses every chain
	}{{"chat", "chat", false}, {"responses-chain", "seed", false}, {"responses-nochain", "seed", true}} {
		b.Run(v.name, func(b *testing.B) {
			rg := newResponsesRig(b, rdb, "bench-"+v.name)
			rg.store.opt.MaxTurns = 100 // redis.max_turns' default: the whole thread is sent
			rg.ark.SetHandler(func(arktest.Request) arktest.Response { return arktest.Response{Content: answer} })
			prompt := metrics.Tokens.WithLabelValues(v.model, "prompt")
			cached := metrics.Tokens.WithLabelValues(v.model, "cached")
			var bytes, sent, lastBytes, lastSent, inTok, cachedTok, lastIn, lastCached float64
			threads := 0
			for b.Loop() {
				threads++
				base := len(rg.ark.Requests())
				for turn := range chainTurns {
					if v.lose {
						rg.ark.ExpireResponses()
					}
					m := msg(question)
					m.Thread = fmt.Sprintf("%s-%d", v.name, threads)
					m.User.ID = m.Thread // no rate limits nor quotas in the way
					if turn == 0 {
						setModel(b, rg, m, v.model)
					}
					p0, c0 := testutil.ToFloat64(prompt), testutil.ToFloat64(cached)
					_ = rg.engine.Handle(context.Background(), m, nopReply{})
					p, c := testutil.ToFloat64(prompt)-p0, testutil.ToFloat64(cached)-c0
					reqs := rg.ark.Requests()[base:]
					last := reqs[len(reqs)-1]
					tokens := 0
					for _, msg := range last.Messages {
						tokens += estimateTokens(msg.Text)
					}
					up := 0
					for _, r := range reqs { // a lost chain's first try counts too
						up += len(r.Raw)
					}
					base += len(reqs)
					bytes, sent, inTok, cachedTok = bytes+float64(up), sent+float64(tokens), inTok+p, cachedTok+c
					if turn == chainTurns-1 {
						lastBytes, lastSent, lastIn, lastCached = float64(up), float64(tokens), p, c
					}
				}
			}
			turns := float64(threads * chainTurns)
			b.ReportMetric(bytes/turns, "B-up/turn")
			b.ReportMetric(sent/turns, "sent-tok/turn")
			b.ReportMetric(inTok/turns, "in-tok/turn")
			b.ReportMetric(cachedTok/turns, "cached-tok/turn")
			b.ReportMetric(lastBytes, "B-up/turn20")
			b.ReportMetric(lastSent, "sent-tok/turn20")
			b.ReportMetric(lastIn, "in-tok/turn20")
			b.ReportMetric(lastCached, "cached-tok/turn20")
		})
	}
}

// setModel switches m's thread to model with /model.
func setModel(b *testing.B, rg *rig, m Message, model string) {
	cmd := m
	cmd.ID, cmd.Text = m.ID+"-model", "/model "+model
	if err := rg.engine.Handle(context.Background(), cmd, nopReply{}); err != nil {
		b.Fatal(err)
	}
}

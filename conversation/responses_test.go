package conversation

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/metrics"
)

// responsesModels: two models on the Responses API (one searching by
// default), and one on chat completions.
func responsesModels() []Model {
	return []Model{
		{Name: "seed", ID: "doubao-seed-1-6-250615", API: APIResponses, ContextWindow: 256000, MaxTokens: 4096, ReasoningEffort: "medium",
			Search: &Search{Limit: 5, Sources: []string{"search_engine"}}},
		{Name: "seed-search", ID: "doubao-seed-2-0-pro-260215", API: APIResponses, ContextWindow: 256000, MaxTokens: 4096, Thinking: "auto",
			Search: &Search{On: true, MaxCalls: 2}},
		{Name: "chat", ID: "deepseek-v3-2-251201", API: APIChat, ContextWindow: 64000, MaxTokens: 4096},
	}
}

// newResponsesEngine is an engine with responsesModels on store and ark.
func newResponsesEngine(t testing.TB, rdb redis.UniversalClient, prefix string, ark *arktest.Server, opts ...Option) *Engine {
	t.Helper()
	client, err := arkclient.New(ark.URL, "k", arkclient.WithRetries(2, time.Millisecond, 10*time.Millisecond),
		arkclient.WithIdleTimeout(2*time.Second), arkclient.WithFirstTokenTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	opts = append(append(testOptions(), WithRenderInterval("test", 0)), opts...)
	return NewEngine(responsesModels(), NewStore(rdb, storeOptions(prefix)), client, opts...)
}

func newResponsesRig(t testing.TB, rdb redis.UniversalClient, prefix string, opts ...Option) *rig {
	t.Helper()
	ark := arktest.New()
	t.Cleanup(ark.Close)
	e := newResponsesEngine(t, rdb, prefix, ark, opts...)
	return &rig{ark: ark, store: e.store, engine: e}
}

// lastRequest is the fake's latest request.
func (rg *rig) lastRequest(t *testing.T) arktest.Request {
	t.Helper()
	reqs := rg.ark.Requests()
	if len(reqs) == 0 {
		t.Fatal("no request")
	}
	return reqs[len(reqs)-1]
}

// wantFull checks that req started a chain with the whole transcript of
// n messages (system prompt included), cached and stored.
func wantFull(t *testing.T, req arktest.Request, n int) {
	t.Helper()
	if req.Path != arktest.ResponsesPath || req.PreviousResponseID != "" || len(req.Messages) != n || req.Messages[0].Role != "system" ||
		!req.Store || req.ExpireAt == 0 {
		t.Fatalf("want a new chain of %d messages, got %s previous=%q %d messages store=%v expire_at=%d",
			n, req.Path, req.PreviousResponseID, len(req.Messages), req.Store, req.ExpireAt)
	}
}

func TestResponsesChainSendsOnlyTheNewInput(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		if f := rg.ask(t, msg("my name is Ada")).final(); f.Outcome != OutcomeDone || f.Text != "You said: my name is Ada" {
			t.Fatalf("first answer %+v", f)
		}
		first := rg.lastRequest(t)
		wantFull(t, first, 2)
		if !first.Caching || first.ReasoningEffort != "medium" || first.Tools != nil {
			t.Errorf("first turn: caching %v, effort %q, tools %v", first.Caching, first.ReasoningEffort, first.Tools)
		}
		if d := time.Until(time.Unix(first.ExpireAt, 0)); d < 71*time.Hour || d > 73*time.Hour {
			t.Errorf("expire_at in %s, want 72h", d)
		}
		cachedBefore := testutil.ToFloat64(metrics.Tokens.WithLabelValues("seed", "cached"))
		f := rg.ask(t, msg("what is my name?")).final()
		next := rg.lastRequest(t)
		if next.PreviousResponseID == "" || len(next.Messages) != 1 || next.Messages[0].Text != "what is my name?" || !next.Caching {
			t.Fatalf("second turn sent %+v with previous %q", next.Messages, next.PreviousResponseID)
		}
		// Ark carried the first turn: the answer knows it.
		if len(next.Context) != 4 || next.Context[1].Text != "my name is Ada" || f.Text != "You said: what is my name?" {
			t.Fatalf("context Ark saw: %+v", next.Context)
		}
		if testutil.ToFloat64(metrics.Tokens.WithLabelValues("seed", "cached")) <= cachedBefore {
			t.Error("cached tokens not counted in arkbot_tokens_total")
		}
		if n := rg.ask(t, msg("/usage")).notice(); !strings.Contains(n, "input tokens Ark had cached") {
			t.Errorf("/usage lacks cached tokens: %q", n)
		}
	})
}

func TestResponsesChainSurvivesARestartAndAnotherReplica(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		rg.ask(t, msg("one"))
		rg.ask(t, msg("two"))
		id := rg.ark.Requests()[1].PreviousResponseID
		// Another engine (a replica, or this one restarted) on the same Redis.
		other := newResponsesEngine(t, rdb, prefix, rg.ark)
		r := &recorder{t: t}
		if err := other.Handle(context.Background(), msg("three"), r); err != nil {
			t.Fatal(err)
		}
		req := rg.lastRequest(t)
		if req.PreviousResponseID == "" || req.PreviousResponseID == id || len(req.Messages) != 1 || len(req.Context) != 6 {
			t.Fatalf("the other replica sent %d messages, previous %q (first chain link %q), context %d",
				len(req.Messages), req.PreviousResponseID, id, len(req.Context))
		}
		if f := r.final(); f.Outcome != OutcomeDone {
			t.Fatalf("answer %+v", f)
		}
	})
}

func TestResponsesLostChainFallsBackToTheTranscript(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		rg.ask(t, msg("remember 42"))
		rg.ask(t, msg("and 43"))
		rg.ark.ExpireResponses() // expired, deleted, or another region
		lost := testutil.ToFloat64(metrics.Chains.WithLabelValues("seed", "lost"))
		f := rg.ask(t, msg("what numbers?")).final()
		if f.Outcome != OutcomeDone || f.Note != "" {
			t.Fatalf("the user noticed: %+v", f)
		}
		reqs := rg.ark.Requests()
		if len(reqs) != 4 || reqs[2].PreviousResponseID == "" {
			t.Fatalf("%d requests, third previous %q", len(reqs), reqs[2].PreviousResponseID)
		}
		wantFull(t, reqs[3], 6)
		if reqs[3].Messages[1].Text != "remember 42" || reqs[3].Messages[5].Text != "what numbers?" {
			t.Errorf("transcript resent: %+v", reqs[3].Messages)
		}
		if testutil.ToFloat64(metrics.Chains.WithLabelValues("seed", "lost")) != lost+1 {
			t.Error("lost chain not counted")
		}
		// The new chain continues.
		rg.ask(t, msg("thanks"))
		if req := rg.lastRequest(t); req.PreviousResponseID == "" || len(req.Messages) != 1 || len(req.Context) != 8 {
			t.Errorf("after the fallback: previous %q, %d messages, context %d", req.PreviousResponseID, len(req.Messages), len(req.Context))
		}
	})
}

func TestResponsesChainRestarts(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		rg.ask(t, msg("q1"))
		// A model change starts a new chain, with the transcript.
		rg.ask(t, msg("/model seed-search"))
		rg.ask(t, msg("q2"))
		wantFull(t, rg.lastRequest(t), 4)
		rg.ask(t, msg("/model seed"))
		rg.ask(t, msg("q3"))
		wantFull(t, rg.lastRequest(t), 6)
		// /retry: the answer it replaces is cut from the chain.
		rg.ask(t, msg("/retry"))
		wantFull(t, rg.lastRequest(t), 6)
		rg.ask(t, msg("q4"))
		if req := rg.lastRequest(t); req.PreviousResponseID == "" || len(req.Messages) != 1 {
			t.Fatalf("after the retry, the new chain does not continue: %+v", req)
		}
		// /reset.
		rg.ask(t, msg("/reset"))
		rg.ask(t, msg("q5"))
		wantFull(t, rg.lastRequest(t), 2)
		// A changed system prompt.
		changed := newResponsesEngine(t, rdb, prefix, rg.ark, WithSystemPrompt("You are a pirate."))
		if err := changed.Handle(context.Background(), msg("q6"), &recorder{t: t}); err != nil {
			t.Fatal(err)
		}
		wantFull(t, rg.lastRequest(t), 4)
		// A stopped answer: Ark stored no whole response.
		rg.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three"}, CutAfter: 1})
		rg.ask(t, msg("q7"))
		rg.ask(t, msg("q8"))
		if req := rg.lastRequest(t); req.PreviousResponseID != "" {
			t.Errorf("continued a chain whose last answer broke off: %q", req.PreviousResponseID)
		}
		// A chat model in between: its turn is in the transcript only.
		rg.ask(t, msg("/model chat"))
		rg.ask(t, msg("q9"))
		if req := rg.lastRequest(t); req.Path != arktest.ChatPath {
			t.Fatalf("chat model sent to %s", req.Path)
		}
		rg.ask(t, msg("/model seed"))
		rg.ask(t, msg("q10"))
		if req := rg.lastRequest(t); req.PreviousResponseID != "" || req.Messages[len(req.Messages)-3].Text != "q9" {
			t.Errorf("after a chat turn: previous %q, messages %+v", req.PreviousResponseID, req.Messages)
		}
	})
}

func TestResponsesWebSearchWithSources(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix, WithLimits(Limits{DailySearches: 2}))
		if n := rg.ask(t, msg("/search on")).notice(); !strings.Contains(n, "Web search is now **on** for this thread") {
			t.Fatalf("/search on: %q", n)
		}
		rg.ark.Enqueue(arktest.Response{
			Searches: []arktest.Search{{Query: "ark", Sources: []arktest.Citation{{Title: "Ark news", URL: "https://news.example.com/a"}}}},
			Content:  []string{"Fresh ", "facts."},
			PerChunk: 5 * time.Millisecond,
		})
		searches := testutil.ToFloat64(metrics.WebSearches.WithLabelValues("seed"))
		r := rg.ask(t, msg("what's new at Ark?"))
		req := rg.lastRequest(t)
		if req.WebSearch == nil || req.WebSearch["limit"] != 5.0 || req.Caching {
			t.Fatalf("request: tool %v caching %v", req.WebSearch, req.Caching)
		}
		sawActivity := false
		for _, f := range r.frames {
			if f.Activity == "Searching the web…" && f.Text == "" {
				sawActivity = true
			}
			if f.Activity != "" && f.Text != "" {
				t.Errorf("activity shown with text: %+v", f)
			}
		}
		f := r.final()
		if !sawActivity || f.Text != "Fresh facts." || len(f.Sources) != 1 || f.Sources[0].URL != "https://news.example.com/a" || f.Activity != "" {
			t.Fatalf("frames: activity %v, final %+v", sawActivity, f)
		}
		if testutil.ToFloat64(metrics.WebSearches.WithLabelValues("seed")) != searches+1 {
			t.Error("search not counted in metrics")
		}
		// The next turn continues the search chain (tools again, no caching).
		rg.ark.Enqueue(arktest.Response{Searches: []arktest.Search{{Query: "more"}}, Content: []string{"More."}})
		rg.ask(t, msg("more?"))
		if req := rg.lastRequest(t); req.PreviousResponseID == "" || req.WebSearch == nil || req.Caching {
			t.Errorf("search chain: previous %q tool %v caching %v", req.PreviousResponseID, req.WebSearch, req.Caching)
		}
		if n := rg.ask(t, msg("/usage")).notice(); !strings.Contains(n, "Web searches: 2 of 2") {
			t.Errorf("/usage: %q", n)
		}
		// The daily limit is reached: the answer does not search, and says so.
		f = rg.ask(t, msg("and now?")).final()
		if req := rg.lastRequest(t); req.WebSearch != nil || !strings.Contains(f.Note, "2 web searches") {
			t.Errorf("over the limit: tool %v, note %q", req.WebSearch, f.Note)
		}
		rg.ask(t, msg("/search off"))
		rg.ask(t, msg("quiet"))
		if req := rg.lastRequest(t); req.WebSearch != nil {
			t.Errorf("/search off still searched")
		}
	})
}

func TestSearchAndThinkCommands(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		// Channel scope, then a thread following it; the model's default otherwise.
		ch := msg("/think off")
		ch.Thread, ch.InThread = "", false
		if n := rg.ask(t, ch).notice(); !strings.Contains(n, "Thinking is now **off** for this channel") {
			t.Errorf("/think off: %q", n)
		}
		rg.ask(t, msg("hi"))
		if got := rg.lastRequest(t).Thinking; got != "disabled" {
			t.Errorf("/think off sent thinking %q", got)
		}
		rg.ask(t, msg("/think auto"))
		rg.ask(t, msg("/model chat"))
		rg.ask(t, msg("hello"))
		if req := rg.lastRequest(t); req.Path != arktest.ChatPath || req.Thinking != "auto" {
			t.Errorf("chat request: %s thinking %q", req.Path, req.Thinking)
		}
		if n := rg.ask(t, msg("/model")).notice(); !strings.Contains(n, "In force here: chat completions · no web search · thinking when needed (auto)") {
			t.Errorf("/model: %q", n)
		}
		rg.ask(t, msg("/model seed-search"))
		if n := rg.ask(t, msg("/model")).notice(); !strings.Contains(n, "Responses API (Ark keeps and caches the conversation) · web search on") {
			t.Errorf("/model: %q", n)
		}
		// An admin locks search in the channel; others can't change it.
		lock := msg("/search lock")
		lock.User.Admin = true
		if n := rg.ask(t, lock).notice(); !strings.Contains(n, "locked") {
			t.Errorf("/search lock: %q", n)
		}
		if n := rg.ask(t, msg("/search off")).notice(); !strings.Contains(n, "An admin locked web search") {
			t.Errorf("/search off while locked: %q", n)
		}
		if n := rg.ask(t, msg("/search lock")).notice(); !strings.Contains(n, "Only admins") {
			t.Errorf("/search lock by a user: %q", n)
		}
		if n := rg.ask(t, msg("/search")).notice(); !strings.Contains(n, "Web search is **on**") || !strings.Contains(n, "locked") {
			t.Errorf("/search: %q", n)
		}
		rg.ask(t, msg("/model chat"))
		if n := rg.ask(t, msg("/search")).notice(); !strings.Contains(n, "chat can't search the web") {
			t.Errorf("/search with a chat model: %q", n)
		}
		if n := rg.ask(t, msg("/help")).notice(); !strings.Contains(n, "/search on|off") || !strings.Contains(n, "/think on|off|auto") {
			t.Errorf("/help: %q", n)
		}
	})
}

func TestResponsesChainEndsWithItsFirstResponse(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		// A prompt without {date}: a new day would start a new chain.
		rg := newResponsesRig(t, rdb, prefix, WithClock(clock), WithChainTTL(10*time.Hour), WithSystemPrompt("Be brief."))
		rg.ask(t, msg("q1"))
		if d := time.Unix(rg.lastRequest(t).ExpireAt, 0).Sub(clock()); d <= 10*time.Hour-time.Second || d > 10*time.Hour {
			t.Errorf("expire_at in %s, want chain_ttl", d)
		}
		advance(9 * time.Hour)
		rg.ask(t, msg("q2"))
		if req := rg.lastRequest(t); req.PreviousResponseID == "" {
			t.Fatal("the chain did not continue within its first response's life")
		}
		// Later links live longer, but the first one ends the chain.
		advance(56 * time.Minute)
		rg.ask(t, msg("q3"))
		wantFull(t, rg.lastRequest(t), 6)
	})
}

func TestResponsesStopAndErrorsAsOnChat(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newResponsesRig(t, rdb, prefix)
		rg.ask(t, msg("q1"))
		// Stop: what was shown stays, and the chain is cut.
		rg.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three ", "four"}, PerChunk: 200 * time.Millisecond})
		m := msg("count slowly")
		r := &recorder{t: t}
		done := make(chan struct{})
		go func() { rg.engine.Handle(context.Background(), m, r); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			r.mu.Lock()
			shown := len(r.frames) > 0 && r.frames[len(r.frames)-1].Text != ""
			r.mu.Unlock()
			if shown && rg.engine.Stop(m.DedupeKey(), m.User).Stopped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		<-done
		f := r.final()
		if f.Outcome != OutcomeStopped || f.Text == "" || strings.Contains(f.Text, "four") {
			t.Fatalf("stopped answer %+v", f)
		}
		rg.ask(t, msg("q3"))
		req := rg.lastRequest(t)
		wantFull(t, req, 6)
		if req.Messages[4].Text != f.Text {
			t.Errorf("the stopped answer was not resent as shown: %+v", req.Messages)
		}
		// Ark's errors reach the user in the same words.
		rg.ark.Enqueue(arktest.Response{Status: 429, ErrorCode: "QuotaExceeded"})
		f = rg.ask(t, msg("q4")).final()
		if f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "quota or spending cap") {
			t.Errorf("quota error: %+v", f)
		}
		rg.ark.Enqueue(arktest.Response{Content: []string{"partial "}, StreamError: &arktest.ErrorBody{Code: "OutputTextSensitiveContentDetected", Message: "x"}})
		f = rg.ask(t, msg("q5")).final()
		if f.Outcome != OutcomeInterrupted || !strings.Contains(f.Note, "moderation") || f.Text != "partial " {
			t.Errorf("moderation mid-stream: %+v", f)
		}
	})
}

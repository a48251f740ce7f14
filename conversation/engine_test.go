package conversation

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

func TestEngineAnswersAndRemembers(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		r := rg.ask(t, msg("hello there"))
		if f := r.final(); f.Outcome != OutcomeDone || f.Text != "You said: hello there" || f.Note != "" {
			t.Fatalf("final frame %+v", f)
		}
		if r.begun != 1 {
			t.Errorf("Begin called %d times", r.begun)
		}
		rg.ask(t, msg("and again"))
		reqs := rg.ark.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		got := reqs[1].Messages
		if len(got) != 4 || got[1].Text != "hello there" || got[2].Text != "You said: hello there" || got[3].Text != "and again" {
			t.Fatalf("history not sent: %+v", got)
		}
		if !strings.Contains(got[0].Text, "Ada") || got[0].Role != "system" {
			t.Errorf("system prompt not templated: %q", got[0].Text)
		}
	})
}

func TestEngineDropsDuplicateDeliveries(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		m := msg("once please")
		rg.ask(t, m)
		r := rg.ask(t, m)
		if len(r.frames) != 0 || len(r.notices) != 0 || r.begun != 0 {
			t.Fatalf("duplicate answered: %+v", r)
		}
		if n := len(rg.ark.Requests()); n != 1 {
			t.Fatalf("%d Ark requests for one message", n)
		}
	})
}

func TestEngineIgnoresUnaddressedFollowupsOutsideItsThreads(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		m := msg("chatter between humans")
		m.Mentioned = false
		if r := rg.ask(t, m); len(r.frames)+len(r.notices) != 0 {
			t.Fatal("answered a message in a thread the bot is not in")
		}
		cmd := msg("/reset")
		cmd.Mentioned = false
		if r := rg.ask(t, cmd); len(r.frames)+len(r.notices) != 0 {
			t.Fatal("answered a command typed in a thread the bot is not in")
		}
		rg.ask(t, msg("hi bot"))
		m = msg("follow-up without mention")
		m.Mentioned = false
		if f := rg.ask(t, m).final(); f.Text != "You said: follow-up without mention" {
			t.Fatalf("follow-up not answered: %+v", f)
		}
	})
}

// A follow-up written while the bot's first answer in a thread streams
// (nothing saved yet, but the thread locked) is answered after it.
func TestFollowUpDuringTheFirstAnswer(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Content: []string{"first ", "answer"}, PerChunk: 200 * time.Millisecond})
		first := msg("start")
		first.Thread = "t-first"
		r := &recorder{t: t}
		done := make(chan struct{})
		go func() { rg.engine.Handle(context.Background(), first, r); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if held, _ := rdb.Exists(context.Background(), rg.store.lockKey(first.ThreadKey())).Result(); held == 1 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		m := msg("and also")
		m.Thread, m.Mentioned = "t-first", false
		if f := rg.ask(t, m).final(); f.Text != "You said: and also" {
			t.Fatalf("follow-up during the first answer: %+v", f)
		}
		<-done
		if f := r.final(); f.Text != "first answer" {
			t.Fatalf("first answer: %+v", f)
		}
	})
}

func TestModelCommands(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		if n := rg.ask(t, msg("/model gpt-5")).notice(); !strings.Contains(n, "doubao, deepseek-r1, tiny, vip") {
			t.Errorf("unknown model answer lacks the valid names: %q", n)
		}
		if n := rg.ask(t, msg("/model DeepSeek-R1")).notice(); !strings.Contains(n, "This thread now uses **deepseek-r1**") {
			t.Errorf("switch answer: %q", n)
		}
		rg.ask(t, msg("think hard"))
		if got := rg.ark.Requests()[0].Model; got != "deepseek-r1-250528" {
			t.Errorf("thread model not used: %q", got)
		}
		// Channel scope: a message outside a thread switches the channel, and
		// a new thread in it picks that up while t1 keeps its own choice.
		chm := msg("/model doubao")
		chm.Thread, chm.InThread = "", false
		if n := rg.ask(t, chm).notice(); !strings.Contains(n, "New conversations in this channel now use **doubao**") {
			t.Errorf("channel switch answer: %q", n)
		}
		other := msg("/model")
		other.Thread = "t2"
		if n := rg.ask(t, other).notice(); !strings.Contains(n, "Current model: **doubao**") || !strings.Contains(n, "chosen for this channel") {
			t.Errorf("/model in a new thread: %q", n)
		}
		if n := rg.ask(t, msg("/models")).notice(); !strings.Contains(n, "▸ **deepseek-r1**") || !strings.Contains(n, "chosen for this thread") {
			t.Errorf("/models: %q", n)
		}
		if n := rg.ask(t, msg("/model vip")).notice(); !strings.Contains(n, "reserved for admins") {
			t.Errorf("admins-only model switch: %q", n)
		}
		locked := msg("/model doubao")
		locked.User.CanSwitchModel = false
		if n := rg.ask(t, locked).notice(); !strings.Contains(n, "Only the bot's model admins") {
			t.Errorf("model_admins not enforced: %q", n)
		}
		if n := rg.ask(t, msg("/frobnicate")).notice(); !strings.Contains(n, "/help") {
			t.Errorf("unknown command: %q", n)
		}
	})
}

func TestResetForgetsTheThread(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ask(t, msg("first"))
		if n := rg.ask(t, msg("/reset")).notice(); !strings.Contains(n, "forgotten") {
			t.Errorf("/reset: %q", n)
		}
		rg.ask(t, msg("second"))
		if got := rg.ark.Requests()[1].Messages; len(got) != 2 {
			t.Fatalf("history survived /reset: %+v", got)
		}
	})
}

func TestContextKeepsTheNewestTurnsThatFit(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ask(t, msg("/model tiny"))
		for _, w := range []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"} {
			rg.ask(t, msg(w+" "+strings.Repeat("x", 120)))
		}
		last := rg.ark.Requests()[5].Messages
		if len(last) < 4 || len(last) >= 12 {
			t.Fatalf("want a trimmed history, got %d messages", len(last))
		}
		if last[1].Role != "user" {
			t.Errorf("history starts with %s, not a user turn", last[1].Role)
		}
		if !strings.HasPrefix(last[len(last)-2].Text, "You said: echo") {
			t.Errorf("newest exchange missing: %q", last[len(last)-2].Text)
		}
		if strings.Contains(last[1].Text, "alpha") {
			t.Error("oldest turn kept although the window is full")
		}
		// A message too big for the window on its own is refused, not sent.
		r := rg.ask(t, msg(strings.Repeat("big ", 400)))
		if f := r.final(); f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "too long for tiny") {
			t.Errorf("oversized message: %+v", f)
		}
		if n := len(rg.ark.Requests()); n != 6 {
			t.Errorf("oversized message was sent to Ark (%d requests)", n)
		}
	})
}

func TestArkErrorsReachTheUser(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Status: 404, ErrorCode: "ModelNotOpen", ErrorMessage: "not activated"})
		f := rg.ask(t, msg("hi")).final()
		if f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "开通管理") {
			t.Errorf("ModelNotOpen: %+v", f)
		}
		// A failure before any text saves nothing, so a retry starts clean.
		rg.ask(t, msg("hi again"))
		if got := rg.ark.Requests()[1].Messages; len(got) != 2 {
			t.Errorf("failed turn was saved: %+v", got)
		}

		rg.ark.Enqueue(arktest.Response{Status: 429, ErrorCode: "RateLimitExceeded.EndpointRPMExceeded", RetryAfter: "0"})
		if f := rg.ask(t, msg("busy?")).final(); f.Outcome != OutcomeDone {
			t.Errorf("429 not retried: %+v", f)
		}

		// A 429 storm and a 5xx storm outlast the retries: a clear error, never a hung answer.
		for _, storm := range []arktest.Response{
			{Status: 429, ErrorCode: "RateLimitExceeded.EndpointTPMExceeded"},
			{Status: 503, ErrorCode: "InternalServiceError"},
		} {
			rg.ark.Enqueue(storm, storm, storm, storm)
			f := rg.ask(t, msg("storm")).final()
			if f.Outcome != OutcomeFailed || f.Note == "" || f.Text != "" {
				t.Errorf("%s storm: %+v", storm.ErrorCode, f)
			}
		}
		rg.ark.Enqueue(arktest.Response{Status: 429, ErrorCode: "QuotaExceeded"})
		if f := rg.ask(t, msg("quota")).final(); !strings.Contains(strings.ToLower(f.Note), "quota") {
			t.Errorf("QuotaExceeded: %+v", f)
		}

		rg.ark.Enqueue(arktest.Response{Content: []string{"partial ", "answer"}, CutAfter: 2})
		f = rg.ask(t, msg("cut me")).final()
		if f.Outcome != OutcomeInterrupted || f.Text != "partial answer" || f.Note == "" {
			t.Errorf("cut stream: %+v", f)
		}
		rg.ark.Enqueue(arktest.Response{Content: []string{"so far"}, StreamError: &arktest.ErrorBody{Code: "InternalServiceError", Message: "boom"}})
		f = rg.ask(t, msg("error mid-stream")).final()
		if f.Outcome != OutcomeInterrupted || f.Text != "so far" || !strings.Contains(f.Note, "interrupted") {
			t.Errorf("mid-stream error: %+v", f)
		}
		rg.ark.Enqueue(arktest.Response{Content: []string{"long"}, FinishReason: "length"})
		if f := rg.ask(t, msg("write a novel")).final(); f.Outcome != OutcomeTruncated || !strings.Contains(f.Note, "cut") {
			t.Errorf("length: %+v", f)
		}
		rg.ark.Enqueue(arktest.Response{Content: []string{"I"}, Hang: true})
		if f := rg.ask(t, msg("hang")).final(); f.Outcome != OutcomeInterrupted || f.Text != "I" {
			t.Errorf("hanging stream: %+v", f)
		}
	})
}

func TestPacerCoalescesRendersAndFinishesLast(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix, WithRenderInterval("test", 100*time.Millisecond))
		chunks := make([]string, 60)
		for i := range chunks {
			chunks[i] = "tok "
		}
		rg.ark.Enqueue(arktest.Response{Content: chunks, PerChunk: 10 * time.Millisecond})
		r := &recorder{t: t, delay: 20 * time.Millisecond}
		if err := rg.engine.Handle(context.Background(), msg("stream"), r); err != nil {
			t.Fatal(err)
		}
		f := r.final()
		if f.Text != strings.Repeat("tok ", 60) {
			t.Fatalf("final text %q", f.Text)
		}
		if n := len(r.frames); n < 3 || n > 12 {
			t.Errorf("%d renders for a 600 ms stream at 100 ms pacing", n)
		}
		if r.frames[0].Text != "tok " {
			t.Errorf("first token not rendered at once: %q", r.frames[0].Text)
		}
		for i := 1; i < len(r.times); i++ {
			if gap := r.times[i].Sub(r.times[i-1]); gap < 95*time.Millisecond {
				t.Errorf("renders %d and %d only %v apart", i-1, i, gap)
			}
		}
	})
}

func TestStopKeepsWhatWasWritten(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three ", "four"}, PerChunk: 300 * time.Millisecond})
		m := msg("count slowly")
		r := &recorder{t: t}
		done := make(chan struct{})
		go func() { rg.engine.Handle(context.Background(), m, r); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) { // stop once "one " is on screen
			r.mu.Lock()
			shown := len(r.frames) > 0
			r.mu.Unlock()
			if !shown {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// Only the asker or an admin may stop it.
			if res := rg.engine.Stop(m.DedupeKey(), User{ID: "u2"}); !res.Running || res.Stopped || res.Owner != "u1" {
				t.Fatalf("another user's stop: %+v", res)
			}
			if res := rg.engine.Stop(m.DedupeKey(), m.User); res.Stopped {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		<-done
		if res := rg.engine.Stop(m.DedupeKey(), User{ID: "u2", Admin: true}); res.Running {
			t.Fatalf("a finished answer still runs: %+v", res)
		}
		f := r.final()
		if f.Outcome != OutcomeStopped || f.Note != "Stopped." || f.Text == "" || strings.Contains(f.Text, "four") {
			t.Fatalf("stop: %+v", f)
		}
		rg.ask(t, msg("next"))
		hist := rg.ark.Requests()[1].Messages
		if len(hist) != 4 || hist[2].Text != f.Text {
			t.Errorf("the stopped answer was not kept as context: %+v", hist)
		}
	})
}

func TestShutdownInterruptsVisibly(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Content: []string{"slow ", "answer ", "never ", "ends"}, PerChunk: time.Second})
		r := &recorder{t: t}
		done := make(chan struct{})
		go func() { rg.engine.Handle(context.Background(), msg("long job"), r); close(done) }()
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rg.engine.Shutdown(ctx, 200*time.Millisecond)
		<-done
		if f := r.final(); f.Outcome != OutcomeInterrupted || !strings.Contains(f.Note, "restarted") {
			t.Errorf("shutdown: %+v", f)
		}
		late := rg.ask(t, msg("too late"))
		if n := late.notice(); !strings.Contains(n, "restarting") {
			t.Errorf("message during shutdown: %q", n)
		}
		// The lock was released: another engine can take the thread at once.
		th, err := rg.store.Lock(context.Background(), msg("").ThreadKey(), "test:u1")
		if err != nil {
			t.Fatalf("lock still held after shutdown: %v", err)
		}
		th.Release(context.Background())
	})
}

func TestLimits(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.engine.limits.RequestsPerMinute = 2
		rg.engine.limits.DailyTokens = 0
		for i := 0; i < 2; i++ {
			if f := rg.ask(t, msg("ok")).final(); f.Outcome != OutcomeDone {
				t.Fatalf("request %d refused: %+v", i, f)
			}
		}
		if f := rg.ask(t, msg("third")).final(); f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "faster than the limit of 2") {
			t.Errorf("rate limit: %+v", f)
		}
		admin := msg("admins are exempt")
		admin.User.Admin = true
		if f := rg.ask(t, admin).final(); f.Outcome != OutcomeDone {
			t.Errorf("admin limited: %+v", f)
		}
		rg.engine.limits.RequestsPerMinute = 0
		rg.engine.limits.DailyTokens = 10 // the default echo's usage is well over this
		if f := rg.ask(t, msg("quota")).final(); f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "daily allowance of 10 tokens") {
			t.Errorf("daily quota: %+v", f)
		}
		if n := rg.ask(t, msg("/usage")).notice(); !strings.Contains(n, "of 10") || !strings.Contains(n, "doubao:") {
			t.Errorf("/usage: %q", n)
		}
		if f := rg.ask(t, msg(strings.Repeat("é", 20000))).final(); !strings.Contains(f.Note, "cut to its first 16000 characters") {
			// quota still applies; switch it off to see the cut notice
			rg.engine.limits.DailyTokens = 0
			if f := rg.ask(t, msg(strings.Repeat("é", 20000))).final(); !strings.Contains(f.Note, "cut to its first 16000 characters") {
				t.Errorf("long input: %+v", f.Note)
			}
		}
		if n := rg.ask(t, msg("   ")).notice(); !strings.Contains(n, "without a question") {
			t.Errorf("empty mention: %q", n)
		}
	})
}

func TestImagesAndAttachments(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		m := msg("what is this?")
		m.Images = []Image{{URL: "data:image/png;base64,iVBORw0KGgo="}}
		m.Files = []File{{Name: "notes.md", Text: "# Notes"}}
		m.Ignored = []string{"movie.mp4"}
		f := rg.ask(t, m).final()
		got := rg.ark.Requests()[0].Messages[1]
		if len(got.Images) != 1 || !strings.Contains(got.Text, "[Attached file notes.md]") {
			t.Errorf("vision request: %+v", got)
		}
		if !strings.Contains(f.Note, "movie.mp4") {
			t.Errorf("ignored attachment not mentioned: %q", f.Note)
		}
		rg.ask(t, msg("/model deepseek-r1"))
		m = msg("and this?")
		m.Images = []Image{{URL: "data:image/png;base64,iVBORw0KGgo="}}
		f = rg.ask(t, m).final()
		if got := rg.ark.Requests()[1].Messages; len(got[len(got)-1].Images) != 0 || !strings.Contains(f.Note, "can't see images") {
			t.Errorf("non-vision model got images or no notice: %q", f.Note)
		}
	})
}

// Two engines (two replicas) on one real Redis behave as one bot: each
// message is answered once, and answers in one thread never overlap.
func TestTwoReplicasOneRedis(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		a := newRig(t, rdb, prefix)
		b := newRig(t, rdb, prefix)
		// Both fakes answer slowly so overlapping answers would show.
		slow := func(req arktest.Request) arktest.Response {
			last := req.Messages[len(req.Messages)-1].Text
			return arktest.Response{Content: []string{"re: ", last}, PerChunk: 30 * time.Millisecond}
		}
		a.ark.SetHandler(slow)
		b.ark.SetHandler(slow)

		const n = 8
		var wg sync.WaitGroup
		answers := make(chan Frame, 4*n)
		for i := 0; i < n; i++ {
			m := msg("q" + string(rune('a'+i)))
			for _, e := range []*Engine{a.engine, b.engine, a.engine, b.engine} { // every message delivered 4 times
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := &recorder{t: t}
					e.Handle(context.Background(), m, r)
					if len(r.frames) > 0 {
						answers <- r.final()
					}
				}()
			}
		}
		wg.Wait()
		close(answers)
		got := 0
		for f := range answers {
			got++
			if f.Outcome != OutcomeDone {
				t.Errorf("answer not done: %+v", f)
			}
		}
		if got != n {
			t.Fatalf("%d answers for %d messages", got, n)
		}
		turns, err := rdb.LRange(context.Background(), a.store.turnsKey(msg("").ThreadKey()), 0, -1).Result()
		if err != nil || len(turns) != 2*n {
			t.Fatalf("want %d saved turns, got %d (%v)", 2*n, len(turns), err)
		}
		// Serialized: each request saw every earlier exchange in full.
		all := append(a.ark.Requests(), b.ark.Requests()...)
		seen := map[int]bool{}
		for _, r := range all {
			seen[len(r.Messages)] = true
		}
		for k := 0; k < n; k++ {
			if !seen[2+2*k] {
				t.Errorf("no request carried %d earlier exchanges: answers overlapped", k)
			}
		}
	})
}

// When Redis goes away the user hears so, and the bot recovers by itself.
func TestRedisOutage(t *testing.T) {
	rs := redistest.NewOwned(t)
	rg := newRig(t, rs.Client(), rs.Prefix)
	rg.ask(t, msg("before"))
	rs.Stop()
	r := rg.ask(t, msg("during"))
	if n := r.notice(); !strings.Contains(n, "can't reach my memory") {
		t.Fatalf("outage notice: %q", n)
	}
	if err := rg.store.Ping(context.Background()); err == nil {
		t.Fatal("ping succeeded with Redis down")
	}
	rs.Start()
	f := rg.ask(t, msg("after")).final()
	if f.Outcome != OutcomeDone {
		t.Fatalf("no recovery: %+v", f)
	}
	if got := rg.ark.Requests(); len(got) != 2 || len(got[1].Messages) != 4 {
		t.Fatalf("history lost across the outage: %d requests", len(got))
	}
}

// shortLockRig is a rig whose thread locks last 300 ms unless renewed, and
// whose messages wait only 50 ms for a busy thread.
func shortLockRig(t *testing.T, rdb redis.UniversalClient, prefix string) *rig {
	rg := newRig(t, rdb, prefix)
	opt := storeOptions(prefix)
	opt.LockTTL, opt.LockWait = 300*time.Millisecond, 50*time.Millisecond
	rg.store = NewStore(rdb, opt)
	rg.engine.store = rg.store
	return rg
}

// An answer that outlasts the thread lock's TTL renews it: a message sent
// meanwhile finds the thread busy, and the lock is gone once the answer
// is saved.
func TestLongAnswerKeepsItsLock(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := shortLockRig(t, rdb, prefix)
		words := make([]string, 40)
		for i := range words {
			words[i] = "w "
		}
		rg.ark.Enqueue(arktest.Response{Content: words, PerChunk: 25 * time.Millisecond}) // 1 s, over three TTLs
		done := make(chan *recorder)
		go func() { done <- rg.ask(t, msg("a long one")) }()
		time.Sleep(800 * time.Millisecond)
		second := rg.ask(t, msg("meanwhile"))
		if f := second.final(); f.Outcome != OutcomeFailed || f.Note != msgBusy {
			t.Errorf("second message: %+v, want the busy note", f)
		}
		if f := (<-done).final(); f.Outcome != OutcomeDone || f.Text != strings.Repeat("w ", 40) {
			t.Errorf("long answer: %+v", f)
		}
		if n, err := rdb.Exists(context.Background(), rg.store.lockKey(msg("").ThreadKey())).Result(); err != nil || n != 0 {
			t.Errorf("lock still there after the answer: %d, %v", n, err)
		}
	})
}

// The lock an answer takes in its admission is renewed from the start: a
// sign of life slower than the lock's TTL (a platform's rate limit) doesn't
// let a second message take the thread, and the answer is saved.
func TestSlowSignOfLifeKeepsTheAdmissionsLock(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := shortLockRig(t, rdb, prefix)
		slow := &recorder{t: t, slowSign: time.Second}
		done := make(chan struct{})
		go func() { _ = rg.engine.Handle(context.Background(), msg("first"), slow); close(done) }()
		time.Sleep(700 * time.Millisecond) // over two TTLs into the sign of life
		if f := rg.ask(t, msg("meanwhile")).final(); f.Outcome != OutcomeFailed || f.Note != msgBusy {
			t.Errorf("second message: %+v, want the busy note", f)
		}
		<-done
		if f := slow.final(); f.Outcome != OutcomeDone || f.Note != "" {
			t.Errorf("answer after a slow sign of life: %+v", f)
		}
		th, err := rg.store.Lock(context.Background(), msg("").ThreadKey(), "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		defer th.Release(context.Background())
		if len(th.Turns) != 2 || th.Turns[0].Text != "first" {
			t.Errorf("saved turns %+v", th.Turns)
		}
	})
}

// /retry answers the latest question again with the model in use now and
// replaces the latest answer in memory; a retry that fails keeps the old
// answer; with nothing answered yet it says so.
func TestRetryReplacesTheLatestAnswer(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		if r := rg.ask(t, msg("/retry")); r.begun != 0 || !strings.Contains(r.notice(), "no answer in this conversation to redo") {
			t.Errorf("retry with nothing to redo: begun %d, notices %q", r.begun, r.notices)
		}
		n := 0
		rg.ark.SetHandler(func(req arktest.Request) arktest.Response {
			n++
			return arktest.Response{Content: []string{fmt.Sprintf("answer %d to %s", n, req.Messages[len(req.Messages)-1].Text)}}
		})
		first := msg("first question")
		rg.ask(t, first)
		second := msg("second question")
		rg.ask(t, second)
		rg.ask(t, msg("/model deepseek-r1"))
		// A button under the first answer names its question: not the latest.
		if r := rg.ask(t, msg("/retry "+first.ID)); r.begun != 0 || !strings.Contains(r.notice(), "Only the latest answer") {
			t.Errorf("retry of an older answer: begun %d, notices %q", r.begun, r.notices)
		}
		again := msg("/regenerate " + second.ID)
		again.User.Name = "Bob"
		r := rg.ask(t, again)
		if f := r.final(); f.Outcome != OutcomeDone || f.Text != "answer 3 to second question" || f.Model != "deepseek-r1" ||
			!strings.Contains(f.Note, "A new answer to: “second question”") {
			t.Fatalf("retry: %+v", f)
		}
		reqs := rg.ark.Requests()
		got := reqs[len(reqs)-1]
		if got.Model != "deepseek-r1-250528" || len(got.Messages) != 4 || got.Messages[3].Text != "second question" || got.Messages[2].Text != "answer 1 to first question" {
			t.Fatalf("retry request: model %s, messages %+v", got.Model, got.Messages)
		}

		// The new answer keeps its question's ID (a button under it works)
		// and asker, whoever asked for the retry.
		if q, ok, err := rg.store.LastQuestion(context.Background(), first.ThreadKey()); err != nil || !ok || q.ID != second.ID || q.User != "Ada" {
			t.Fatalf("latest question %+v, %v, %v; want ID %s by Ada", q, ok, err, second.ID)
		}

		// The stored thread holds the new answer in place of the old one.
		rg.ask(t, msg("third question"))
		reqs = rg.ark.Requests()
		var texts []string
		for _, m := range reqs[len(reqs)-1].Messages[1:] {
			texts = append(texts, m.Text)
		}
		want := []string{"first question", "answer 1 to first question", "second question", "answer 3 to second question", "third question"}
		if strings.Join(texts, "|") != strings.Join(want, "|") {
			t.Fatalf("history after a retry:\n got %q\nwant %q", texts, want)
		}

		rg.ask(t, msg("/model doubao"))

		// A retry that fails before any text keeps the answer it would replace.
		rg.ark.SetHandler(func(arktest.Request) arktest.Response {
			return arktest.Response{Status: 404, ErrorCode: "ModelNotOpen"}
		})
		if f := rg.ask(t, msg("/retry")).final(); f.Outcome != OutcomeFailed {
			t.Fatalf("failed retry: %+v", f)
		}
		rg.ark.SetHandler(nil)
		rg.ask(t, msg("fourth"))
		reqs = rg.ark.Requests()
		last := reqs[len(reqs)-1].Messages
		if len(last) != 8 || last[6].Text != "answer 4 to third question" {
			t.Fatalf("a failed retry changed the history: %+v", last)
		}
	})
}

// An adapter's name lookup is waited for only after the sign of life, and
// the name it gives is the one the prompt and the saved question carry.
func TestResolveNameAfterTheSignOfLife(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		r := &recorder{t: t}
		m := msg("hello")
		m.User.Name = ""
		m.ResolveName = func() string {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.begun != 1 {
				t.Errorf("name asked for with %d signs of life shown", r.begun)
			}
			return "Grace"
		}
		if err := rg.engine.Handle(context.Background(), m, r); err != nil {
			t.Fatal(err)
		}
		if f := r.final(); f.Outcome != OutcomeDone {
			t.Fatalf("answer %+v", f)
		}
		reqs := rg.ark.Requests()
		if len(reqs) != 1 || !strings.Contains(reqs[0].Messages[0].Text, "Grace") {
			t.Fatalf("system prompt without the resolved name: %+v", reqs)
		}
		th, err := rg.store.Lock(context.Background(), m.ThreadKey(), "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		defer th.Release(context.Background())
		if len(th.Turns) != 2 || th.Turns[0].User != "Grace" {
			t.Errorf("saved question %+v", th.Turns)
		}
	})
}

// /stop typed in a conversation stops its answer in progress, on this
// replica or on the one running it, for the asker or an admin; it says
// when there is none, or when the answer is someone else's.
func TestStopCommand(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		a := newRig(t, rdb, prefix)
		b := newRig(t, rdb, prefix)
		ctx, cancel := context.WithCancel(context.Background())
		listening := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() { a.engine.ListenForStops(ctx, func() { listening <- struct{}{} }); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		select {
		case <-listening:
		case <-time.After(5 * time.Second):
			t.Fatal("not listening for stop requests")
		}
		if got := b.ask(t, msg("/stop")).notice(); got != msgNothingToStop {
			t.Errorf("/stop with nothing running: %q", got)
		}
		inChannel := msg("/stop")
		inChannel.Platform, inChannel.Thread, inChannel.InThread = PlatformDiscord, "", false
		if got := b.ask(t, inChannel).notice(); !strings.HasPrefix(got, msgNothingToStop) || !strings.Contains(got, "Stop button") {
			t.Errorf("/stop in a Discord channel with nothing running: %q", got)
		}
		grace := User{ID: "u2", Name: "Grace"}
		admin := User{ID: "u3", Name: "Root", Admin: true}
		for _, c := range []struct {
			by   *rig
			user User
		}{{a, msg("").User}, {b, msg("").User}, {b, admin}} { // the asker here and from another replica, an admin elsewhere
			a.ark.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three ", "four"}, PerChunk: 300 * time.Millisecond})
			r := &recorder{t: t}
			answered := make(chan struct{})
			go func() { a.engine.Handle(context.Background(), msg("count slowly"), r); close(answered) }()
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) { // stop once "one " is on screen
				r.mu.Lock()
				shown := len(r.frames) > 0
				r.mu.Unlock()
				if shown {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, by := range []*rig{a, b} { // someone else may not, here or elsewhere
				m := msg("/stop")
				m.User = grace
				if got := by.ask(t, m).notice(); got != msgNotYours {
					t.Errorf("/stop by another user: %q", got)
				}
			}
			stop := msg("/stop")
			stop.User = c.user
			if got := c.by.ask(t, stop).notice(); got != msgStopped {
				t.Errorf("/stop by %s: %q", c.user.Name, got)
			}
			select {
			case <-answered:
			case <-time.After(5 * time.Second):
				t.Fatal("the answer did not stop")
			}
			if f := r.final(); f.Outcome != OutcomeStopped || f.Text == "" || strings.Contains(f.Text, "four") {
				t.Errorf("stopped answer (by %s): %+v", c.user.Name, f)
			}
		}
	})
}

// /help lists every command, and on Slack says how to type them in a
// thread, where Slack takes "/" for its own commands.
func TestHelp(t *testing.T) {
	rg := newRig(t, redistest.New(t).Client(), "help")
	for _, platform := range []string{"test", PlatformSlack} {
		m := msg("/help")
		m.Platform = platform
		help := rg.ask(t, m).notice()
		for _, c := range []string{CmdModel, CmdModels, CmdReset, CmdRetry, CmdStop, CmdUsage, CmdHelp} {
			if !strings.Contains(help, "`/"+c) {
				t.Errorf("%s: /help does not list /%s", platform, c)
			}
		}
		if slack := strings.Contains(help, "`!stop`"); slack != (platform == PlatformSlack) {
			t.Errorf("%s: /help says how to type commands in a Slack thread: %v", platform, slack)
		}
	}
}

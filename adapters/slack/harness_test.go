package slack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// scripted is a conversation.Handler standing in for the engine: it dedupes
// on DedupeKey in memory, answers commands with a Notice, answers a
// Mentioned=false message only in a thread it already answered in, and
// streams a scripted answer: Begin, several growing frames, a final frame.
type scripted struct {
	answer func(m conversation.Message) string // the full answer (default: "Answer to: <text>")
	note   string                              // the final frame's Note
	frames int                                 // intermediate frames (default 6; negative: none)
	step   time.Duration                       // between frames (default 15 ms)
	// gate, if set, is received from after Begin and before the final frame.
	gate chan struct{}

	active atomic.Int64 // Handle calls in progress

	mu      sync.Mutex
	calls   []conversation.Message // every Handle call, duplicates too
	seen    map[string]bool
	threads map[string]bool
	done    map[string]bool // dedupe keys whose handling finished
	errs    []error
	began   chan string // dedupe keys after Begin returned (buffered)
}

func newScripted() *scripted {
	return &scripted{seen: map[string]bool{}, threads: map[string]bool{}, done: map[string]bool{}, began: make(chan string, 256)}
}

func (h *scripted) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	h.active.Add(1)
	defer h.active.Add(-1)
	if m.ResolveName != nil { // as the engine does, though before the sign of life
		m.User.Name, m.ResolveName = m.ResolveName(), nil
	}
	h.mu.Lock()
	h.calls = append(h.calls, m)
	dup := h.seen[m.DedupeKey()]
	h.seen[m.DedupeKey()] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.done[m.DedupeKey()] = true
		h.mu.Unlock()
	}()
	if dup {
		return nil
	}
	if strings.HasPrefix(m.Text, "/") {
		return r.Notice(ctx, "**Model** set: `"+m.Text+"`")
	}
	h.mu.Lock()
	known := h.threads[m.ThreadKey()]
	h.threads[m.ThreadKey()] = true
	h.mu.Unlock()
	if !m.Mentioned && !known {
		return nil
	}
	if err := r.Begin(ctx); err != nil {
		h.fail(err)
	}
	h.began <- m.DedupeKey()
	if h.gate != nil {
		<-h.gate
	}
	text := "Answer to: " + m.Text
	if h.answer != nil {
		text = h.answer(m)
	}
	frames, step := h.frames, h.step
	if frames == 0 {
		frames = 6
	}
	frames = max(frames, 0)
	if step == 0 {
		step = 15 * time.Millisecond
	}
	n := utf8.RuneCountInString(text)
	for i := 1; i <= frames; i++ {
		cut := byteOffset(text, n*i/(frames+1))
		if err := r.Render(ctx, conversation.Frame{Text: text[:cut], Reasoning: "pondering"}); err != nil {
			h.fail(err)
		}
		time.Sleep(step)
	}
	if h.gate != nil {
		<-h.gate
	}
	return r.Render(ctx, conversation.Frame{Text: text, Final: true, Outcome: conversation.OutcomeDone, Note: h.note})
}

func (h *scripted) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, err)
}

func (h *scripted) Stop(string, conversation.User) conversation.StopResult {
	return conversation.StopResult{}
}

func (h *scripted) ModelChoices(context.Context, conversation.Message) []conversation.ModelChoice {
	return nil
}

func (h *scripted) messages() []conversation.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]conversation.Message(nil), h.calls...)
}

func (h *scripted) finished(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.done[key]
}

func (h *scripted) finishedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.done)
}

// testLog sends the adapter's log to t.Log until the test ends.
type testLog struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testLog) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func newTestLogger(t testing.TB) *slog.Logger {
	w := &testLog{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one test's fake Slack and adapter.
type env struct {
	t  *testing.T
	fs *slacktest.Server
	a  *Adapter
	h  *scripted
}

const fastScale = 60 // the budgets' and the fake's rates, sped up for tests

// setup starts a fake Slack and an adapter in Socket Mode (unless mut
// clears the app token), waits until it is ready, and stops both when the
// test ends.
func setup(t *testing.T, h *scripted, mut func(*config.Slack), opts ...Option) *env {
	t.Helper()
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs.Close) // after the adapter's cleanup: cleanups run last first
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	fs.AddUser(slacktest.User{ID: "U2", Name: "bob", RealName: "Bob Example"})
	a, _ := start(t, fs, h, mut, opts...)
	return &env{t: t, fs: fs, a: a, h: h}
}

// start runs an adapter on fs until the test ends or stop is called, and
// waits until it is ready.
func start(t *testing.T, fs *slacktest.Server, h conversation.Handler, mut func(*config.Slack), opts ...Option) (a *Adapter, stop func()) {
	t.Helper()
	cfg := config.Slack{
		BotToken: config.Secret(fs.BotToken()), AppToken: config.Secret(fs.AppToken()), APIURL: fs.APIURL(),
		ReplyInThreads: "mentioned", Streaming: "auto", EditInterval: config.Duration(20 * time.Millisecond),
		Admins: config.StringList{"U2"}, MaxConcurrent: 64,
	}
	if mut != nil {
		mut(&cfg)
	}
	limits := config.Limits{MaxImageBytes: 64 << 10, MaxFileBytes: 16 << 10}
	all := append([]Option{WithLogger(newTestLogger(t)), WithBudgets(DefaultBudgets().Scaled(fastScale)), WithShutdownGrace(5 * time.Second)}, opts...)
	a, err := New(cfg, limits, h, all...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-runErr:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	ready, cancelReady := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelReady()
	if err := slacktest.WaitFor(ready, a.Ready); err != nil {
		t.Fatal("timed out waiting for the adapter to be ready")
	}
	return a, stop
}

func (e *env) waitFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := slacktest.WaitFor(ctx, cond); err != nil {
		e.t.Fatalf("timed out waiting for %s", what)
	}
}

// send delivers an event over Socket Mode and waits for its ack.
func (e *env) send(o slacktest.EventOptions, ev map[string]any) slacktest.Sent {
	e.t.Helper()
	sent, err := e.fs.SendEvent(o, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := e.fs.WaitAck(ctx, sent.EnvelopeID); err != nil {
		e.t.Fatalf("not acked within 3 s: %v", err)
	}
	return sent
}

// key is the dedupe key the adapter should give a message at channel and ts.
func (e *env) key(channel, ts string) string {
	return "slack:" + e.fs.TeamID() + ":" + channel + ":" + ts
}

// waitDone waits until the handler finished the message.
func (e *env) waitDone(channel, ts string) {
	e.t.Helper()
	k := e.key(channel, ts)
	e.waitFor("handling of "+k, 15*time.Second, func() bool { return e.h.finished(k) })
}

// final returns the thread's bot messages once the handler is idle and no
// message is still streaming or marked in progress.
func (e *env) final(channel, thread string) []slacktest.Message {
	e.t.Helper()
	var msgs []slacktest.Message
	e.waitFor(fmt.Sprintf("final answer in %s/%s", channel, thread), 15*time.Second, func() bool {
		msgs = e.fs.Replies(channel, thread)
		if len(msgs) == 0 || e.h.active.Load() != 0 {
			return false
		}
		for _, m := range msgs {
			if m.Streaming || strings.HasSuffix(m.Visible(), cursorMark) || strings.Contains(m.Visible(), "Thinking…") {
				return false
			}
		}
		return true
	})
	return msgs
}

func visible(msgs []slacktest.Message) string {
	var parts []string
	for _, m := range msgs {
		parts = append(parts, m.Visible())
	}
	return strings.Join(parts, "\n")
}

// byteOffset returns the byte index of the n-th rune of s (len(s) if fewer).
func byteOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	return len(s)
}

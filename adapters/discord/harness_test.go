package discord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

const (
	guildID   = "300000000000000001"
	channelID = "400000000000000001"
	otherChan = "400000000000000002"
	threadID  = "500000000000000001"
)

var (
	alice = discordtest.User{ID: "600000000000000001", Username: "alice", GlobalName: "Alice"}
	bob   = discordtest.User{ID: "600000000000000002", Username: "bob"}
)

// scriptHandler stands in for the engine: it dedupes on DedupeKey, answers
// "/…" commands with a Notice, and streams a scripted answer otherwise,
// ending with OutcomeStopped when Stop is called.
type scriptHandler struct {
	mu       sync.Mutex
	calls    []conversation.Message
	seen     map[string]bool
	running  map[string]chan struct{}
	owners   map[string]string // running answers' askers
	done     map[string]chan struct{}
	stops    []string
	models   []conversation.ModelChoice
	modelFor []conversation.Message

	// answer returns the full answer for m (default "Answer to: <text>").
	answer func(m conversation.Message) string
	// frames is how many frames an answer streams in; interval between them.
	frames   int
	interval time.Duration
	// fail, when set, makes Handle return it after half the answer.
	fail error
	// beforeFinal runs just before the final frame is rendered.
	beforeFinal func()
}

func newScriptHandler() *scriptHandler {
	return &scriptHandler{
		seen: map[string]bool{}, running: map[string]chan struct{}{}, owners: map[string]string{}, done: map[string]chan struct{}{},
		frames: 6, interval: 10 * time.Millisecond,
	}
}

// set resets the handler's script to the defaults, then applies fn.
func (h *scriptHandler) set(fn func(*scriptHandler)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answer, h.frames, h.interval, h.fail, h.models, h.beforeFinal = nil, 6, 10*time.Millisecond, nil, nil, nil
	if fn != nil {
		fn(h)
	}
}

func (h *scriptHandler) doneCh(key string) chan struct{} {
	if h.done[key] == nil {
		h.done[key] = make(chan struct{})
	}
	return h.done[key]
}

func (h *scriptHandler) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	key := m.DedupeKey()
	h.mu.Lock()
	h.calls = append(h.calls, m)
	if h.seen[key] {
		h.mu.Unlock()
		return nil
	}
	h.seen[key] = true
	stop := make(chan struct{})
	h.running[key] = stop
	h.owners[key] = m.User.ID
	done := h.doneCh(key)
	answerFn, frames, interval, fail, beforeFinal := h.answer, h.frames, h.interval, h.fail, h.beforeFinal
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.running, key)
		delete(h.owners, key)
		h.mu.Unlock()
		close(done)
	}()

	if strings.HasPrefix(m.Text, "/") {
		return r.Notice(ctx, "notice for "+m.Text)
	}
	answer := "Answer to: " + m.Text
	if answerFn != nil {
		answer = answerFn(m)
	}
	if err := r.Begin(ctx); err != nil {
		return err
	}
	runes := []rune(answer)
	for i := 1; i <= frames; i++ {
		n := len(runes) * i / (frames + 1)
		if fail != nil && i > frames/2 {
			return fail
		}
		select {
		case <-stop:
			return r.Render(ctx, conversation.Frame{Text: string(runes[:n]), Final: true, Outcome: conversation.OutcomeStopped})
		case <-ctx.Done():
			return r.Render(ctx, conversation.Frame{Text: string(runes[:n]), Final: true, Outcome: conversation.OutcomeInterrupted, Note: "The bot is restarting."})
		case <-time.After(interval):
		}
		if err := r.Render(ctx, conversation.Frame{Text: string(runes[:n]), Model: "m"}); err != nil {
			return err
		}
	}
	if beforeFinal != nil {
		beforeFinal()
	}
	return r.Render(ctx, conversation.Frame{Text: answer, Final: true, Outcome: conversation.OutcomeDone, Model: "m"})
}

// Stop keeps the engine's contract: the asker or an admin stops a running answer.
func (h *scriptHandler) Stop(key string, by conversation.User) conversation.StopResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.running[key]
	if !ok {
		return conversation.StopResult{}
	}
	res := conversation.StopResult{Running: true, Owner: h.owners[key], Stopped: by.Admin || by.ID == h.owners[key]}
	if res.Stopped {
		h.stops = append(h.stops, key)
		close(ch)
		delete(h.running, key)
		delete(h.owners, key)
	}
	return res
}

// runs reports whether the answer with that key is running.
func (h *scriptHandler) runs(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.running[key]
	return ok
}

func (h *scriptHandler) ModelChoices(ctx context.Context, m conversation.Message) []conversation.ModelChoice {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.modelFor = append(h.modelFor, m)
	return h.models
}

// waitDone waits for the handler to finish the message with that key.
func (h *scriptHandler) waitDone(t *testing.T, key string) {
	t.Helper()
	h.mu.Lock()
	ch := h.doneCh(key)
	h.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("handler did not finish %s", key)
	}
}

// callsFor returns the Handle calls for a message ID.
func (h *scriptHandler) callsFor(id string) []conversation.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []conversation.Message
	for _, m := range h.calls {
		if m.ID == id {
			out = append(out, m)
		}
	}
	return out
}

func (h *scriptHandler) waitCall(t *testing.T, id string) conversation.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c := h.callsFor(id); len(c) > 0 {
			return c[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no Handle call for %s", id)
	return conversation.Message{}
}

type harness struct {
	t    *testing.T
	fake *discordtest.Server
	a    *Adapter
	h    *scriptHandler
}

type setup struct {
	cfg      func(*config.Discord)
	fakeOpts []discordtest.Option
	opts     []Option
	handler  func(*scriptHandler)
	// engine, when set, replaces the scripted handler.
	engine conversation.Handler
}

func testLogger() *slog.Logger {
	if os.Getenv("DISCORD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func ptr[T any](v T) *T { return &v }

// with returns a copy of the harness whose helpers report to t.
func (hs *harness) with(t *testing.T) *harness {
	c := *hs
	c.t = t
	return &c
}

// start runs a fake Discord and an adapter connected to it.
func start(t *testing.T, s setup) *harness {
	t.Helper()
	fake := discordtest.New(s.fakeOpts...)
	t.Cleanup(fake.Close)
	fake.AddGuild(guildID, "Test guild")
	fake.AddChannel(discordtest.Channel{ID: channelID, GuildID: guildID, Name: "general", Type: discordtest.ChannelText})
	fake.AddChannel(discordtest.Channel{ID: otherChan, GuildID: guildID, Name: "random", Type: discordtest.ChannelText})
	fake.AddChannel(discordtest.Channel{ID: threadID, GuildID: guildID, ParentID: channelID, Name: "a thread", Type: discordtest.ChannelPublicThread})

	cfg := config.Discord{
		Token: config.Secret(fake.Token()), APIURL: fake.APIURL(), GuildIDs: config.StringList{guildID},
		AllowDMs: ptr(true), ThreadFollowups: ptr(true), ShardCount: 1, MaxConcurrent: 100,
	}
	if s.cfg != nil {
		s.cfg(&cfg)
	}
	h := newScriptHandler()
	if s.handler != nil {
		s.handler(h)
	}
	opts := append([]Option{WithLogger(testLogger()), WithChannelBudget(5, 250*time.Millisecond), WithShutdownWait(5 * time.Second)}, s.opts...)
	var handler conversation.Handler = h
	if s.engine != nil {
		handler = s.engine
	}
	a, err := New(cfg, config.Limits{MaxImageBytes: 1 << 20, MaxFileBytes: 64 << 10}, handler, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	err = fake.WaitFor(10*time.Second, func() bool {
		return a.Ready() && len(fake.Commands()[firstScope(cfg)]) > 0
	})
	if err != nil {
		select {
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		default:
		}
		t.Fatalf("adapter not ready: %v", err)
	}
	return &harness{t: t, fake: fake, a: a, h: h}
}

func firstScope(cfg config.Discord) string {
	if len(cfg.GuildIDs) > 0 {
		return cfg.GuildIDs[0]
	}
	return ""
}

// mention posts "<@bot> text" from u in a channel.
func (hs *harness) mention(u discordtest.User, channel, text string) discordtest.Message {
	hs.t.Helper()
	bot := hs.fake.Bot()
	m, err := hs.fake.PostUserMessage(discordtest.MessageSpec{
		ChannelID: channel, GuildID: guildID, Author: u, Content: "<@" + bot.ID + "> " + text, Mentions: []discordtest.User{bot},
	})
	if err != nil {
		hs.t.Fatal(err)
	}
	return m
}

func (hs *harness) post(spec discordtest.MessageSpec) discordtest.Message {
	hs.t.Helper()
	if spec.GuildID == "" && spec.ChannelID != "dm" && !strings.HasPrefix(spec.ChannelID, "dm") {
		spec.GuildID = guildID
	}
	m, err := hs.fake.PostUserMessage(spec)
	if err != nil {
		hs.t.Fatal(err)
	}
	return m
}

// botReplies returns the bot's channel messages (not interaction responses)
// replying to id, following continuation pieces.
func (hs *harness) answerTo(channel, id string) []discordtest.Message {
	var out []discordtest.Message
	msgs := hs.fake.Messages(channel)
	parent := id
	for {
		found := false
		for _, m := range msgs {
			if m.Author.ID == hs.fake.Bot().ID && m.InteractionID == "" && m.ReferenceID == parent {
				out = append(out, m)
				parent = m.ID
				found = true
				break
			}
		}
		if !found {
			return out
		}
	}
}

func texts(ms []discordtest.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Content)
	}
	return out
}

// waitQuiet waits until nothing has been handled for a moment, to check
// that a message was ignored.
func (hs *harness) sentinel(channel string) {
	hs.t.Helper()
	m := hs.mention(alice, channel, "sentinel")
	hs.h.waitCall(hs.t, m.ID)
}

func (hs *harness) interact(spec discordtest.InteractionSpec) discordtest.InteractionRef {
	hs.t.Helper()
	if spec.GuildID == "" && !strings.HasPrefix(spec.ChannelID, "dm") {
		spec.GuildID = guildID
	}
	ref, err := hs.fake.Interact(spec)
	if err != nil {
		hs.t.Fatal(err)
	}
	return ref
}

var errScripted = errors.New("scripted failure")

// hasStop reports whether m carries a Stop button: an answer in progress.
func hasStop(m discordtest.Message) bool {
	for _, id := range m.CustomIDs() {
		if strings.HasPrefix(id, stopPrefix) {
			return true
		}
	}
	return false
}

package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// Platforms a conversation can be on.
const (
	platformSlack   = "slack"
	platformDiscord = "discord"
)

// conv is one simulated conversation: one user talking to the bot, on Slack
// in a thread of a channel of its own (the first message @mentions the bot,
// follow-ups in the thread don't), on Discord in a thread of its own (the
// same).
type conv struct {
	id       string // "s17", "d4"; "ps17", "pd4" in the memory probe; "sw", "dw" warming up
	platform string
	channel  string // Slack channel, or Discord thread ID
	user     string
	counted  bool       // its tokens count towards the per-token figures (the measured load)
	rand     *rand.Rand // its start within -ramp, its answers' times to first token

	mu     sync.Mutex
	thread string // Slack: the first message's ts, naming the thread
	turns  []*turn
	err    error // why the conversation stopped early
}

// turn is one question and its answer, with what the fakes saw of it.
type turn struct {
	n        int
	marker   string   // the answer's first token: it shows that the answer is on screen
	tokens   []string // the answer as the fake Ark streams it
	ttft     time.Duration
	answer   string // the whole answer, as it must finally show
	event    time.Time
	sign     time.Time // first visible sign of life (status, placeholder, post)
	first    time.Time // the fake Ark wrote the first token
	shown    time.Time // first platform call showing the first token, as it reached the fake's socket
	handled  time.Time // the same call, as the fake's handler began
	sent     time.Time // the same call, as the bot made it
	final    time.Time // the whole answer was visible
	renders  int       // platform calls showing the answer's text, the last one included
	finished chan struct{}
}

// words fill answers; plain words survive every platform's formatting as is.
var words = strings.Fields("the model streams its answer word by word while the bot paces its renders and saves every turn")

// question is what the user writes in turn n; it names the turn for the fake Ark.
func question(id string, n int) string {
	return fmt.Sprintf("q-%s-%d what do you think about load tests?", id, n)
}

var questionRE = regexp.MustCompile(`q-([a-z][a-z0-9]*)-([0-9]+)`)

// newTurn scripts turn n: its answer of count tokens, the first one unique.
func newTurn(id string, n, count int) *turn {
	t := &turn{n: n, marker: fmt.Sprintf("a-%s-%d", id, n), finished: make(chan struct{})}
	t.tokens = make([]string, count)
	t.tokens[0] = t.marker
	for i := 1; i < count; i++ {
		t.tokens[i] = " " + words[(i+n)%len(words)]
	}
	t.answer = strings.Join(t.tokens, "")
	return t
}

// turnN returns turn n, or nil.
func (c *conv) turnN(n int) *turn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < 1 || n > len(c.turns) {
		return nil
	}
	return c.turns[n-1]
}

// observe records a platform call on the conversation's channel that
// arrived at time at, was handled at handled and sent by the bot at sent:
// sign marks a visible sign of life, render a call that shows the answer's
// text, content is the text it carried, and final (when set) reports
// whether the answer is now complete.
func (c *conv) observe(at, handled, sent time.Time, sign, render bool, content string, final func(*turn) bool) {
	c.mu.Lock()
	if len(c.turns) == 0 {
		c.mu.Unlock()
		return
	}
	t := c.turns[len(c.turns)-1]
	if at.Before(t.event) || !t.final.IsZero() {
		c.mu.Unlock()
		return // a late call of an earlier turn, or after the end
	}
	if sign && t.sign.IsZero() {
		t.sign = at
	}
	if t.shown.IsZero() && strings.Contains(content, t.marker) {
		t.shown, t.handled, t.sent = at, handled, sent
	}
	if render && !t.shown.IsZero() {
		t.renders++
	}
	c.mu.Unlock()
	if final == nil || !final(t) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.final.IsZero() {
		t.final = at
		close(t.finished)
	}
}

// converse plays the conversation's user: turns questions, each sent when
// the previous answer is complete, until done or ctx ends.
func (h *harness) converse(ctx context.Context, c *conv, turns int) {
	for n := 1; n <= turns; n++ {
		t, err := h.send(c, n)
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		select {
		case <-t.finished:
		case <-ctx.Done():
			return
		}
	}
}

// send starts turn n: the user's message reaches the bot.
func (h *harness) send(c *conv, n int) (*turn, error) {
	t := newTurn(c.id, n, h.opts.tokens)
	t.ttft = time.Duration(float64(h.opts.ttft) * (1 + h.opts.ttftJitter*(2*c.rand.Float64()-1)))
	q := question(c.id, n)
	switch c.platform {
	case platformSlack:
		ts := h.fs.NextTS()
		c.mu.Lock()
		if n == 1 {
			c.thread = ts
			h.slack.Store(c.channel+"/"+ts, c)
		}
		thread := c.thread
		t.event = time.Now()
		c.turns = append(c.turns, t)
		c.mu.Unlock()
		ev := slacktest.UserMessage(c.channel, "channel", c.user, q, ts, thread)
		if n == 1 {
			ev = slacktest.AppMention(c.channel, c.user, "<@"+h.fs.BotUserID()+"> "+q, ts, "")
		}
		_, err := h.fs.SendEvent(slacktest.EventOptions{}, ev)
		return t, err
	default:
		spec := discordtest.MessageSpec{ChannelID: c.channel, GuildID: guildID, Content: q,
			Author: discordtest.User{ID: c.user, Username: "user" + c.id}}
		if n == 1 {
			bot := h.fd.Bot()
			spec.Content, spec.Mentions = "<@"+bot.ID+"> "+q, []discordtest.User{bot}
		}
		if h.opts.channels > 0 { // a mention in a shared channel: the answer's messages reply to it
			spec.ID = h.fd.NewID()
			h.asked.Store(spec.ID, c)
		}
		c.mu.Lock()
		t.event = time.Now()
		c.turns = append(c.turns, t)
		if h.opts.channels > 0 {
			c.thread = spec.ID
		}
		c.mu.Unlock()
		_, err := h.fd.PostUserMessage(spec)
		return t, err
	}
}

// turnOf finds the turn a request to Ark is about, from its last question.
func (h *harness) turnOf(req arktest.Request) (*conv, *turn) {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Text
		}
	}
	m := questionRE.FindStringSubmatch(last)
	if m == nil {
		return nil, nil
	}
	c := h.convs[m[1]]
	if c == nil {
		return nil, nil
	}
	n, _ := strconv.Atoi(m[2])
	return c, c.turnN(n)
}

// answer is the fake Ark's responder: the scripted answer of the turn.
func (h *harness) answer(req arktest.Request) arktest.Response {
	c, t := h.turnOf(req)
	if t == nil {
		return arktest.Response{Content: arktest.SplitWords("I don't know that question."), TTFT: h.opts.ttft, PerChunk: h.opts.tokenInterval}
	}
	if c.counted {
		h.stats.tokens.Add(int64(len(t.tokens)))
	}
	return arktest.Response{Content: t.tokens, TTFT: t.ttft, PerChunk: h.opts.tokenInterval}
}

func (h *harness) onFirstChunk(req arktest.Request, at time.Time) {
	c, t := h.turnOf(req)
	if t == nil {
		return
	}
	c.mu.Lock()
	if t.first.IsZero() {
		t.first = at
	}
	c.mu.Unlock()
}

// sentAt is when the bot made a call (see stamped), zero if unknown.
func sentAt(h http.Header) time.Time {
	n, err := strconv.ParseInt(h.Get(sentHeader), 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Slack methods that show something in the thread.
var (
	slackSignOfLife = map[string]bool{"assistant.threads.setStatus": true, "chat.postMessage": true, "chat.startStream": true, "reactions.add": true}
	slackContent    = map[string]bool{"chat.postMessage": true, "chat.update": true, "chat.startStream": true, "chat.appendStream": true, "chat.stopStream": true, "chat.delete": true}
)

func (h *harness) onSlackCall(call slacktest.Call) {
	h.stats.add(platformSlack, call.Method, call.Result == "ratelimited")
	if call.Result != "ok" {
		return
	}
	c := h.slackConv(call.Params)
	if c == nil {
		return
	}
	content := call.Params.Get("markdown_text") + "\n" + call.Params.Get("blocks") + "\n" + call.Params.Get("text")
	var final func(*turn) bool
	if slackContent[call.Method] {
		final = func(t *turn) bool { return h.slackComplete(c, t) }
	}
	c.observe(call.Time, call.Handled, sentAt(call.Header), slackSignOfLife[call.Method], slackContent[call.Method] && call.Method != "chat.delete", content, final)
}

// slackConv is the conversation a Slack call is about: by its channel and
// thread_ts, or the thread of the message it names.
func (h *harness) slackConv(p url.Values) *conv {
	ch := cmp.Or(p.Get("channel"), p.Get("channel_id"))
	thread := p.Get("thread_ts")
	if thread == "" {
		m, ok := h.fs.Message(ch, p.Get("ts"))
		if !ok {
			return nil
		}
		thread = m.ThreadTS
	}
	c, _ := h.slack.Load(ch + "/" + thread)
	conv, _ := c.(*conv)
	return conv
}

// slackComplete reports whether the thread shows turn t's whole answer:
// its messages since the question, none still streaming, read in order.
func (h *harness) slackComplete(c *conv, t *turn) bool {
	c.mu.Lock()
	thread := c.thread
	c.mu.Unlock()
	var text strings.Builder
	for _, m := range h.fs.Replies(c.channel, thread) {
		if m.Created.Before(t.event) {
			continue
		}
		if m.Streaming {
			return false
		}
		text.WriteString(m.Visible())
	}
	return text.String() == t.answer
}

// Discord routes of the bot's messages.
const (
	routeMessages = "/channels/{channel}/messages"
	routeMessage  = "/channels/{channel}/messages/{msg}"
	routeTyping   = "/channels/{channel}/typing"
)

func (h *harness) onDiscordCall(call discordtest.Call) {
	h.stats.add(platformDiscord, call.Method+" "+call.Route, call.Status == 429)
	if call.Status/100 != 2 {
		return
	}
	content := ""
	if call.Content != nil {
		content = *call.Content
	}
	c := h.discord[call.Channel]
	if c == nil && h.opts.channels > 0 {
		c = h.discordConv(call.ReplyTo, content)
	}
	if c == nil {
		return
	}
	sign := call.Method == "POST" && (call.Route == routeMessages || call.Route == routeTyping)
	isMessage := call.Route == routeMessages || call.Route == routeMessage
	c.observe(call.Time, call.Handled, sentAt(call.Header), sign, isMessage && call.Method != "DELETE", content, func(t *turn) bool { return isMessage && call.Content != nil && content == t.answer })
}

// discordConv is the conversation in a shared channel a call is about: the
// question its post replies to, or the answer its content begins.
func (h *harness) discordConv(replyTo, content string) *conv {
	if c, ok := h.asked.Load(replyTo); ok {
		return c.(*conv)
	}
	if m := markerRE.FindStringSubmatch(content); m != nil {
		return h.convs[m[1]]
	}
	return nil
}

var markerRE = regexp.MustCompile(`a-([a-z][a-z0-9]*)-[0-9]+`)

// callStats counts the platform calls the fakes answered.
type callStats struct {
	measuring atomic.Bool  // count calls only from the start of the measured load
	tokens    atomic.Int64 // tokens the fake Ark streamed in measured answers
	mu        sync.Mutex
	calls     map[string]map[string]int // platform → method → calls while measuring
	limited   map[string]int            // platform → 429s, all the run
}

func newCallStats() *callStats {
	return &callStats{calls: map[string]map[string]int{platformSlack: {}, platformDiscord: {}}, limited: map[string]int{}}
}

func (s *callStats) add(platform, method string, limited bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limited {
		s.limited[platform]++
	}
	if s.measuring.Load() {
		s.calls[platform][method]++
	}
}

// verify reads every conversation back from Redis, as the bot would load
// it, and counts the turns that are there as they should be: each
// question followed by its answer, word for word.
func (h *harness) verify(ctx context.Context, convs []*conv) map[*conv]int {
	store := conversation.NewStore(h.rdb, conversation.StoreOptions{Prefix: h.prefix, TTL: time.Hour, MaxTurns: 1000,
		LockTTL: 5 * time.Second, LockWait: 2 * time.Second, DedupeTTL: time.Hour})
	found := make(map[*conv]int, len(convs))
	var mu sync.Mutex
	work := make(chan *conv)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				n := h.verifyOne(ctx, store, c)
				mu.Lock()
				found[c] = n
				mu.Unlock()
			}
		}()
	}
	for _, c := range convs {
		work <- c
	}
	close(work)
	wg.Wait()
	return found
}

func (h *harness) verifyOne(ctx context.Context, store *conversation.Store, c *conv) int {
	c.mu.Lock()
	m := conversation.Message{Platform: conversation.PlatformSlack, Workspace: h.fs.TeamID(), Channel: c.channel, Thread: c.thread}
	if c.platform == platformDiscord {
		m = conversation.Message{Platform: conversation.PlatformDiscord, Workspace: guildID, Channel: parentID, Thread: c.channel}
		if h.opts.channels > 0 {
			m.Channel, m.Thread = c.channel, c.thread
		}
	}
	turns := append([]*turn(nil), c.turns...)
	c.mu.Unlock()
	if len(turns) == 0 {
		return 0
	}
	th, err := store.Lock(ctx, m.ThreadKey(), "loadtest:verify")
	if err != nil {
		return 0
	}
	defer th.Release(context.WithoutCancel(ctx))
	ok := 0
	for i, t := range turns {
		if 2*i+1 >= len(th.Turns) {
			break
		}
		u, a := th.Turns[2*i], th.Turns[2*i+1]
		if u.Role == "user" && strings.HasPrefix(u.Text, fmt.Sprintf("q-%s-%d ", c.id, t.n)) {
			ok++
		}
		if a.Role == "assistant" && a.Text == t.answer {
			ok++
		}
	}
	if len(th.Turns) > 2*len(turns) {
		ok -= len(th.Turns) - 2*len(turns) // turns that should not be there
	}
	return max(ok, 0)
}

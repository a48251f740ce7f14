package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
)

// Rendering constants. Discord caps message content at 2,000 characters; each
// piece of an answer leaves room for the in-progress cursor or a note.
const (
	maxContent  = 2000
	markerRoom  = 16
	pieceLimit  = maxContent - markerRoom
	cursor      = " ▌"
	placeholder = "⏳ *Thinking…*"
	thinkingMsg = "💭 *Thinking…*"
	maxNote     = 300
	stopPrefix  = "stop:"
	retryPrefix = "retry:"
)

// Streaming design.
//
// An answer streams into ordinary channel messages: posted with
// ChannelMessageSendComplex and edited with ChannelMessageEditComplex, whose
// discordgo rate-limit bucket is per channel. For /ask the interaction is
// deferred at once and its @original response is edited once, to echo the
// question; the answer itself then goes to the channel (or to the thread
// opened for it) as normal messages replying to that echo. Two reasons:
//   - discordgo v0.29 edits every interaction response (InteractionResponseEdit,
//     FollowupMessageEdit) under one bucket key shared by all interactions,
//     holding its lock through 429 sleeps, so many answers streaming at once
//     would queue behind each other bot-wide;
//   - an interaction token lasts 15 minutes, a long answer may not.
// Only where the bot may not post in the channel (a user-installed command,
// missing permissions) does an answer fall back to interaction followups,
// edited through a per-interaction bucket (webhookEdit) rather than the
// shared one.
//
// Every post, edit and delete spends the channel's budget (see rateLimits).
// An intermediate frame takes what budget there is and skips the rest (a
// 429 too): the next frame carries the whole text, so nothing is lost, only
// a repaint. The first post and the final render wait for budget and wait
// out 429s; edits and deletes are also retried after transient errors
// (internal/ratelimit).

// sink is where an answer's messages go.
type sink interface {
	// post creates a message; prevID is the answer's previous message, if any.
	post(ctx context.Context, p ratelimit.Priority, content string, comps []discordgo.MessageComponent, prevID string) (string, error)
	edit(ctx context.Context, p ratelimit.Priority, id, content string, comps []discordgo.MessageComponent) error
	// remove deletes a message, waiting for budget.
	remove(ctx context.Context, id string) error
}

// noMentions keeps model output from pinging anyone.
func noMentions() *discordgo.MessageAllowedMentions {
	return &discordgo.MessageAllowedMentions{Parse: []discordgo.AllowedMentionType{}}
}

func nonNil(c []discordgo.MessageComponent) []discordgo.MessageComponent {
	if c == nil {
		return []discordgo.MessageComponent{}
	}
	return c
}

// channelSink posts into a channel or thread, replying to replyTo.
type channelSink struct {
	a         *Adapter
	channelID string
	replyTo   string
}

func (c *channelSink) budgetKey() string { return c.channelID }

func (c *channelSink) post(ctx context.Context, p ratelimit.Priority, content string, comps []discordgo.MessageComponent, prevID string) (string, error) {
	data := &discordgo.MessageSend{Content: content, Components: nonNil(comps), AllowedMentions: noMentions()}
	ref := c.replyTo
	if ref != "" && prevID != "" {
		ref = prevID // a continuation replies to the answer's previous piece
	}
	if ref != "" {
		no := false
		data.Reference = &discordgo.MessageReference{MessageID: ref, ChannelID: c.channelID, FailIfNotExists: &no}
	}
	// ChannelMessageSendComplex's request, decoding only the new message's
	// ID: the whole message was most of the cost of a placeholder post.
	endpoint := discordgo.EndpointChannelMessages(c.channelID)
	var m struct{ ID string }
	err := c.a.call(ctx, p, "messages.create", c.budgetKey(), false, func(ctx context.Context) error {
		body, err := c.a.sess.RequestWithBucketID(http.MethodPost, endpoint, data, endpoint, reqOpts(ctx)...)
		if err == nil {
			if err = json.Unmarshal(body, &m); err == nil && m.ID == "" {
				err = errors.New("discord: the posted message has no id")
			}
		}
		return err
	})
	if err != nil {
		return "", err
	}
	c.a.joined.Add(c.channelID, true)
	return m.ID, nil
}

func (c *channelSink) edit(ctx context.Context, p ratelimit.Priority, id, content string, comps []discordgo.MessageComponent) error {
	comps = nonNil(comps)
	e := &discordgo.MessageEdit{ID: id, Channel: c.channelID, Content: &content, Components: &comps, AllowedMentions: noMentions()}
	// ChannelMessageEditComplex's request, without decoding the edited
	// message Discord sends back, which nothing reads: that decode was 6%
	// of the bot's CPU in the load test.
	return c.a.call(ctx, p, "messages.edit", c.budgetKey(), true, func(ctx context.Context) error {
		_, err := c.a.sess.RequestWithBucketID(http.MethodPatch, discordgo.EndpointChannelMessage(c.channelID, id), e,
			discordgo.EndpointChannelMessage(c.channelID, ""), reqOpts(ctx)...)
		return err
	})
}

func (c *channelSink) remove(ctx context.Context, id string) error {
	return c.a.call(ctx, ratelimit.MustDeliver, "messages.delete", c.budgetKey(), true, func(ctx context.Context) error {
		return c.a.sess.ChannelMessageDelete(c.channelID, id, reqOpts(ctx)...)
	})
}

// interactionSink answers through an interaction's webhook: the first post
// fills @original (unless already used), later ones are followups.
type interactionSink struct {
	a         *Adapter
	in        *discordgo.Interaction
	ephemeral bool

	mu           sync.Mutex
	originalUsed bool
}

func (s *interactionSink) budgetKey() string { return interactionKey(s.in) }

// interactionKey is the budget key of an interaction's webhook messages.
func interactionKey(in *discordgo.Interaction) string { return "interaction:" + in.ID }

func (s *interactionSink) post(ctx context.Context, p ratelimit.Priority, content string, comps []discordgo.MessageComponent, _ string) (string, error) {
	s.mu.Lock()
	useOriginal := !s.originalUsed
	s.originalUsed = true
	s.mu.Unlock()
	if useOriginal {
		if _, err := s.a.webhookEdit(ctx, p, s.in, "@original", content, comps); err != nil {
			s.mu.Lock()
			s.originalUsed = false
			s.mu.Unlock()
			return "", err
		}
		return "@original", nil
	}
	params := &discordgo.WebhookParams{Content: content, Components: nonNil(comps), AllowedMentions: noMentions()}
	if s.ephemeral {
		params.Flags = discordgo.MessageFlagsEphemeral
	}
	// FollowupMessageCreate's request under a bounded bucket key (see
	// tokenBucket), decoding only the new message's ID.
	uri := discordgo.EndpointWebhookToken(s.in.AppID, s.in.Token) + "?wait=true"
	var m struct{ ID string }
	err := s.a.call(ctx, p, "webhooks.execute", s.budgetKey(), false, func(ctx context.Context) error {
		body, err := s.a.sess.RequestWithBucketID(http.MethodPost, uri, params, tokenBucket("webhook-execute", s.in.Token), reqOpts(ctx)...)
		if err == nil {
			if err = json.Unmarshal(body, &m); err == nil && m.ID == "" {
				err = errors.New("discord: the followup has no id")
			}
		}
		return err
	})
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

func (s *interactionSink) edit(ctx context.Context, p ratelimit.Priority, id, content string, comps []discordgo.MessageComponent) error {
	_, err := s.a.webhookEdit(ctx, p, s.in, id, content, comps)
	return err
}

func (s *interactionSink) remove(ctx context.Context, id string) error {
	uri := discordgo.EndpointWebhookMessage(s.in.AppID, s.in.Token, id)
	return s.a.call(ctx, ratelimit.MustDeliver, "webhooks.delete", s.budgetKey(), true, func(ctx context.Context) error {
		_, err := s.a.sess.RequestWithBucketID("DELETE", uri, nil, webhookBucket(s.in.Token), reqOpts(ctx)...)
		return err
	})
}

// webhookBucket spreads interaction-webhook edits and deletes over 64
// rate-limit buckets instead of discordgo's single one (see the streaming
// design note).
func webhookBucket(token string) string { return tokenBucket("webhook-messages", token) }

// tokenBucket is the discordgo rate-limit bucket of a request about the
// interaction with this token: one of 64 per route. discordgo never
// forgets a bucket, so a key per interaction (its own choice for callbacks
// and followups) would grow without end on a bot that runs for months.
func tokenBucket(route, token string) string {
	h := fnv.New32a()
	h.Write([]byte(token))
	return fmt.Sprintf("arkbot/%s/%d", route, h.Sum32()%64)
}

// webhookEdit edits an interaction response (@original or a followup)
// under the interaction's budget.
func (a *Adapter) webhookEdit(ctx context.Context, p ratelimit.Priority, in *discordgo.Interaction, msgID, content string, comps []discordgo.MessageComponent) (*discordgo.Message, error) {
	comps = nonNil(comps)
	uri := discordgo.EndpointWebhookMessage(in.AppID, in.Token, msgID)
	data := &discordgo.WebhookEdit{Content: &content, Components: &comps, AllowedMentions: noMentions()}
	var body []byte
	err := a.call(ctx, p, "webhooks.edit", interactionKey(in), true, func(ctx context.Context) error {
		var err error
		body, err = a.sess.RequestWithBucketID("PATCH", uri, data, webhookBucket(in.Token), reqOpts(ctx)...)
		return err
	})
	if err != nil {
		return nil, err
	}
	var m discordgo.Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("discord: decoding edited message: %w", err)
	}
	return &m, nil
}

// reply implements conversation.Reply for one message or interaction.
type reply struct {
	a         *Adapter
	key       string // the message's DedupeKey, behind the Stop button
	question  string // the question's message ID, behind the Retry button ("": no button)
	sink      sink
	fallback  sink // used when the sink may not post (missing permissions)
	notices   sink
	chainRoot string // reply-chain root to remember for each posted message
	addressed bool   // the user addressed the bot (errors are then reported)
	onEmpty   func() // runs when the engine showed nothing at all

	mu       sync.Mutex
	msgs     []shown
	last     conversation.Frame
	rendered bool
	final    bool
	answered bool // the final frame has text: it can be redone
	noticed  int
}

type shown struct {
	id      string
	content string
	button  string // the CustomID of its button, "" for none
	gone    bool   // deleted by someone else
}

func (a *Adapter) newReply(key string, s sink, fallback sink, notices sink, chainRoot string) *reply {
	return &reply{a: a, key: key, sink: s, fallback: fallback, notices: notices, chainRoot: chainRoot, addressed: true}
}

// Begin posts a placeholder with the Stop button, waiting for budget.
func (r *reply) Begin(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) > 0 || r.final {
		return nil
	}
	return r.syncLocked(ctx, []string{placeholder}, true, true)
}

// Render shows a frame. Intermediate frames are best-effort; the final one
// is rendered on a context detached from ctx's cancellation (so an answer
// interrupted by shutdown still shows what was written), bounded by
// finalTimeout.
func (r *reply) Render(ctx context.Context, f conversation.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final {
		return nil
	}
	r.last, r.rendered = f, true
	if f.Final {
		r.final, r.answered = true, strings.TrimSpace(f.Text) != ""
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
		defer cancel()
		return r.syncLocked(fctx, layout(f), false, true)
	}
	return r.syncLocked(ctx, layout(f), true, len(r.msgs) == 0)
}

// Notice sends a short message outside the answer: ephemeral for slash
// commands, a reply to the user's message otherwise.
func (r *reply) Notice(ctx context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.noticeLocked(ctx, text)
}

func (r *reply) noticeLocked(ctx context.Context, text string) error {
	r.noticed++
	prev := ""
	for _, p := range splitFor(text, maxContent) {
		id, err := r.notices.post(ctx, ratelimit.MustDeliver, p, nil, prev)
		if err != nil {
			return err
		}
		prev = id
		if _, isChan := r.notices.(*channelSink); isChan && r.chainRoot != "" {
			r.a.chains.Add(id, r.chainRoot)
		}
	}
	return nil
}

// finish runs after Handle returns: an answer the engine left unfinished
// (error, panic, cancellation) gets a final render with a plain-words note,
// keeping its text; a failure that showed nothing is reported.
func (r *reply) finish(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if !r.rendered && r.noticed > 0 && len(r.msgs) > 0 {
		// Only the placeholder was shown and the engine explained itself in
		// a notice (a refusal, a command): take the placeholder away.
		r.final = true
		if err := r.syncLocked(ctx, nil, false, true); err != nil {
			r.a.log.Debug("could not remove a placeholder", "key", r.key, "err", err)
		}
		return
	}
	if len(r.msgs) > 0 || r.rendered {
		f := r.last
		f.Final = true
		if f.Outcome == conversation.OutcomeStreaming {
			f.Outcome = conversation.OutcomeInterrupted
		}
		if f.Note == "" {
			f.Note = "The answer was interrupted."
			if err != nil && !errors.Is(err, context.Canceled) {
				f.Note = "Something went wrong while answering. Please try again."
			}
		}
		r.final, r.answered = true, strings.TrimSpace(f.Text) != ""
		if err := r.syncLocked(ctx, layout(f), false, true); err != nil {
			r.a.log.Warn("could not finish an answer", "key", r.key, "err", err)
		}
		return
	}
	if r.noticed > 0 {
		return
	}
	if err != nil && r.addressed {
		text := "⚠️ Sorry, I couldn't answer that because of an internal error. Please try again in a moment."
		if errors.Is(err, context.Canceled) {
			text = "⚠️ I'm restarting and couldn't answer this. Please ask again in a moment."
		}
		if nerr := r.noticeLocked(ctx, text); nerr != nil {
			r.a.log.Warn("could not report an error", "key", r.key, "err", nerr)
		}
		return
	}
	if r.onEmpty != nil {
		r.onEmpty()
	}
}

type opKind int

const (
	opPost opKind = iota
	opEdit
	opDelete
)

type op struct {
	kind opKind
	i    int
}

// syncLocked brings the answer's messages to want. live marks an answer in
// progress: the last message carries the Stop button; a finished answer's
// last message carries the Retry button. With wait, every call
// waits for budget and retries; without, the first call that finds no
// budget (or fails) ends the sync — a later frame catches up.
func (r *reply) syncLocked(ctx context.Context, want []string, live, wait bool) error {
	btn := func(i int) string {
		switch {
		case i != len(want)-1:
		case live && r.key != "" && len(stopPrefix+r.key) <= 100:
			return stopPrefix + r.key
		case !live && r.answered && r.question != "" && len(retryPrefix+r.question) <= 100:
			return retryPrefix + r.question
		}
		return ""
	}
	have := len(r.msgs)
	var ops []op
	if !live {
		for i := 0; i < min(have, len(want)); i++ {
			ops = append(ops, op{opEdit, i})
		}
		for i := have; i < len(want); i++ {
			ops = append(ops, op{opPost, i})
		}
		for i := have - 1; i >= len(want); i-- {
			ops = append(ops, op{opDelete, i})
		}
	} else {
		// New text first, then the live message, then earlier pieces.
		for i := have; i < len(want); i++ {
			ops = append(ops, op{opPost, i})
		}
		if last := len(want) - 1; last < have {
			ops = append(ops, op{opEdit, last})
		}
		for i := 0; i < min(have, len(want)-1); i++ {
			ops = append(ops, op{opEdit, i})
		}
	}
	var errs []error
	for _, o := range ops {
		if o.kind == opEdit {
			m := r.msgs[o.i]
			if m.gone || (m.content == want[o.i] && m.button == btn(o.i)) {
				continue
			}
		}
		prio := ratelimit.BestEffort
		if wait {
			prio = ratelimit.MustDeliver
		}
		err := r.apply(ctx, o, want, btn, prio)
		if err != nil {
			if !wait {
				if errors.Is(err, ratelimit.ErrSkipped) {
					r.a.stats.skipped.Add(1)
				} else {
					r.a.log.Debug("intermediate render failed; the next frame retries", "key", r.key, "err", err)
				}
				return nil
			}
			errs = append(errs, err)
			if o.kind == opPost {
				break // later pieces would land out of order
			}
		}
	}
	return errors.Join(errs...)
}

// button is the row holding the button with that CustomID: Stop for an
// answer in progress, Retry for a finished one.
func button(customID string) []discordgo.MessageComponent {
	b := discordgo.Button{Label: "Stop", Style: discordgo.SecondaryButton, CustomID: customID, Emoji: &discordgo.ComponentEmoji{Name: "⏹️"}}
	if strings.HasPrefix(customID, retryPrefix) {
		b.Label, b.Emoji = "Retry", &discordgo.ComponentEmoji{Name: "🔄"}
	}
	return []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{b}}}
}

func (r *reply) apply(ctx context.Context, o op, want []string, btn func(int) string, p ratelimit.Priority) error {
	var comps []discordgo.MessageComponent
	if o.kind != opDelete && btn(o.i) != "" {
		comps = button(btn(o.i))
	}
	switch o.kind {
	case opPost:
		prev := ""
		if o.i > 0 {
			prev = r.msgs[o.i-1].id
		}
		id, err := r.sink.post(ctx, p, want[o.i], comps, prev)
		if err != nil && isForbidden(err) && r.fallback != nil && len(r.msgs) == 0 {
			r.a.log.Info("may not post in this channel; answering through the interaction", "key", r.key, "err", err)
			r.sink, r.fallback = r.fallback, nil
			id, err = r.sink.post(ctx, p, want[o.i], comps, prev)
		}
		if err != nil {
			return err
		}
		r.msgs = append(r.msgs, shown{id: id, content: want[o.i], button: btn(o.i)})
		if r.chainRoot != "" {
			r.a.chains.Add(id, r.chainRoot)
		}
	case opEdit:
		err := r.sink.edit(ctx, p, r.msgs[o.i].id, want[o.i], comps)
		if err != nil {
			if isGone(err) {
				r.msgs[o.i].gone = true
			}
			return err
		}
		r.msgs[o.i].content, r.msgs[o.i].button = want[o.i], btn(o.i)
	case opDelete:
		err := r.sink.remove(ctx, r.msgs[o.i].id)
		if err != nil && !isGone(err) {
			return err
		}
		r.msgs = r.msgs[:o.i]
	}
	return nil
}

// layout turns a frame into message contents: the answer split under
// Discord's limit (never inside a word or an open code fence), a cursor on
// the last piece while it streams, and the final note.
func layout(f conversation.Frame) []string {
	text := strings.TrimRight(f.Text, " \t\n")
	if !f.Final {
		if text == "" {
			if f.Reasoning != "" {
				return []string{thinkingMsg + cursor}
			}
			return []string{placeholder}
		}
		pieces := splitFor(text, pieceLimit)
		last := pieces[len(pieces)-1]
		if closed := closeFence(last); closed != last {
			// Streaming inside a code block: keep it rendered as code.
			pieces[len(pieces)-1] = last + cursor + closed[len(last):]
		} else {
			pieces[len(pieces)-1] = last + cursor
		}
		return pieces
	}
	note := finalNote(f)
	if text == "" {
		if note == "" {
			note = "The model returned no answer."
		}
		return []string{"⚠️ " + note}
	}
	pieces := splitFor(text, pieceLimit)
	last := closeFence(pieces[len(pieces)-1])
	pieces[len(pieces)-1] = last
	if note != "" {
		line := "-# ⚠️ " + note
		if f.Outcome == conversation.OutcomeStopped {
			line = "-# ⏹️ " + note
		}
		if utf8.RuneCountInString(last)+1+utf8.RuneCountInString(line) <= maxContent {
			pieces[len(pieces)-1] = last + "\n" + line
		} else {
			pieces = append(pieces, line)
		}
	}
	return pieces
}

// finalNote is the frame's note on one line, or a default for outcomes
// that need saying.
func finalNote(f conversation.Frame) string {
	note := strings.Join(strings.Fields(f.Note), " ")
	if note == "" {
		switch f.Outcome {
		case conversation.OutcomeStopped:
			note = "Stopped."
		case conversation.OutcomeTruncated:
			note = "The answer reached the length limit."
		case conversation.OutcomeFiltered:
			note = "The answer was stopped by content moderation."
		case conversation.OutcomeInterrupted:
			note = "The answer was interrupted."
		case conversation.OutcomeFailed:
			note = "No answer could be produced. Please try again."
		}
	}
	if utf8.RuneCountInString(note) > maxNote {
		note = string([]rune(note)[:maxNote-1]) + "…"
	}
	return note
}

// splitFor splits text into pieces of at most limit characters with
// conversation.Split. Discord may count UTF-16 code units, so a piece with
// many astral characters (emoji) is split again to fit that measure too.
func splitFor(text string, limit int) []string {
	var out []string
	for _, p := range conversation.Split(text, limit) {
		if n := utf16Len(p); n > limit {
			out = append(out, conversation.Split(p, limit*limit/n-8)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// utf16Len is len(utf16.Encode([]rune(s))) without building either slice:
// a render measured every piece that way.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++ // a surrogate pair
		}
	}
	return n
}

// closeFence closes a code fence left open at the end of a final piece
// (an answer cut off inside a code block), so the note renders as text.
func closeFence(s string) string {
	open := false
	for line := range strings.Lines(s) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "```") {
			if open && strings.Trim(t, "`") == "" {
				open = false
			} else if !open {
				open = true
			}
		}
	}
	if open {
		return s + "\n```"
	}
	return s
}

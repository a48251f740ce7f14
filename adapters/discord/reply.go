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

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
)

// Rendering constants. Discord caps message content at 2,000 characters; each
// piece of an answer leaves room for the in-progress cursor or a note.
const (
	maxContent  = 2000
	markerRoom  = 16
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
	// budgetKey names the rate budget its calls are charged to: a channel, an interaction.
	budgetKey() string
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
	// message Discord sends back, which nothing reads.
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

// style is how Discord shows an answer (see render.Layout): pieces under
// 2,000 characters counted in UTF-16 code units, as Discord may count them,
// the final note in small text under the answer.
var style = render.Style{
	Limit:       maxContent,
	Width:       conversation.UTF16,
	Reserve:     markerRoom,
	Cursor:      cursor,
	Placeholder: placeholder,
	Thinking:    thinkingMsg + cursor,
	NoteSep:     "\n",
	Note: func(o conversation.Outcome, note string, alone bool) string {
		note = render.Truncate(strings.Join(strings.Fields(note), " "), maxNote)
		switch {
		case alone:
			return "⚠️ " + note
		case o == conversation.OutcomeStopped:
			return "-# ⏹️ " + note
		}
		return "-# ⚠️ " + note
	},
	Empty: "⚠️ The model returned no answer.",
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
	msgs     render.Messages // msgs.Fair: the answer's turn at renders among its channel's answers
	last     conversation.Frame
	rendered bool
	final    bool
	answered bool // the final frame has text: it can be redone
	orphan   bool // finishing an orphaned answer: Retry even without text
	noticed  int

	render.Where // where the answer is, for conversation.Located (see locate)
}

func (a *Adapter) newReply(key string, s sink, fallback sink, notices sink, chainRoot string) *reply {
	r := &reply{a: a, key: key, sink: s, fallback: fallback, notices: notices, chainRoot: chainRoot, addressed: true}
	r.msgs.Fair = a.fair.Join(s.budgetKey())
	return r
}

// Begin posts a placeholder with the Stop button when the channel has a
// call free now beyond one for each other answer in flight there (see
// spare); in a busy channel it shows nothing, and the first text is the
// sign of life.
func (r *reply) Begin(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.locate()
	if len(r.msgs.List) > 0 || r.final || !r.spare() {
		return nil
	}
	return r.showLocked(ctx, []string{placeholder}, true, render.MustDeliver)
}

// spare reports whether the channel has a call free now beyond one for
// the final render of each other answer in flight in it: only then may
// this one spend a call on a placeholder or an intermediate render, so
// that in a busy channel each answer costs one call per message of its
// final text. r.mu is held.
func (r *reply) spare() bool {
	return r.a.free(r.sink.budgetKey(), r.msgs.Fair.Others())
}

// done gives up the answer's turn at renders; r.mu is held.
func (r *reply) done() { r.msgs.Fair.Leave() }

// Render shows a frame. Intermediate frames are best-effort; the final one
// is bounded by ctx (the engine's outlives an interrupted answer, until
// the shutdown deadline) and by finalTimeout.
func (r *reply) Render(ctx context.Context, f conversation.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.locate()
	if r.final {
		return nil
	}
	f = render.WithSources(f, render.SourcesDiscord)
	r.last, r.rendered = f, true
	if f.Final {
		r.final, r.answered = true, strings.TrimSpace(f.Text) != ""
		defer r.done() // after its final call: until then it counts among the channel's answers
		fctx, cancel := context.WithTimeout(ctx, finalTimeout)
		defer cancel()
		return r.showLocked(fctx, render.Layout(style, f), false, render.MustDeliver)
	}
	// Intermediate renders are best effort, on the answer's turn among its
	// channel's answers, with calls to spare.
	if !r.spare() {
		return nil
	}
	return r.showLocked(ctx, render.Layout(style, f), true, render.BestEffort)
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
	for _, p := range conversation.SplitParts(text, maxContent, style.Width) {
		id, err := r.notices.post(ctx, ratelimit.MustDeliver, p.String(), nil, prev)
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
	defer r.done()
	if r.final {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if !r.rendered && r.noticed > 0 && len(r.msgs.List) > 0 {
		// Only the placeholder was shown and the engine explained itself in
		// a notice (a refusal, a command): take the placeholder away.
		r.final = true
		if err := r.showLocked(ctx, nil, false, render.MustDeliver); err != nil {
			r.a.log.Debug("could not remove a placeholder", "key", r.key, "err", err)
		}
		return
	}
	if len(r.msgs.List) > 0 || r.rendered {
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
		if err := r.showLocked(ctx, render.Layout(style, f), false, render.MustDeliver); err != nil {
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

// showLocked brings the answer's messages to show pieces (render.Messages.Sync).
// live marks an answer in progress: its last message carries the Stop
// button; a finished answer's last message carries the Retry button. A
// best-effort sync that fails is left to a later frame.
func (r *reply) showLocked(ctx context.Context, pieces []string, live bool, p render.Priority) error {
	btn := ""
	switch {
	case live && r.key != "" && len(stopPrefix+r.key) <= 100:
		btn = stopPrefix + r.key
	case !live && (r.answered || r.orphan) && r.question != "" && len(retryPrefix+r.question) <= 100:
		btn = retryPrefix + r.question
	}
	err := r.msgs.Sync(ctx, surface{r}, render.Want{Pieces: pieces, Button: btn, Live: live, Priority: p})
	if err != nil && p == render.BestEffort {
		r.a.log.Debug("intermediate render failed; the next frame retries", "key", r.key, "err", err)
		return nil
	}
	return err
}

// button is the row holding the button with that CustomID: Stop for an
// answer in progress, Retry for a finished one.
func button(customID string) []discordgo.MessageComponent {
	if customID == "" {
		return nil
	}
	b := discordgo.Button{Label: "Stop", Style: discordgo.SecondaryButton, CustomID: customID, Emoji: &discordgo.ComponentEmoji{Name: "⏹️"}}
	if strings.HasPrefix(customID, retryPrefix) {
		b.Label, b.Emoji = "Retry", &discordgo.ComponentEmoji{Name: "🔄"}
	}
	return []discordgo.MessageComponent{discordgo.ActionsRow{Components: []discordgo.MessageComponent{b}}}
}

// surface is render's view of a reply's messages: posts, edits and deletes
// through its sink, a message's button its CustomID.
type surface struct{ r *reply }

func (s surface) Post(ctx context.Context, p render.Priority, prev string, m render.Piece) (string, error) {
	r := s.r
	id, err := r.sink.post(ctx, p, m.Content, r.buttons(m.Button), prev)
	if err != nil && isForbidden(err) && r.fallback != nil && len(r.msgs.List) == 0 {
		r.a.log.Info("may not post in this channel; answering through the interaction", "key", r.key, "err", err)
		r.sink, r.fallback = r.fallback, nil
		id, err = r.sink.post(ctx, p, m.Content, r.buttons(m.Button), prev)
	}
	if err != nil {
		return "", s.mean(err)
	}
	if r.chainRoot != "" {
		r.a.chains.Add(id, r.chainRoot)
	}
	return id, nil
}

func (s surface) Edit(ctx context.Context, p render.Priority, id string, m render.Piece) error {
	return s.mean(s.r.sink.edit(ctx, p, id, m.Content, s.r.buttons(m.Button)))
}

func (s surface) Delete(ctx context.Context, _ render.Priority, id string) error {
	return s.mean(s.r.sink.remove(ctx, id))
}

// mean counts a skipped call and marks a message deleted by someone else
// as render.ErrGone.
func (s surface) mean(err error) error {
	switch {
	case errors.Is(err, render.ErrSkipped):
		s.r.a.stats.skipped.Add(1)
	case err != nil && isGone(err):
		return fmt.Errorf("%w: %w", render.ErrGone, err)
	}
	return err
}

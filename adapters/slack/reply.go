package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
	"github.com/arkbot/arkbot/metrics"
)

// What users see around an answer.
const (
	cursorMark       = " ▍"            // trails an answer still being written (post + update)
	placeholderText  = "⏳ _Thinking…_" // the first post, before any text
	thinkingStatus   = "is thinking…"  // assistant status while native streaming starts
	noAnswerText     = "_(no answer)_"
	maxMarkdown      = 12000  // the most a markdown block holds
	fenceCloseRoom   = 1 + 16 // "\n" and a closing fence marker, kept free in a stream message
	maxNoteRunes     = 600    // a final note longer than this is cut
	maxFallbackRune  = 2000   // the notification text of a message with blocks
	maxReasoningTail = 120
	// nativeRetryAfter is how long "auto" streaming stays off for a
	// workspace whose Slack refused chat.startStream.
	nativeRetryAfter = time.Hour
	// finalPatience is how long a final render waits for chat.stopStream
	// or chat.update budget before it posts the rest of the answer instead.
	finalPatience = time.Second
)

// replyTarget is where an answer goes.
type replyTarget struct {
	team, channel string
	thread        string // thread_ts to answer in; "" at the top of a DM (or a channel, for slash commands)
	user          string // who asked: the stream's recipient, the ephemeral's reader
	dm            bool
	responseURL   string // slash commands: where Notice replies ephemerally
	slash         bool
	question      string // the question's message ID, behind the Retry button ("": no button)
	private       bool   // notices only the user sees (a button click's refusals)
	orphan        bool   // finishing an orphaned answer: Retry even without text
	title         string // the question, to title a new agent session (sessions.go)
}

type renderMode int

const (
	modeUndecided renderMode = iota // nothing shown but perhaps a status
	modeNative                      // chat.startStream / appendStream / stopStream
	modeUpdate                      // chat.postMessage + chat.update
)

// segment is a natively streamed message of the answer.
type segment struct {
	ts         string
	start      int    // offset in the answer where the message's text begins
	prefix     string // reopened code fence the message starts with
	lastAppend time.Time
}

// reply implements conversation.Reply for one Slack answer, spending the
// workspace's budgets as the package documentation's delivery policy says.
//
// Native mode (a thread, streaming auto/native): the first text starts a
// stream (chat.startStream) and later frames append what is new
// (chat.appendStream); the final frame stops it, adding the note. Update
// mode (streaming: update, top-level DMs, or a fallback): a placeholder or
// the first text is posted, and edited (chat.update) with a trailing cursor
// until the final frame. In both, an answer longer than one message
// continues in further messages in the thread, closing and reopening a code
// fence cut in two. A final frame whose stop or edit is not free within
// finalPatience posts the rest of the answer instead and leaves the tidying
// of what was shown (see tidy) for later.
type reply struct {
	a    *Adapter
	t    replyTarget
	log  *slog.Logger
	fair *render.Ticket // this answer's turn at intermediate renders in its workspace

	mu     sync.Mutex // Reply methods never run at once: no two calls in flight per message
	mode   renderMode
	done   bool
	begun  bool
	status bool   // an assistant status shows (Slack clears it when the answer is posted)
	claim  func() // releases the budget claimed for the final render (nil: none)
	// finishBy is the method claimed for the final render: chat.update,
	// or chat.delete when the final is to be posted instead.
	finishBy string

	// native streaming
	seg        *segment
	segments   int
	sentOff    int    // bytes of the answer streamed so far
	sentText   string // the answer's first sentOff bytes
	nextPrefix string // fence to reopen in the next segment
	statusAt   time.Time
	activity   string    // the Frame.Activity last shown as the status (activity.go)
	task       *taskStep // the task card the stream shows (tasks.go)
	taskTried  bool      // a task card was considered

	// post + update
	base    int    // bytes already shown by native streaming before a fallback
	basePre string // code fence reopened at base
	msgs    render.Messages

	render.Where // where the answer is, for conversation.Located (see locate)

	sess  *session // the answer's agent session (sessions.go)
	model string   // the model writing the answer, behind its feedback buttons (feedback.go)
}

func (a *Adapter) newReply(t replyTarget, log *slog.Logger) *reply {
	fair := a.fair.Join(t.team)
	return &reply{a: a, t: t, log: log, fair: fair, msgs: render.Messages{MinEdit: a.editInterval, Fair: fair}}
}

// close gives up the answer's turn at renders and its claim; the answer is over.
func (r *reply) close() {
	r.fair.Leave()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unclaim()
}

// claimFinal claims a call of method for the final render, reporting
// whether the budget had one to promise.
func (r *reply) claimFinal(method string) bool {
	release, ok := r.a.claim(r.t.team, r.t.channel, method)
	if ok {
		r.unclaim()
		r.claim, r.finishBy = release, method
	}
	return ok
}

// unclaim releases the final render's claim, if any; r.mu is held.
func (r *reply) unclaim() {
	if r.claim != nil {
		r.claim()
		r.claim = nil
	}
}

// nativeCandidate reports whether this answer may stream natively.
func (r *reply) nativeCandidate() bool {
	if r.t.thread == "" || r.t.slash {
		return false // chat.startStream needs a thread
	}
	switch r.a.cfg.Streaming {
	case "update":
		return false
	case "native":
		return true
	}
	return !r.a.nativeDisabled(r.t.team)
}

func (a *Adapter) nativeDisabled(team string) bool {
	v, ok := a.noNative.Load(team)
	return ok && time.Now().Before(v.(time.Time))
}

// Begin implements conversation.Reply: the cheapest sign of life the
// workspace's budgets have free now. Where the answer may stream natively
// (a thread), the assistant status: it costs no message and clears itself.
// Elsewhere a placeholder post, when the channel has a post free and
// chat.update an edit to replace it. Else nothing: the first text, soon
// after, is the sign of life, and a placeholder would only hold a scarce
// edit. With streaming "native" the status waits for budget, as the
// stream will.
func (r *reply) Begin(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.locate()
	if r.begun || r.mode != modeUndecided || r.done {
		return nil
	}
	r.begun = true
	r.beginSession(ctx)
	if r.statusable() {
		p := ratelimit.BestEffort
		if r.a.cfg.Streaming == "native" {
			p = ratelimit.MustDeliver
		}
		err := r.setStatus(ctx, p, thinkingStatus, r.a.cfg.LoadingMessages)
		if err == nil {
			r.status, r.statusAt = true, time.Now()
			return nil
		}
		r.log.Debug("assistant status unavailable", "err", err)
	}
	if r.statusable() || !r.affords("chat.postMessage") || !r.claimFinal("chat.update") {
		return nil
	}
	err := r.msgs.Sync(ctx, surface{r: r}, render.Want{Pieces: []string{placeholderText}, Live: true, Priority: ratelimit.MustDeliver})
	if err == nil {
		r.mode = modeUpdate
	}
	return err
}

// statusable reports whether the answer shows an assistant status: it
// may stream natively (in a thread, where the workspace has not refused it).
func (r *reply) statusable() bool { return r.nativeCandidate() }

// affords reports whether each method has a best-effort call free now in
// the answer's workspace (and channel, for a per-channel budget).
func (r *reply) affords(methods ...string) bool {
	for _, m := range methods {
		if !r.a.available(r.t.team, r.t.channel, m) {
			return false
		}
	}
	return true
}

// Render implements conversation.Reply.
func (r *reply) Render(ctx context.Context, f conversation.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.locate()
	if r.done {
		return nil
	}
	if f.Model != "" {
		r.model = f.Model
	}
	f = render.WithSources(f, render.SourcesMarkdown)
	if f.Final {
		r.done = true
		r.unclaim() // the final render spends what was claimed for it
		defer r.fair.Leave()
		// The engine's ctx for a final render outlives the answer's and
		// ends at the shutdown deadline; finalWait bounds it too.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.a.finalWait)
		defer cancel()
	}
	if r.mode == modeUndecided && !r.decide(ctx, f) {
		return nil
	}
	if r.mode == modeNative {
		if handled, err := r.renderNative(ctx, f); handled {
			return err
		}
	}
	return r.renderUpdate(ctx, f)
}

// decide picks how an answer that shows nothing yet (or a status) starts
// showing f. A final frame is posted. A first text streams natively when
// chat.startStream has a call free and chat.stopStream one to claim for
// its end (or streaming is "native"); else it is posted to be edited when
// the channel has a post free and chat.update an edit (or chat.delete a
// deletion, for a final posted instead) to claim for its end; else, or
// when another answer of the workspace waits for its first text, it waits
// for a later frame (decide reports false). Before any text, what the
// model does (a web search) and its reasoning show as the status.
func (r *reply) decide(ctx context.Context, f conversation.Frame) bool {
	switch {
	case f.Final:
		r.mode = modeUpdate
		if r.a.cfg.Streaming == "native" && r.nativeCandidate() {
			r.mode = modeNative
		}
	case f.Text == "":
		if r.statusable() && !r.startTask(ctx, f.Activity) {
			r.showActivity(ctx, f.Activity)
			r.showReasoning(ctx, f.Reasoning)
		}
		return false
	case r.a.cfg.Streaming == "native" && r.nativeCandidate():
		r.mode = modeNative
	case !r.fair.Turn():
		return false
	case r.nativeCandidate() && r.affords("chat.startStream") && r.claimFinal("chat.stopStream"):
		r.mode = modeNative
	case r.affords("chat.postMessage") && (r.claimFinal("chat.update") || r.claimFinal("chat.delete")):
		r.mode = modeUpdate
	default:
		r.fair.Missed()
		return false
	}
	return true
}

// Notice implements conversation.Reply: ephemeral for slash commands
// (response_url, else chat.postEphemeral), else a message in the conversation.
func (r *reply) Notice(ctx context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.TrimSpace(text) == "" {
		return nil
	}
	if r.t.slash || r.t.private {
		mrk := MarkdownToMrkdwn(text)
		if r.t.responseURL != "" {
			err := r.a.call(ctx, ratelimit.MustDeliver, r.t.team, "", "response_url", func(ctx context.Context) error {
				_, _, err := r.a.api.PostMessageContext(ctx, r.t.channel, slack.MsgOptionText(mrk, false),
					slack.MsgOptionResponseURL(r.t.responseURL, slack.ResponseTypeEphemeral))
				return err
			})
			if err == nil {
				return nil
			}
			r.log.Warn("response_url reply failed; trying chat.postEphemeral", "err", err)
		}
		opts := []slack.MsgOption{slack.MsgOptionText(mrk, false)}
		if r.t.thread != "" {
			opts = append(opts, slack.MsgOptionTS(r.t.thread))
		}
		return r.a.call(ctx, ratelimit.MustDeliver, r.t.team, r.t.channel, "chat.postEphemeral", func(ctx context.Context) error {
			_, err := r.a.api.PostEphemeralContext(ctx, r.t.channel, r.t.user, opts...)
			return err
		})
	}
	var errs []error
	for _, piece := range conversation.Split(text, r.a.pieceLimit) {
		if _, err := r.postRaw(ctx, ratelimit.MustDeliver, piece); err != nil {
			errs = append(errs, err)
			break
		}
	}
	return errors.Join(errs...)
}

// ---- native streaming ----

// renderNative streams the frame. It reports handled=false after falling
// back to update mode, which then renders the frame.
func (r *reply) renderNative(ctx context.Context, f conversation.Frame) (bool, error) {
	text := f.Text
	if text == "" && !f.Final && r.sentOff == 0 {
		if r.task == nil {
			r.showActivity(ctx, f.Activity)
		}
		r.showReasoning(ctx, f.Reasoning)
		return true, nil
	}
	if r.segments == 0 {
		// A whole answer in its first frame is one post, not a stream; and
		// "auto" posts rather than waits when the startStream budget is spent.
		if f.Final || (r.a.cfg.Streaming == "auto" && !r.a.available(r.t.team, r.t.channel, "chat.startStream")) {
			r.fallback(0, "")
			return false, nil
		}
	}
	if !strings.HasPrefix(text, r.sentText) {
		// The answer changed under what was streamed (a final frame may):
		// end the stream and show the answer anew.
		r.stopQuietly(ctx)
		r.fallback(0, "")
		return false, nil
	}
	sent := r.sentOff
	err := r.stream(ctx, text, f.Final)
	if !f.Final && r.sentOff > sent {
		r.fair.Rendered()
	}
	if errors.Is(err, ratelimit.ErrSkipped) || r.stoppedBySlack(err) {
		return true, nil
	}
	if err != nil {
		if !f.Final && ctx.Err() != nil {
			return true, err
		}
		first := r.segments == 0
		if first && r.a.cfg.Streaming == "auto" && streamingUnavailable(err) {
			r.a.noNative.Store(r.t.team, time.Now().Add(nativeRetryAfter))
			r.log.Info("native streaming unavailable in this workspace; using chat.update for an hour", "err", err)
		} else {
			r.log.Warn("native streaming failed; continuing with chat.postMessage and chat.update", "err", err)
		}
		pre := r.nextPrefix
		if r.seg != nil {
			pre = r.reopenAt(text)
			r.stopQuietly(ctx)
		}
		r.fallback(r.sentOff, pre)
		return false, nil
	}
	if !f.Final {
		return true, nil
	}
	if r.seg == nil {
		if answerStyle.Tail(conversation.Frame{Final: true, Outcome: f.Outcome, Note: f.Note}) == "" {
			return true, nil
		}
		r.fallback(len(text), "") // the note alone, in a new message
		return false, nil
	}
	rest := text[r.sentOff:]
	// Under the text: a code block it ends in closed, and the note.
	note := answerStyle.Tail(conversation.Frame{Text: r.seg.prefix + text[r.seg.start:], Final: true, Outcome: f.Outcome, Note: f.Note})
	if wait := time.Until(r.seg.lastAppend.Add(r.a.editInterval)); wait > 0 && rest != "" {
		if err := ratelimit.Sleep(ctx, wait); err != nil {
			return true, err
		}
	}
	blocks := r.answerBlocks(r.retryButton(f))
	r.finishTask(f)
	err = r.stopSegment(ctx, r.patience(), rest+note, blocks...)
	if errors.Is(err, ratelimit.ErrSkipped) {
		// chat.stopStream is not free soon: the rest is appended (Tier 4)
		// and the stream stopped later with the buttons; failing that, the
		// rest follows in a post.
		job := tidyJob{Team: r.t.team, Channel: r.t.channel, TS: r.seg.ts, Method: "chat.stopStream", Blocks: slack.Blocks{BlockSet: blocks}}
		if rest+note == "" || r.appendSegment(ctx, ratelimit.BestEffort, r.patience(), rest+note) == nil {
			r.seg = nil
			r.sentOff, r.sentText = len(text), text
			r.a.tidyLater(r.log, job)
			delivered("stream_appended")
			return true, nil
		}
		pre := r.reopenAt(text)
		job.Blocks = slack.Blocks{}
		r.seg = nil
		r.a.tidyLater(r.log, job)
		r.fallback(r.sentOff, pre)
		return false, nil
	}
	if err != nil {
		r.log.Warn("chat.stopStream failed; posting the rest instead", "err", err)
		pre := r.reopenAt(text)
		r.seg = nil
		if rest != "" || note != "" {
			r.fallback(r.sentOff, pre)
			return false, nil
		}
		return true, err
	}
	r.sentOff = len(text)
	r.sentText = text
	delivered("stream")
	return true, nil
}

// reopenAt is the fence line to reopen, in a new message, the code block
// the current stream message ends in ("" if none).
func (r *reply) reopenAt(text string) string {
	if f, open := conversation.OpenFence(r.seg.prefix + text[r.seg.start:r.sentOff]); open {
		if line := f.Reopening(r.streamLimit()); line != "" {
			return line + "\n"
		}
	}
	return ""
}

// fallback switches the rest of the answer to post + update, from offset base.
func (r *reply) fallback(base int, pre string) {
	r.mode = modeUpdate
	r.base, r.basePre = base, pre
	r.msgs.List = nil
}

// streamLimit is the limit a streamed message is cut under (by
// conversation.Cut, Split's rule): room is kept to close a code block
// where the text streamed so far ends.
func (r *reply) streamLimit() int { return r.a.pieceLimit - fenceCloseRoom }

// stream sends the part of text not streamed yet, rolling over to a new
// message when one fills up. Intermediate appends are best-effort and
// paced per message; starting and stopping messages always wait for budget.
func (r *reply) stream(ctx context.Context, text string, final bool) error {
	defer func() { r.sentText = text[:r.sentOff] }()
	for range 10000 {
		pending := text[r.sentOff:]
		if pending == "" {
			return nil
		}
		if r.seg == nil {
			msg := r.nextPrefix + pending
			end, next := conversation.Cut(msg, len(r.nextPrefix), r.streamLimit(), nil)
			if err := r.startSegment(ctx, r.nextPrefix, msg[len(r.nextPrefix):end]); err != nil {
				return err
			}
			if end == len(msg) {
				return nil
			}
			if err := r.closeSegment(ctx, text, 0, next-end); err != nil {
				return err
			}
			continue
		}
		// The message shows msg[:shown]; it may end only after that.
		msg := r.seg.prefix + text[r.seg.start:]
		shown := len(msg) - len(pending)
		if end, next := conversation.Cut(msg, shown, r.streamLimit(), nil); end < len(msg) {
			if err := r.closeSegment(ctx, text, end-shown, next-end); err != nil {
				return err
			}
			continue
		}
		if final {
			return nil // the caller stops the stream with the rest and the note, in one call
		}
		if time.Until(r.seg.lastAppend.Add(r.a.editInterval)) > 0 || !r.fair.Turn() {
			return ratelimit.ErrSkipped
		}
		err := r.appendSegment(ctx, ratelimit.BestEffort, 0, pending)
		if errors.Is(err, ratelimit.ErrSkipped) {
			r.fair.Missed()
		}
		return err
	}
	return errors.New("slack streaming made no progress")
}

func (r *reply) startSegment(ctx context.Context, prefix, chunk string) error {
	opts := []slack.MsgOption{
		slack.MsgOptionTS(r.t.thread),
		slack.MsgOptionRecipientUserID(r.t.user),
		slack.MsgOptionRecipientTeamID(r.t.team),
	}
	if md := prefix + chunk; md != "" {
		opts = append(opts, slack.MsgOptionMarkdownText(md))
	}
	var ts string
	err := r.a.call(ctx, ratelimit.MustDeliver, r.t.team, r.t.channel, "chat.startStream", func(ctx context.Context) error {
		var err error
		_, ts, err = r.a.api.StartStreamContext(ctx, r.t.channel, opts...)
		return err
	})
	if err != nil {
		return err
	}
	r.seg = &segment{ts: ts, start: r.sentOff, prefix: prefix, lastAppend: time.Now()}
	r.segments++
	r.nextPrefix = ""
	r.sentOff += len(chunk)
	return nil
}

// appendSegment appends chunk to the current stream; a best-effort append
// with a patience waits at most that long for budget.
func (r *reply) appendSegment(ctx context.Context, p ratelimit.Priority, patience time.Duration, chunk string) error {
	seg := r.seg
	content, sent := r.streamText(chunk)
	appendChunk := func(ctx context.Context) error {
		_, _, err := r.a.api.AppendStreamContext(ctx, r.t.channel, seg.ts, content)
		return err
	}
	var err error
	if p == ratelimit.BestEffort && patience > 0 {
		err = r.a.callWithin(ctx, patience, r.t.team, r.t.channel, "chat.appendStream", appendChunk)
	} else {
		err = r.a.call(ctx, p, r.t.team, r.t.channel, "chat.appendStream", appendChunk)
	}
	if err != nil {
		return err
	}
	sent()
	seg.lastAppend = time.Now()
	r.sentOff += len(chunk)
	return nil
}

// closeSegment ends the current message after cut more bytes of the
// answer, closing a code block left open as Split does (the next message
// reopens it), and skips skip bytes (the break).
func (r *reply) closeSegment(ctx context.Context, text string, cut, skip int) error {
	end := r.sentOff + cut
	md := text[r.sentOff:end]
	reopen := ""
	if f, open := conversation.OpenFence(r.seg.prefix + text[r.seg.start:end]); open {
		if line := f.Reopening(r.streamLimit()); line != "" {
			md += "\n" + f.Closing()
			reopen = line + "\n"
		}
	}
	if err := r.stopSegment(ctx, 0, md); err != nil {
		return err
	}
	r.sentOff = end + skip
	r.nextPrefix = reopen
	r.keepSession()
	return nil
}

// stopSegment stops the current stream, appending md and, under it,
// blocks. With a patience it waits at most that long for budget
// (ratelimit.ErrSkipped), else as long as ctx allows.
func (r *reply) stopSegment(ctx context.Context, patience time.Duration, md string, blocks ...slack.Block) error {
	seg := r.seg
	var opts []slack.MsgOption
	content, sent := r.streamText(md)
	if content != nil {
		opts = append(opts, content)
	}
	if len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	stop := func(ctx context.Context) error {
		_, _, err := r.a.api.StopStreamContext(ctx, r.t.channel, seg.ts, opts...)
		return err
	}
	var err error
	if patience > 0 {
		err = r.a.callWithin(ctx, patience, r.t.team, r.t.channel, "chat.stopStream", stop)
	} else {
		err = r.a.call(ctx, ratelimit.MustDeliver, r.t.team, r.t.channel, "chat.stopStream", stop)
	}
	if err != nil {
		return err
	}
	sent()
	r.seg = nil
	return nil
}

// patience is how long a final render waits for chat.stopStream or
// chat.update budget before it posts instead: finalPatience, or with
// streaming "native" as long as it takes (0).
func (r *reply) patience() time.Duration {
	if r.a.cfg.Streaming == "native" {
		return 0
	}
	return finalPatience
}

// stopQuietly ends the current stream, if any, ignoring failures; it
// tries for at most 5 s of ctx.
func (r *reply) stopQuietly(ctx context.Context) {
	if r.seg == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.stopSegment(sctx, 0, ""); err != nil {
		r.log.Debug("stopping a broken stream failed", "err", err)
	}
	r.seg = nil
}

// showReasoning shows the tail of the model's thinking as the assistant
// status, now and then, while no answer text exists yet.
func (r *reply) showReasoning(ctx context.Context, reasoning string) {
	tail := reasoningTail(reasoning)
	if tail == "" || time.Since(r.statusAt) < r.statusInterval() {
		return
	}
	// slack-go joins loading messages with commas.
	tail = strings.ReplaceAll(tail, ",", " ")
	if err := r.setStatus(ctx, ratelimit.BestEffort, thinkingStatus, []string{tail}); err == nil {
		r.statusAt = time.Now()
	}
}

func (r *reply) statusInterval() time.Duration { return max(3*r.a.editInterval, 2*time.Second) }

func (r *reply) setStatus(ctx context.Context, p ratelimit.Priority, status string, loading []string) error {
	return r.a.call(ctx, p, r.t.team, r.t.channel, "assistant.threads.setStatus", func(ctx context.Context) error {
		return r.a.api.SetAssistantThreadsStatusContext(ctx, slack.AssistantThreadsSetStatusParameters{
			ChannelID: r.t.channel, ThreadTS: r.t.thread, Status: status, LoadingMessages: loading,
		})
	})
}

// ---- post + update ----

// answerStyle is how Slack shows an answer (see render.Layout): the note
// quoted under it. Limit is a markdown block's; each reply keeps pieces of
// text under its adapter's message limit (see style).
var answerStyle = render.Style{
	Limit:       maxMarkdown,
	Cursor:      cursorMark,
	Placeholder: placeholderText,
	NoteSep:     "\n\n",
	Note:        func(_ conversation.Outcome, note string, _ bool) string { return quoteNote(note) },
	Empty:       noAnswerText,
}

// style is answerStyle with pieces of text under the adapter's message limit.
func (r *reply) style() render.Style {
	s := answerStyle
	s.Reserve = max(s.Limit-r.a.pieceLimit, 0)
	return s
}

// renderUpdate shows the frame by posting and editing messages
// (render.Layout and render.Messages.Sync): the answer from r.base on, a
// cursor on the last piece until the final frame, which carries the note
// and the Retry button instead.
func (r *reply) renderUpdate(ctx context.Context, f conversation.Frame) error {
	button := r.retryButton(f)
	if r.base > 0 || r.basePre != "" {
		if r.base <= len(f.Text) && strings.HasPrefix(f.Text, r.sentText) {
			f.Text = r.basePre + f.Text[r.base:]
		}
	}
	if strings.TrimSpace(f.Text) == "" && !f.Final && f.Activity == "" {
		r.showReasoningInPlaceholder(ctx, f.Reasoning)
		return nil
	}
	if !f.Final {
		return r.msgs.Sync(ctx, surface{r: r}, render.Want{Pieces: render.Layout(r.style(), f), Live: true, Priority: ratelimit.BestEffort})
	}
	want := render.Want{Pieces: render.Layout(r.style(), f), Button: button, Priority: ratelimit.MustDeliver}
	within := r.patience()
	if r.finishBy == "chat.delete" && within > 0 {
		within = -1 // claimed to be posted instead: edit only if chat.update is free now, beyond claims
	}
	how := "edit"
	if len(r.msgs.List) == 0 {
		how = "post"
	}
	err := r.msgs.Sync(ctx, surface{r: r, within: within}, want)
	if !errors.Is(err, ratelimit.ErrSkipped) {
		if err == nil {
			delivered(how)
		}
		return err
	}
	if err = r.postInstead(ctx, want); err == nil {
		delivered("posted_instead")
	}
	return err
}

// delivered counts a final answer shown (metrics.Deliveries).
func delivered(how string) { metrics.Deliveries.WithLabelValues(conversation.PlatformSlack, how).Inc() }

// postInstead shows a final frame whose edits chat.update could not make
// within finalPatience by posting it whole. What was shown before (a
// placeholder, partial text) is deleted first where chat.delete has a
// call free now, else as soon as it has (see tidy). want is the final
// sync that was skipped.
func (r *reply) postInstead(ctx context.Context, want render.Want) error {
	for _, m := range r.msgs.List {
		if m.Gone {
			continue
		}
		job := tidyJob{Team: r.t.team, Channel: r.t.channel, TS: m.ID, Method: "chat.delete"}
		if err := r.a.call(ctx, ratelimit.BestEffort, r.t.team, r.t.channel, job.Method, func(ctx context.Context) error {
			return r.a.tidyCall(ctx, job)
		}); err != nil && !messageGone(err) {
			r.a.tidyLater(r.log, job)
		}
	}
	r.msgs.List = nil
	return r.msgs.Sync(ctx, surface{r: r}, want)
}

// showReasoningInPlaceholder shows the tail of the model's thinking in the
// placeholder, now and then, while no answer text exists yet.
func (r *reply) showReasoningInPlaceholder(ctx context.Context, reasoning string) {
	tail := reasoningTail(reasoning)
	if tail == "" || len(r.msgs.List) != 1 || !strings.HasPrefix(r.msgs.List[0].Content, placeholderText) ||
		time.Since(r.msgs.List[0].At) < r.statusInterval() {
		return
	}
	md := placeholderText + "\n> _" + escapeEmphasis(tail) + "_"
	if err := r.msgs.Sync(ctx, surface{r: r}, render.Want{Pieces: []string{md}, Live: true, Priority: ratelimit.BestEffort}); err != nil {
		r.log.Debug("showing the reasoning failed", "err", err)
	}
}

// retryButton is the Retry button's value for the last message of a
// finished answer with text (of any orphan), when the answer's question
// is known: the question ("": none).
func (r *reply) retryButton(f conversation.Frame) string {
	if !f.Final || strings.TrimSpace(f.Text) == "" && !r.t.orphan {
		return ""
	}
	return r.t.question
}

// retryBlocks is the Retry button for a question ("": none).
func retryBlocks(question string) []slack.Block {
	if question == "" {
		return nil
	}
	return []slack.Block{retryBlock(question)}
}

// surface is render's view of an update-mode answer: chat.postMessage,
// chat.update and chat.delete in its thread; a message's button is the
// question its Retry button asks again. With within, a must-deliver edit
// waits at most that long for budget (ratelimit.ErrSkipped); with it
// negative, it is made only if budget beyond the claims is free now.
type surface struct {
	r      *reply
	within time.Duration
}

func (s surface) Post(ctx context.Context, p ratelimit.Priority, _ string, m render.Piece) (string, error) {
	return s.r.postRaw(ctx, p, m.Content, s.r.answerBlocks(m.Button)...)
}

func (s surface) Edit(ctx context.Context, p ratelimit.Priority, ts string, m render.Piece) error {
	r := s.r
	update := func(ctx context.Context) error {
		_, _, _, err := r.a.api.UpdateMessageContext(ctx, r.t.channel, ts, contentOptions(m.Content, r.answerBlocks(m.Button)...)...)
		return err
	}
	switch {
	case p != ratelimit.MustDeliver || s.within == 0:
	case s.within < 0:
		p = ratelimit.BestEffort
	default:
		return gone(r.a.callWithin(ctx, s.within, r.t.team, r.t.channel, "chat.update", update))
	}
	return gone(r.a.call(ctx, p, r.t.team, r.t.channel, "chat.update", update))
}

func (s surface) Delete(ctx context.Context, p ratelimit.Priority, ts string) error {
	r := s.r
	return gone(r.a.call(ctx, p, r.t.team, r.t.channel, "chat.delete", func(ctx context.Context) error {
		_, _, err := r.a.api.DeleteMessageContext(ctx, r.t.channel, ts)
		return err
	}))
}

// gone marks an error meaning the message no longer exists as render.ErrGone.
func gone(err error) error {
	if err != nil && messageGone(err) {
		return fmt.Errorf("%w: %w", render.ErrGone, err)
	}
	return err
}

func (r *reply) postRaw(ctx context.Context, p ratelimit.Priority, md string, extra ...slack.Block) (string, error) {
	opts := append(contentOptions(md, extra...), slack.MsgOptionDisableLinkUnfurl(), slack.MsgOptionDisableMediaUnfurl())
	if r.t.thread != "" {
		opts = append(opts, slack.MsgOptionTS(r.t.thread))
	}
	var ts string
	err := r.a.call(ctx, p, r.t.team, r.t.channel, "chat.postMessage", func(ctx context.Context) error {
		var err error
		_, ts, err = r.a.api.PostMessageContext(ctx, r.t.channel, opts...)
		return err
	})
	return ts, err
}

// contentOptions carries standard Markdown in a markdown block (extra
// blocks under it), with a mrkdwn rendering as the notification text.
func contentOptions(md string, extra ...slack.Block) []slack.MsgOption {
	if strings.TrimSpace(md) == "" {
		md = "…"
	}
	return []slack.MsgOption{
		slack.MsgOptionText(fallbackText(md), false),
		slack.MsgOptionBlocks(append([]slack.Block{slack.NewMarkdownBlock("", md)}, extra...)...),
	}
}

// fallbackText is the notification text for a message whose content is a markdown block.
func fallbackText(md string) string {
	return render.Truncate(MarkdownToMrkdwn(render.Truncate(md, maxFallbackRune)), maxFallbackRune)
}

// ---- helpers ----

// quoteNote formats a final note as a quoted warning.
func quoteNote(note string) string {
	lines := strings.Split(render.Truncate(note, maxNoteRunes), "\n")
	for i, l := range lines {
		lines[i] = "> " + l
	}
	lines[0] = "> ⚠️ " + strings.TrimPrefix(lines[0], "> ")
	return strings.Join(lines, "\n")
}

// reasoningTail is the last words of the model's thinking, on one line.
func reasoningTail(reasoning string) string {
	t := strings.Join(strings.Fields(reasoning), " ")
	if t == "" {
		return ""
	}
	if n := utf8.RuneCountInString(t); n > maxReasoningTail {
		t = "…" + string([]rune(t)[n-maxReasoningTail:])
	}
	return t
}

var emphasisEscaper = strings.NewReplacer("_", "\\_", "*", "\\*", "`", "\\`")

func escapeEmphasis(s string) string { return emphasisEscaper.Replace(s) }

// streamingUnavailable reports an error meaning the workspace can't stream
// natively (an unknown or disallowed method, a plan or setting without it).
func streamingUnavailable(err error) bool {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "unknown_method", "not_allowed", "not_allowed_token_type", "feature_not_enabled", "feature_not_available",
			"method_not_supported_for_channel_type", "missing_scope", "no_permission", "access_denied",
			"team_access_not_granted", "restricted_action", "not_supported", "method_deprecated":
			return true
		}
		return false
	}
	var sc slack.StatusCodeError
	return errors.As(err, &sc) && (sc.Code == http.StatusNotFound || sc.Code == http.StatusGone)
}

// messageGone reports an error meaning the message to edit no longer exists.
func messageGone(err error) bool {
	var se slack.SlackErrorResponse
	return errors.As(err, &se) && (se.Err == "message_not_found" || se.Err == "cant_update_message")
}

package conversation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/metrics"
)

// Streamer opens a streamed answer from Ark, by chat completions or the
// Responses API; *arkclient.Client implements it.
type Streamer interface {
	Stream(ctx context.Context, req arkclient.Request) (*arkclient.Stream, error)
	StreamResponses(ctx context.Context, req arkclient.ResponsesRequest) (*arkclient.Stream, error)
}

// Engine answers messages: commands, limits, context, streaming, saving.
// It implements Handler.
type Engine struct {
	models       []Model
	modelNames   []string
	defaultModel *Model
	systemTmpl   string
	limits       Limits
	idle         time.Duration // Ark's idle timeout; 0: none
	chainTTL     time.Duration // expire_at of stored responses; 0: defaultChainTTL
	store        *Store
	ark          Streamer
	log          *slog.Logger
	interval     map[string]time.Duration
	now          func() time.Time
	starts       *startGate // nil: no limit on set-ups at once
	finishers    finishers  // per platform, for orphaned answers

	// Answers in flight: running maps DedupeKey to its *answering; mu
	// orders enter (read-locked, so answers never wait on each other) with
	// Shutdown setting closing.
	running  sync.Map
	threads  sync.Map // thread key to the *answering that holds its lock
	mu       sync.RWMutex
	closing  bool
	inflight sync.WaitGroup
	base     context.Context // cancelled when a shutdown's grace ends
	stopAll  context.CancelCauseFunc
	// renders bounds every render: not /stop nor the grace's end, only a
	// shutdown's deadline cancels it.
	renders     context.Context
	stopRenders context.CancelFunc
}

// Cancellation causes that decide an interrupted answer's outcome.
var (
	errStopped  = errors.New("stopped by the user")
	errShutdown = errors.New("bot shutting down")
	errPanicked = errors.New("showing the answer panicked")
)

// NewEngine returns an engine answering with models (at least one, the
// first being the default unless WithDefaultModel names another), keeping
// conversations in store and streaming answers from ark.
func NewEngine(models []Model, store *Store, ark Streamer, opts ...Option) *Engine {
	base, stop := context.WithCancelCause(context.Background())
	renders, stopRenders := context.WithCancel(context.Background())
	e := &Engine{
		models: slices.Clone(models), store: store, ark: ark, log: slog.Default(),
		interval: map[string]time.Duration{}, now: time.Now,
		base: base, stopAll: stop, renders: renders, stopRenders: stopRenders,
	}
	for _, m := range e.models {
		e.modelNames = append(e.modelNames, m.Name)
	}
	if len(e.models) > 0 {
		e.defaultModel = &e.models[0]
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Messages shown to users by the engine.
const (
	msgMemoryDown     = "⚠️ I can't reach my memory (Redis) right now, so I can't answer safely. Please try again in a moment."
	msgBusy           = "⚠️ I'm still busy with an earlier message in this conversation. Please try again in a moment."
	msgRestarting     = "⚠️ I'm restarting right now. Please send that again in a few seconds."
	msgEmpty          = "You mentioned me without a question. Ask me anything, or type /help."
	msgNothingToRetry = "There is no answer in this conversation to redo yet: ask me something first."
	msgNotLatest      = "Only the latest answer in a conversation can be redone, and this one has newer messages after it. Retry the latest answer instead."
	msgStopped        = "⏹️ Stopped the answer in progress; what it said so far stays."
	msgNothingToStop  = "There's no answer in progress in this conversation to stop."
	msgNotYours       = "Only the person who asked, or an admin, can stop the answer in progress."
	msgCrashed        = "⚠️ Something went wrong on my side while answering. Please try again."
)

// answering is an answer holding its thread's lock, for /stop.
type answering struct {
	cancel  context.CancelCauseFunc
	owner   string // the asker's user key
	ownerID string // the asker's user ID on the platform
}

// mayStop reports whether u may stop this answer: its asker or an admin.
func (a *answering) mayStop(u User) bool { return u.Admin || a.ownerID == u.ID }

// retryRefusal says why the latest question q (ok: there is one) can't be
// answered again for a /retry naming question id (empty: the latest).
// Questions saved before turns had IDs match any id.
func retryRefusal(q Turn, ok bool, id string) string {
	switch {
	case !ok:
		return msgNothingToRetry
	case id != "" && q.ID != "" && q.ID != id:
		return msgNotLatest
	}
	return ""
}

// Handle implements Handler. A panic while handling m, in the engine or in
// r, ends there: it is logged, the chat is told if r still can, and the
// engine keeps serving.
func (e *Engine) Handle(ctx context.Context, m Message, r Reply) (err error) {
	log := e.log.With("platform", m.Platform, "thread", m.ThreadKey(), "message_id", m.ID)
	defer func() {
		if v := recover(); v != nil {
			err = logPanic(log, v)
			if nerr := protect(func() error { return r.Notice(ctx, msgCrashed) }); nerr != nil {
				log.Warn("telling the chat about the panic failed", "err", nerr)
			}
		}
	}()
	return e.handle(ctx, log, m, r)
}

// handle is Handle without the panic recovery.
func (e *Engine) handle(ctx context.Context, log *slog.Logger, m Message, r Reply) error {
	if !e.enter() {
		metrics.Messages.WithLabelValues(m.Platform, "refused").Inc()
		return r.Notice(ctx, msgRestarting)
	}
	defer e.inflight.Done()
	// A burst of messages is set up a few at a time (server.max_starting);
	// an answer gives its slot back once its request to Ark is sent.
	started, err := e.starts.enter(ctx)
	if err != nil {
		return err
	}
	defer started()

	cmd, isCmd := ParseCommand(m.Text)
	retry := isCmd && cmd.Name == CmdRetry
	empty := !isCmd && strings.TrimSpace(m.Text) == "" && len(m.Images) == 0 && len(m.Files) == 0
	// A message to answer takes its thread's lock in the admission's round
	// trip. A follow-up nobody addressed to the bot is answered only where
	// the bot is talking (checked in the same round trip); elsewhere the bot
	// says nothing, not even that Redis is down.
	adm, err := e.store.Admit(ctx, m, e.modelNames, e.now(), retry || !isCmd && !empty)
	if err != nil && !m.Mentioned {
		return err
	}
	if err != nil {
		metrics.RedisErrors.WithLabelValues("admit").Inc()
		metrics.Messages.WithLabelValues(m.Platform, "error").Inc()
		log.Error("redis unavailable", "err", err)
		return errors.Join(err, r.Notice(ctx, msgMemoryDown))
	}
	if !adm.Talking {
		return nil
	}
	if !adm.First {
		metrics.Messages.WithLabelValues(m.Platform, "duplicate").Inc()
		log.Debug("duplicate delivery dropped")
		return nil
	}
	if retry {
		// Refused without a sign of life when there is nothing to redo; the
		// answer checks again under the thread's lock.
		q, ok := Turn{}, false
		if adm.Thread != nil {
			q, ok = lastQuestion(adm.Thread.Turns)
		} else {
			q, ok, err = e.store.LastQuestion(ctx, m.ThreadKey())
		}
		if note := retryRefusal(q, ok, cmd.Arg); err != nil || note != "" {
			e.release(ctx, log, adm.Thread)
			metrics.Messages.WithLabelValues(m.Platform, "refused").Inc()
			if err != nil {
				metrics.RedisErrors.WithLabelValues("load").Inc()
				note = msgMemoryDown
			}
			return r.Notice(ctx, note)
		}
		return e.answer(ctx, log, m, r, adm, &cmd, started)
	}
	if isCmd {
		metrics.Messages.WithLabelValues(m.Platform, "command").Inc()
		text, err := e.command(ctx, m, cmd, adm)
		if err != nil {
			metrics.RedisErrors.WithLabelValues("command").Inc()
			log.Error("command failed", "command", cmd.Name, "err", err)
			text = msgMemoryDown
		}
		return r.Notice(ctx, text)
	}
	if empty {
		metrics.Messages.WithLabelValues(m.Platform, "refused").Inc()
		return r.Notice(ctx, msgEmpty)
	}
	return e.answer(ctx, log, m, r, adm, nil, started)
}

// release unlocks t, if not nil, without saving; an orphaned answer
// claimed with its lock is finished aside.
func (e *Engine) release(ctx context.Context, log *slog.Logger, t *Thread) {
	if t == nil {
		return
	}
	if o := t.orphan; o != nil {
		t.orphan = nil
		go e.finishOrphans([]Orphan{*o})
	}
	if err := t.Release(context.WithoutCancel(ctx)); err != nil {
		log.Warn("release failed", "err", err)
	}
}

// enter registers an answer in flight unless the engine is shutting down.
func (e *Engine) enter() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closing {
		return false
	}
	e.inflight.Add(1)
	return true
}

// Stop implements Handler.
func (e *Engine) Stop(dedupeKey string, by User) StopResult {
	v, ok := e.running.Load(dedupeKey)
	if !ok {
		return StopResult{}
	}
	a := v.(*answering)
	res := StopResult{Running: true, Owner: a.ownerID, Stopped: a.mayStop(by)}
	if res.Stopped {
		a.cancel(errStopped)
	}
	return res
}

// stopLocal stops the answer this process runs in thread, if any.
func (e *Engine) stopLocal(thread string) bool {
	a, ok := e.threads.Load(thread)
	if ok {
		a.(*answering).cancel(errStopped)
	}
	return ok
}

// ListenForStops stops this process's answers that /stop asks any replica
// to stop, until ctx ends; ready (if not nil) is called each time it
// subscribes. While Redis is down, /stop works only on the replica running
// the answer.
func (e *Engine) ListenForStops(ctx context.Context, ready func()) {
	for {
		err := e.store.StopRequests(ctx, ready, func(thread string) { e.stopLocal(thread) })
		if err == nil {
			return
		}
		e.log.Warn("not listening for /stop from other replicas; retrying in 5s", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// Shutdown stops taking messages and lets answers in flight finish for
// up to grace; then it interrupts the rest, which save what they showed
// and render their final frames (saying they were interrupted) until ctx
// ends. It returns once every answer is done, or when ctx ends: renders
// still running are then cancelled and their answers abandoned (their
// thread locks expire by TTL).
func (e *Engine) Shutdown(ctx context.Context, grace time.Duration) {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	defer e.stopRenders()
	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	e.stopAll(errShutdown)
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("shutdown deadline reached: abandoning answers still rendering")
	}
}

// modelFor picks the model: the thread's choice, else the channel's, else the default.
func (e *Engine) modelFor(threadModel, channelModel string) *Model {
	for _, name := range []string{threadModel, channelModel} {
		if m := e.model(name); m != nil && name != "" {
			return m
		}
	}
	return e.defaultModel
}

// ModelChoices implements Handler.
func (e *Engine) ModelChoices(ctx context.Context, m Message) []ModelChoice {
	current := e.currentModel(ctx, m)
	out := []ModelChoice{{Name: current.Name, ID: current.ID, Description: current.Description, Current: true}}
	for _, mdl := range e.models {
		if mdl.Name != current.Name {
			out = append(out, ModelChoice{Name: mdl.Name, ID: mdl.ID, Description: mdl.Description})
		}
	}
	return out
}

func (e *Engine) currentModel(ctx context.Context, m Message) *Model {
	tm, _ := e.store.ThreadModel(ctx, m.ThreadKey())
	cm, _ := e.store.ChannelModel(ctx, m.ChannelKey())
	return e.modelFor(tm, cm)
}

// keepLock renews the thread lock while the answer runs, recording its
// progress (see Thread.Renew); the first renewal comes after at most
// locateAfter, to record where the answer's message is. The returned func
// stops renewing and waits until no renewal is in flight; it is idempotent.
// A timer rather than a goroutine waits between renewals: a goroutine per
// answer, parked for seconds, was stack the garbage collector scanned in
// every cycle.
func (e *Engine) keepLock(ctx context.Context, log *slog.Logger, t *Thread, progress func() Progress) func() {
	ctx, cancel := context.WithCancel(ctx)
	every := e.store.opt.LockTTL / 3
	var (
		mu    sync.Mutex // held by a renewal in flight
		timer *time.Timer
	)
	mu.Lock()
	timer = time.AfterFunc(min(every, locateAfter), func() {
		mu.Lock()
		defer mu.Unlock()
		defer func() {
			if v := recover(); v != nil {
				logPanic(log, v) // the lock expires by its TTL
			}
		}()
		if ctx.Err() != nil {
			return
		}
		if ok, err := t.Renew(ctx, progress()); (err != nil || !ok) && ctx.Err() == nil {
			log.Warn("lock renewal failed", "held", ok, "err", err)
		}
		if ctx.Err() == nil {
			timer.Reset(every)
		}
	})
	mu.Unlock()
	return func() {
		cancel()
		mu.Lock() // after a renewal in flight, which then re-arms nothing
		timer.Stop()
		mu.Unlock()
	}
}

// refuse returns a note when limits or access forbid answering, else "".
func (e *Engine) refuse(ctx context.Context, m Message, model *Model, adm Admission) string {
	if m.User.Admin {
		return ""
	}
	if model.AdminsOnly {
		return fmt.Sprintf("The model %s is reserved for admins here. Pick another one with /model.", model.Name)
	}
	if q := e.limits.DailyTokens; q > 0 && adm.UsedToday >= q {
		return fmt.Sprintf("You've used your daily allowance of %d tokens. It resets at 00:00 UTC; /usage shows where you stand.", q)
	}
	if q := model.DailyTokens; q > 0 && adm.UsedByModel[model.Name] >= q {
		return fmt.Sprintf("You've used today's allowance of %d tokens on %s. Try another model with /model, or wait until 00:00 UTC.", q, model.Name)
	}
	for _, lim := range []struct {
		key string
		n   int
	}{{m.userKey(), e.limits.RequestsPerMinute}, {m.userKey() + ":" + model.Name, model.RequestsPerMinute}} {
		if lim.n <= 0 {
			continue
		}
		wait, err := e.store.Allow(ctx, lim.key, lim.n)
		if err != nil {
			e.log.Warn("rate limit check failed; allowing", "err", err)
			continue
		}
		if wait > 0 {
			return fmt.Sprintf("You're sending messages faster than the limit of %d a minute. Try again in %s.", lim.n, wait.Round(time.Second))
		}
	}
	return ""
}

// userText is the new message as sent to the model, with the adapter's text
// attachments and a cut at max_input_chars, plus notices for the user.
func (e *Engine) userText(m Message, model *Model) (string, []string) {
	var notices []string
	text := m.Text
	if limit := e.limits.MaxInputChars; limit > 0 && len([]rune(text)) > limit {
		text = string([]rune(text)[:limit])
		notices = append(notices, fmt.Sprintf("Your message was cut to its first %d characters.", limit))
	}
	for _, f := range m.Files {
		text += fmt.Sprintf("\n\n[Attached file %s]\n```\n%s\n```", f.Name, f.Text)
	}
	if len(m.Images) > 0 && !model.Vision {
		notices = append(notices, fmt.Sprintf("%s can't see images, so I ignored %d attached image(s); pick a vision model with /model.", model.Name, len(m.Images)))
	}
	if len(m.Ignored) > 0 {
		notices = append(notices, "I can't read these attachments, so I ignored them: "+strings.Join(m.Ignored, ", ")+".")
	}
	return text, notices
}

// streamResult is how a stream ended.
type streamResult struct {
	frame         Frame
	usage         *arkclient.Usage
	historyTokens int    // tokens of the system prompt and history sent (or carried by Ark)
	responseID    string // the Responses API's stored response, once complete
	continued     bool   // the request continued the thread's chain
}

// activitySearching is Frame.Activity while Ark searches the web.
const activitySearching = "Searching the web…"

// open opens the answer's stream: a chat completion, or a Responses API
// turn continuing the thread's chain, or, when there is none or Ark lost
// it, starting a new one from the transcript. res.historyTokens says what
// the stream's request carried.
func (e *Engine) open(ctx context.Context, log *slog.Logger, model *Model, req builtRequest, res *streamResult) (*arkclient.Stream, error) {
	if req.full == nil {
		return e.ark.Stream(ctx, req.Request)
	}
	if req.cont != nil {
		s, err := e.ark.StreamResponses(ctx, *req.cont)
		var aerr *arkclient.Error
		if !errors.As(err, &aerr) || aerr.Code != arkclient.CodeChainLost {
			metrics.Chains.WithLabelValues(model.Name, "continued").Inc()
			res.historyTokens, res.continued = req.contTokens, true
			return s, err
		}
		metrics.Chains.WithLabelValues(model.Name, "lost").Inc()
		log.Info("ark no longer has the thread's chain; starting a new one from the transcript", "previous_response_id", req.cont.PreviousResponseID)
	}
	metrics.Chains.WithLabelValues(model.Name, "started").Inc()
	return e.ark.StreamResponses(ctx, *req.full)
}

// stream calls Ark and feeds the pacer until the answer ends.
func (e *Engine) stream(ctx context.Context, log *slog.Logger, m Message, p *pacer, model *Model, req builtRequest, start time.Time) streamResult {
	res := streamResult{historyTokens: req.historyTokens}
	var text, reasoning strings.Builder
	var sources []Source
	activity := ""
	frame := func() Frame {
		return Frame{Text: text.String(), Reasoning: reasoning.String(), Model: model.Name, Activity: activity}
	}
	final := func() Frame {
		f := frame()
		f.Final, f.Activity, f.Sources = true, "", sources
		return f
	}
	fail := func(err error) streamResult {
		res.frame = final()
		var aerr *arkclient.Error
		switch {
		case ctx.Err() != nil:
			cause := context.Cause(ctx)
			res.frame.Outcome = OutcomeInterrupted
			if errors.Is(cause, errStopped) {
				res.frame.Outcome = OutcomeStopped
			}
			res.frame.Note = interruptNote(cause)
		case errors.As(err, &aerr):
			res.frame.Outcome = OutcomeInterrupted
			res.frame.Note = aerr.UserMessage()
			// A broken or stalled stream's message says the answer is incomplete.
			if aerr.Interrupted && res.frame.Text != "" && aerr.Code != arkclient.CodeStreamInterrupted && aerr.Code != arkclient.CodeTimeout {
				res.frame.Note = "The answer was interrupted: " + res.frame.Note
			}
			log.Warn("ark error", "code", aerr.Code, "status", aerr.Status, "request_id", aerr.RequestID, "message", aerr.Message)
		default:
			res.frame.Outcome = OutcomeInterrupted
			res.frame.Note = "Something went wrong while I was answering. Please try again."
			log.Error("stream failed", "err", err)
		}
		if res.frame.Text == "" && res.frame.Outcome == OutcomeInterrupted || errors.Is(context.Cause(ctx), errPanicked) {
			res.frame.Outcome = OutcomeFailed
		}
		return res
	}

	s, err := e.open(ctx, log, model, req, &res)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	first := true
	finish := ""
	for {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		if first && (c.Content != "" || c.Reasoning != "") {
			first = false
			metrics.FirstToken.WithLabelValues(m.Platform, model.Name).Observe(e.now().Sub(start).Seconds())
		}
		text.WriteString(c.Content)
		reasoning.WriteString(c.Reasoning)
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
		if c.Usage != nil {
			res.usage = c.Usage
		}
		if c.ResponseID != "" {
			res.responseID = c.ResponseID
		}
		for _, src := range c.Sources {
			sources = append(sources, Source{Title: src.Title, URL: src.URL})
		}
		searching := activity != ""
		switch {
		case c.Search == arkclient.SearchStarted:
			activity = activitySearching
		case c.Search == arkclient.SearchDone || c.Content != "":
			activity = ""
		}
		if c.Content != "" || c.Reasoning != "" || searching != (activity != "") {
			p.update(frame())
			e.readLater(ctx, p)
		}
	}
	res.frame = final()
	res.frame.Outcome = OutcomeDone
	switch finish {
	case "length":
		res.frame.Outcome = OutcomeTruncated
		res.frame.Note = fmt.Sprintf("The answer hit %s's limit of %d tokens and was cut. Ask me to continue.", model.Name, model.MaxTokens)
	case "content_filter":
		res.frame.Outcome = OutcomeFiltered
		res.frame.Note = "Ark's content moderation stopped this answer."
	}
	if res.frame.Text == "" && res.frame.Outcome == OutcomeDone {
		res.frame.Outcome = OutcomeFailed
		res.frame.Note = "The model returned an empty answer. Please try rephrasing."
	}
	return res
}

// readLater waits, after a chunk, until shortly before the pacer's next
// render could start (or ctx ends): what Ark streams meanwhile waits in the
// connection's buffer and is read in a few reads just before the render
// that shows it, instead of one read and one goroutine wake-up per token.
// The user sees the same renders at the same moments; the bot spends a
// fraction of the CPU per token (docs/decisions.md).
// The wait stays well under Ark's idle timeout, which counts from the
// last chunk read.
func (e *Engine) readLater(ctx context.Context, p *pacer) {
	now := time.Now()
	wait := p.quietUntil(now).Sub(now) - min(readAhead, p.interval/4)
	if e.idle > 0 {
		wait = min(wait, e.idle/4)
	}
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// finalRenderTimeout bounds a final render outside the pacer.
const finalRenderTimeout = 30 * time.Second

// readAhead is how long before a render the stream is read again: time
// enough to read and decode the chunks buffered meanwhile.
const readAhead = 100 * time.Millisecond

func (e *Engine) renderInterval(platform string) time.Duration {
	if d, ok := e.interval[platform]; ok {
		return d
	}
	return time.Second
}

// finish renders the final frame even when the answer's context is gone,
// until a shutdown's deadline at the latest.
func (e *Engine) finish(r Reply, f Frame) error {
	ctx, cancel := context.WithTimeout(e.renders, finalRenderTimeout)
	defer cancel()
	return r.Render(ctx, f)
}

func interruptNote(cause error) string {
	switch {
	case errors.Is(cause, errStopped):
		return "Stopped."
	case errors.Is(cause, errShutdown):
		return "I was restarted before I could finish. Ask again to get the rest."
	case errors.Is(cause, errPanicked):
		return msgCrashed
	default:
		return "The answer was interrupted. Please ask again."
	}
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + " " + b
}

func countTokens(model string, u *arkclient.Usage) {
	for kind, n := range map[string]int{"prompt": u.PromptTokens, "completion": u.CompletionTokens, "reasoning": u.ReasoningTokens, "cached": u.CachedTokens} {
		if n > 0 {
			metrics.Tokens.WithLabelValues(model, kind).Add(float64(n))
		}
	}
}

// excerpt is text's first n characters on one line, with "…" when cut.
func excerpt(text string, n int) string {
	text = strings.Join(strings.Fields(text), " ")
	if r := []rune(text); len(r) > n {
		return string(r[:n]) + "…"
	}
	return text
}

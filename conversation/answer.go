package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/metrics"
)

// answer runs one model answer: take the thread, prepare the question,
// build the request, stream, save, finish. A retry (a /retry command)
// answers the thread's latest question again and replaces its answer.
//
// A panic in any step or in the Reply ends the answer as failed: it is
// logged, the chat is told if the Reply still can, and the thread's lock
// is released.
func (e *Engine) answer(ctx context.Context, log *slog.Logger, m Message, r Reply, adm Admission, retry *Command, started func()) (err error) {
	a := e.newRun(ctx, log, m, r)
	defer a.end()
	defer a.releaseThread()
	defer a.recoverInto(&err)
	if err := a.takeThread(adm); err != nil {
		return errors.Join(err, a.finish(a.lockFailure(err)))
	}
	if f, ok := a.prepare(adm, retry); !ok {
		return a.finish(f)
	}
	req, f, ok := a.request()
	if !ok {
		return a.finish(f)
	}
	// A render that panics ends the answer; its final frame is rendered
	// all the same, and once more as a failure if that panics too.
	p := newPacer(e.renders, a.r, e.renderInterval(m.Platform), a.log, func() { a.cancel(errPanicked) })
	defer p.stop()
	a.setProgress(a.q.id, p)
	res := a.stream(req, p, started)
	saveErr := a.save(&res)
	res.frame.Note = joinNotes(res.frame.Note, strings.Join(a.q.notices, " "))
	a.log.Info("answered", "outcome", res.frame.Outcome, "chars", len(res.frame.Text), "took", e.now().Sub(a.start).Round(time.Millisecond))
	finalErr := p.finish(res.frame)
	if _, ok := errors.AsType[*panicError](finalErr); ok {
		finalErr = errors.Join(finalErr, a.finish(a.crashFrame()))
	}
	return errors.Join(saveErr, finalErr)
}

// recoverInto, deferred by a run's function, turns a panic of the run's
// goroutine into *err (see crashed).
func (a *run) recoverInto(err *error) {
	if v := recover(); v != nil {
		*err = a.crashed(v)
	}
}

// crashed handles a panic of the answer's goroutine: it logs v and ends
// the answer in the chat as failed, if the Reply still can.
func (a *run) crashed(v any) error {
	err := logPanic(a.log, v)
	return errors.Join(err, a.finish(a.crashFrame()))
}

// crashFrame is the final frame of an answer that panicked.
func (a *run) crashFrame() Frame {
	f := Frame{Final: true, Outcome: OutcomeFailed, Note: msgCrashed}
	if a.model != nil {
		f.Model = a.model.Name
	}
	return f
}

// run is one answer in progress: what its steps share.
type run struct {
	e      *Engine
	ctx    context.Context         // the caller's
	actx   context.Context         // also ended by /stop and shutdown
	cancel context.CancelCauseFunc // ends actx
	log    *slog.Logger
	m      Message
	r      Reply
	start  time.Time
	end    func() // undoes newRun

	holder    *answering // in e.threads while the thread's lock is held
	thread    *Thread
	stopRenew func() // stops renewing the lock; idempotent
	saved     bool   // the save released the lock
	model     *Model
	set       inForce // the thread's, channel's or model's settings
	q         question

	progressMu sync.Mutex // the lock renewals read what follows
	questionID string
	pacer      *pacer
}

// setProgress tells the lock renewals the question's ID and the pacer
// showing the answer.
func (a *run) setProgress(questionID string, p *pacer) {
	a.progressMu.Lock()
	a.questionID, a.pacer = questionID, p
	a.progressMu.Unlock()
}

// progress is what a lock renewal records of the answer: where its message
// is, if the Reply knows (Located), and what it showed.
func (a *run) progress() Progress {
	var p Progress
	if l, ok := a.r.(Located); ok {
		p.Location, _ = l.Location()
	}
	a.progressMu.Lock()
	p.Question = a.questionID
	if a.pacer != nil {
		p.Shown = a.pacer.shown()
	}
	a.progressMu.Unlock()
	return p
}

// question is the question an answer answers, as it is saved.
type question struct {
	id, asker, text string
	time            time.Time
	notices         []string // for the user, at the end of the answer
}

// newRun registers an answer to m: /stop (by its dedupe key) and shutdown
// cancel its context from now on, as does the caller's ctx. Its end
// method unregisters it.
func (e *Engine) newRun(ctx context.Context, log *slog.Logger, m Message, r Reply) *run {
	actx, cancel := context.WithCancelCause(ctx)
	stopOnShutdown := context.AfterFunc(e.base, func() { cancel(context.Cause(e.base)) })
	holder := &answering{cancel: cancel, owner: m.userKey(), ownerID: m.User.ID}
	e.running.Store(m.DedupeKey(), holder)
	a := &run{e: e, ctx: ctx, actx: actx, cancel: cancel, log: log, m: m, r: r, start: e.now(), holder: holder}
	a.end = func() {
		e.running.Delete(m.DedupeKey())
		stopOnShutdown()
		cancel(nil)
	}
	return a
}

// takeThread shows a sign of life and holds the thread's lock, renewed
// until the save: the admission's lock if it took one, else the lock
// once the thread's previous answer lets go of it. Whoever holds the
// thread's lock is /stop's to find. On error, no lock is held.
func (a *run) takeThread(adm Admission) error {
	e := a.e
	a.thread = adm.Thread
	if a.thread != nil {
		a.holdLock()
	}
	if err := protect(func() error { return a.r.Begin(a.actx) }); err != nil {
		if _, ok := errors.AsType[*panicError](err); ok {
			panic(err) // ends the answer as failed, the lock released
		}
		a.log.Warn("begin failed", "err", err)
	}
	if a.thread != nil {
		return nil
	}
	t, err := e.store.LockAnswer(a.actx, a.m, a.start)
	if err != nil {
		return err
	}
	a.thread = t
	a.holdLock()
	return nil
}

// holdLock starts renewing the thread's lock and makes the answer /stop's
// to find. An orphaned answer claimed with the lock is finished aside.
func (a *run) holdLock() {
	a.stopRenew = a.e.keepLock(a.actx, a.log, a.thread, a.progress)
	a.e.threads.Store(a.thread.Key, a.holder)
	if o := a.thread.orphan; o != nil {
		a.thread.orphan = nil
		go a.e.finishOrphans([]Orphan{*o})
	}
}

// lockFailure is the final frame of an answer that could not take its
// thread's lock because of err.
func (a *run) lockFailure(err error) Frame {
	metrics.Messages.WithLabelValues(a.m.Platform, "error").Inc()
	note := msgMemoryDown
	switch {
	case errors.Is(err, ErrBusy):
		note = msgBusy
	case a.actx.Err() != nil:
		note = interruptNote(context.Cause(a.actx))
	default:
		metrics.RedisErrors.WithLabelValues("lock").Inc()
		a.log.Error("lock failed", "err", err)
	}
	return Frame{Final: true, Outcome: OutcomeFailed, Note: note}
}

// releaseThread stops renewing the lock and, unless the save did,
// releases it; the thread is no longer /stop's to find here.
func (a *run) releaseThread() {
	if a.thread == nil || a.stopRenew == nil {
		return // no lock taken
	}
	a.stopRenew()
	a.e.threads.CompareAndDelete(a.thread.Key, a.holder)
	if !a.saved {
		a.e.release(a.ctx, a.log, a.thread)
	}
}

// prepare picks the model and the question: the new message, or for a
// retry the latest question, dropped from the history with its answer.
// When limits, access or the retry's target forbid answering, ok is false
// and f is the final frame that says so.
func (a *run) prepare(adm Admission, retry *Command) (f Frame, ok bool) {
	e, m := a.e, &a.m
	if m.ResolveName != nil {
		m.User.Name = m.ResolveName()
	}
	a.model = e.modelFor(a.thread.Model, adm.ChannelModel)
	a.log = a.log.With("model", a.model.Name)
	refused := Frame{Model: a.model.Name, Final: true, Outcome: OutcomeFailed}
	if refused.Note = e.refuse(a.actx, *m, a.model, adm); refused.Note != "" {
		metrics.Messages.WithLabelValues(m.Platform, "limited").Inc()
		return refused, false
	}
	a.set = settingsFor(a.model, a.thread.Settings, adm.ChannelSettings)
	a.q = question{id: m.ID, asker: m.User.Name, time: m.Time}
	if retry != nil {
		q, ok := a.thread.DropLastExchange()
		if refused.Note = retryRefusal(q, ok, retry.Arg); refused.Note != "" {
			metrics.Messages.WithLabelValues(m.Platform, "refused").Inc()
			return refused, false
		}
		// The question as saved, attachments' text included; its images
		// were never saved. It keeps its ID, time and asker.
		a.q = question{id: q.ID, asker: q.User, text: q.Text, time: time.Unix(q.Time, 0),
			notices: []string{"↻ A new answer to: “" + excerpt(q.Text, 80) + "”"}}
	} else {
		a.q.text, a.q.notices = e.userText(*m, a.model)
	}
	if q := e.limits.DailySearches; a.set.search && q > 0 && !m.User.Admin && adm.SearchesToday >= q {
		a.set.search = false
		a.q.notices = append(a.q.notices, fmt.Sprintf("You've used your %d web searches for today, so I answered without searching.", q))
	}
	metrics.Messages.WithLabelValues(m.Platform, "answer").Inc()
	return Frame{}, true
}

// request builds the request to Ark from the thread's history and the
// question; when the question alone does not fit the model's context
// window, ok is false and f is the final frame that says so.
func (a *run) request() (req builtRequest, f Frame, ok bool) {
	req, promptEst, ok := a.e.buildRequest(a.m, a.model, a.thread.Turns, a.q.text)
	if !ok {
		note := fmt.Sprintf("Your message is too long for %s: about %d tokens, but only %d fit in its context window. Shorten it, or pick a model with a larger window with /model.",
			a.model.Name, promptEst, a.model.ContextWindow-a.model.MaxTokens)
		return req, Frame{Model: a.model.Name, Final: true, Outcome: OutcomeFailed, Note: note}, false
	}
	req.Thinking = a.set.think
	if a.model.responses() {
		a.e.responsesRequest(&req, a.m, a.model, a.thread, a.set.search)
	}
	return req, Frame{}, true
}

// stream streams the answer to p and counts it; started is called once
// the request is sent.
func (a *run) stream(req builtRequest, p *pacer, started func()) streamResult {
	platform := a.m.Platform
	metrics.ActiveStreams.WithLabelValues(platform).Inc()
	res := a.e.stream(arkclient.WithRequestSent(a.actx, started), a.log, a.m, p, a.model, req, a.start)
	// The thread's chain continues with this answer's response only when
	// Ark stored it whole; otherwise the next turn starts a new chain. A
	// chain lasts until its first response expires: Ark may not carry
	// what an expired link of it held.
	prev := a.thread.Chain
	a.thread.Chain = nil
	if res.responseID != "" && (res.frame.Outcome == OutcomeDone || res.frame.Outcome == OutcomeTruncated) {
		c := req.chain
		c.ID = res.responseID
		if res.usage != nil {
			c.Tokens = res.usage.TotalTokens
		}
		if res.continued {
			c.Expires = min(c.Expires, prev.Expires)
		}
		a.thread.Chain = &c
	}
	metrics.ActiveStreams.WithLabelValues(platform).Dec()
	metrics.Answers.WithLabelValues(platform, a.model.Name, string(res.frame.Outcome)).Inc()
	if res.usage != nil {
		countTokens(a.model.Name, res.usage)
		if n := res.usage.WebSearches; n > 0 {
			metrics.WebSearches.WithLabelValues(a.model.Name).Add(float64(n))
		}
	}
	return res
}

// save stores the question and what the user saw of the answer (not the
// reasoning), releasing the thread's lock; a failure before any text
// saves nothing. When saving fails, the answer's note says so.
func (a *run) save(res *streamResult) error {
	a.stopRenew()
	if res.frame.Text == "" {
		return nil
	}
	e := a.e
	now := e.now()
	userTokens, answerTokens := estimateTokens(a.q.text), estimateTokens(res.frame.Text)
	var spent, cached, searches int64
	if res.usage != nil {
		cached, searches = int64(res.usage.CachedTokens), int64(res.usage.WebSearches)
		answerTokens = res.usage.CompletionTokens - res.usage.ReasoningTokens
		if sent := res.usage.PromptTokens - res.historyTokens; sent > 0 {
			userTokens = sent
		}
		spent = int64(res.usage.TotalTokens)
	}
	turns := []Turn{
		{ID: a.q.id, Role: "user", Text: a.q.text, User: a.q.asker, Tokens: userTokens, Time: a.q.time.Unix()},
		{Role: "assistant", Text: res.frame.Text, Model: a.model.Name, Tokens: max(answerTokens, 1), Time: now.Unix()},
	}
	err := a.thread.Save(context.WithoutCancel(a.ctx), turns, Usage{User: a.m.userKey(), Model: a.model.Name, Tokens: spent, Cached: cached, Searches: searches}, now)
	if errors.Is(err, ErrUnconfirmed) {
		a.log.Warn("no replica confirmed the saved turn; a failover now could lose it", "err", err)
		err = nil
	}
	if err != nil {
		metrics.RedisErrors.WithLabelValues("save").Inc()
		a.log.Error("saving the turn failed", "err", err)
		res.frame.Note = joinNotes(res.frame.Note, "I couldn't save this exchange to memory, so I won't remember it in this conversation.")
		return err
	}
	a.saved = true
	return nil
}

// finish renders f, a final frame, outside the pacer; a panic in the
// render is returned as a *panicError.
func (a *run) finish(f Frame) error {
	err := protect(func() error { return a.e.finish(a.r, f) })
	if _, ok := errors.AsType[*panicError](err); ok {
		a.log.Error("the final render panicked", "err", err)
	}
	return err
}

package slack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/internal/ratelimit"
)

// Tidying: a final answer posted because chat.update or chat.stopStream
// had no budget free in time leaves what was shown before it behind: a
// placeholder to delete, a cursor to take off, a stream to stop. A tidy
// job does that when the method's budget allows, after every render
// (best effort, leaving the claimed calls), trying again each tidyRetry
// for at most tidyWait. With WithChores the jobs are kept in storage the
// replicas share, and any replica makes them: one that dies leaves none
// undone; else they live in this process.
const (
	tidyWait    = 10 * time.Minute
	tidyRetry   = time.Second
	tidyWorkers = 4
	tidyQueue   = 4096
	// tidyChores names the queue of stored tidy jobs; choreLease is how
	// long a replica that took one has to make or put back the call
	// before another takes it; choresAtOnce bounds a take.
	tidyChores   = "slack-tidy"
	choreLease   = 30 * time.Second
	choresAtOnce = 16
)

// Chores keeps deferred calls in storage the replicas share
// (conversation.Store implements it).
type Chores interface {
	// AddChore stores job under id, due at due.
	AddChore(ctx context.Context, queue, id string, job []byte, due time.Time) error
	// TakeChores leases up to n chores due by now for lease.
	TakeChores(ctx context.Context, queue string, now time.Time, lease time.Duration, n int) (map[string][]byte, error)
	// DoneChore forgets a chore.
	DoneChore(ctx context.Context, queue, id string) error
}

// WithChores keeps tidy jobs in c, made by whichever replica is alive.
func WithChores(c Chores) Option { return func(o *options) { o.chores = c } }

// tidyJob is one call that cleans up after an answer.
type tidyJob struct {
	Team, Channel, TS string
	Method            string       // chat.delete, chat.update or chat.stopStream
	MD                string       `json:",omitempty"` // chat.update: the message's finished content
	Blocks            slack.Blocks // chat.stopStream: what goes under the stream
	Until             time.Time    // given up after this
}

// tidyLater has j made when its budget allows: stored as a chore with
// WithChores (made here if that fails), else on this process's tidy pool.
func (a *Adapter) tidyLater(log *slog.Logger, j tidyJob) {
	j.Until = time.Now().Add(tidyWait)
	if a.chores != nil {
		err := a.storeTidy(j)
		if err == nil {
			return
		}
		log.Warn("could not store a tidy job; this replica makes it", "method", j.Method, "message_ts", j.TS, "err", err)
	}
	if err := a.tidy.Submit(j.Method, func(ctx context.Context) { a.tidyUp(ctx, log, j) }); err != nil {
		log.Warn("could not queue tidying an answer's old message", "method", j.Method, "message_ts", j.TS, "err", err)
	}
}

// storeTidy adds j to the stored chores, due now.
func (a *Adapter) storeTidy(j tidyJob) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.chores.AddChore(ctx, tidyChores, hex.EncodeToString(id), b, time.Now())
}

// tidyUp makes j's call when its budget allows, by j.Until.
func (a *Adapter) tidyUp(ctx context.Context, log *slog.Logger, j tidyJob) {
	ctx, cancel := context.WithDeadline(ctx, j.Until)
	defer cancel()
	for ctx.Err() == nil {
		if !a.tidyOnce(ctx, log, j) {
			return
		}
		if ratelimit.Sleep(ctx, tidyRetry) != nil {
			break
		}
	}
	log.Warn("no budget to tidy an answer's old message in time", "method", j.Method, "message_ts", j.TS)
}

// tidyOnce tries j's call once, reporting whether it was skipped for want
// of budget (to try again); a failure is logged.
func (a *Adapter) tidyOnce(ctx context.Context, log *slog.Logger, j tidyJob) (skipped bool) {
	err := a.call(ctx, ratelimit.BestEffort, j.Team, j.Channel, j.Method, func(ctx context.Context) error {
		return a.tidyCall(ctx, j)
	})
	if errors.Is(err, ratelimit.ErrSkipped) {
		return true
	}
	if err != nil && !messageGone(err) {
		log.Warn("tidying an answer's old message failed", "method", j.Method, "message_ts", j.TS, "err", err)
	}
	return false
}

// runChores makes the stored tidy jobs that are due, each tidyRetry,
// until ctx ends: one at a time per job across replicas (a lease), a
// skipped one put back for tidyRetry later.
func (a *Adapter) runChores(ctx context.Context) {
	t := time.NewTicker(tidyRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		jobs, err := a.chores.TakeChores(ctx, tidyChores, time.Now(), choreLease, choresAtOnce)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Debug("taking stored tidy jobs failed", "err", err)
			}
			continue
		}
		for id, raw := range jobs {
			if err := a.tidy.Submit("stored tidy job", func(ctx context.Context) { a.tidyChore(ctx, id, raw) }); err != nil {
				a.log.Debug("tidy pool full; the stored job waits for its lease", "err", err)
			}
		}
	}
}

// tidyChore tries the stored job id once, then forgets it or puts it back.
func (a *Adapter) tidyChore(ctx context.Context, id string, raw []byte) {
	var j tidyJob
	if err := json.Unmarshal(raw, &j); err != nil {
		a.log.Warn("dropping an unreadable stored tidy job", "err", err)
		a.doneChore(id)
		return
	}
	log := a.log.With("channel", j.Channel)
	if time.Now().After(j.Until) {
		log.Warn("no budget to tidy an answer's old message in time", "method", j.Method, "message_ts", j.TS)
		a.doneChore(id)
		return
	}
	if a.tidyOnce(ctx, log, j) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := a.chores.AddChore(actx, tidyChores, id, raw, time.Now().Add(tidyRetry)); err != nil {
			log.Debug("putting a tidy job back failed; it is due again when its lease ends", "err", err)
		}
		return
	}
	a.doneChore(id)
}

func (a *Adapter) doneChore(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.chores.DoneChore(ctx, tidyChores, id); err != nil {
		a.log.Debug("forgetting a stored tidy job failed; it may be made again, harmlessly", "err", err)
	}
}

func (a *Adapter) tidyCall(ctx context.Context, j tidyJob) error {
	switch j.Method {
	case "chat.delete":
		_, _, err := a.api.DeleteMessageContext(ctx, j.Channel, j.TS)
		return err
	case "chat.update":
		_, _, _, err := a.api.UpdateMessageContext(ctx, j.Channel, j.TS, contentOptions(j.MD)...)
		return err
	case "chat.stopStream":
		var opts []slack.MsgOption
		if len(j.Blocks.BlockSet) > 0 {
			opts = append(opts, slack.MsgOptionBlocks(j.Blocks.BlockSet...))
		}
		_, _, err := a.api.StopStreamContext(ctx, j.Channel, j.TS, opts...)
		return err
	}
	return errors.New("slack: unknown tidy method " + j.Method)
}

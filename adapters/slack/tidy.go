package slack

import (
	"context"
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
// (best effort, leaving the budget's reserve), trying again each
// tidyRetry for at most tidyWait.
const (
	tidyWait    = 10 * time.Minute
	tidyRetry   = time.Second
	tidyWorkers = 4
	tidyQueue   = 4096
)

// tidyJob is one call that cleans up after an answer.
type tidyJob struct {
	team, channel, ts string
	method            string        // chat.delete, chat.update or chat.stopStream
	md                string        // chat.update: the message's finished content
	blocks            []slack.Block // chat.stopStream: what goes under the stream
}

// tidyLater queues j on the tidy pool.
func (a *Adapter) tidyLater(log *slog.Logger, j tidyJob) {
	if err := a.tidy.Submit(j.method, func(ctx context.Context) { a.tidyUp(ctx, log, j) }); err != nil {
		log.Warn("could not queue tidying an answer's old message", "method", j.method, "message_ts", j.ts, "err", err)
	}
}

// tidyUp makes j's call when its budget allows, within tidyWait.
func (a *Adapter) tidyUp(ctx context.Context, log *slog.Logger, j tidyJob) {
	ctx, cancel := context.WithTimeout(ctx, tidyWait)
	defer cancel()
	for ctx.Err() == nil {
		err := a.call(ctx, ratelimit.BestEffort, j.team, j.channel, j.method, func(ctx context.Context) error {
			return a.tidyCall(ctx, j)
		})
		if errors.Is(err, ratelimit.ErrSkipped) {
			if ratelimit.Sleep(ctx, tidyRetry) != nil {
				break
			}
			continue
		}
		if err != nil && !messageGone(err) {
			log.Warn("tidying an answer's old message failed", "method", j.method, "message_ts", j.ts, "err", err)
		}
		return
	}
	log.Warn("no budget to tidy an answer's old message in time", "method", j.method, "message_ts", j.ts)
}

func (a *Adapter) tidyCall(ctx context.Context, j tidyJob) error {
	switch j.method {
	case "chat.delete":
		_, _, err := a.api.DeleteMessageContext(ctx, j.channel, j.ts)
		return err
	case "chat.update":
		_, _, _, err := a.api.UpdateMessageContext(ctx, j.channel, j.ts, contentOptions(j.md)...)
		return err
	case "chat.stopStream":
		var opts []slack.MsgOption
		if len(j.blocks) > 0 {
			opts = append(opts, slack.MsgOptionBlocks(j.blocks...))
		}
		_, _, err := a.api.StopStreamContext(ctx, j.channel, j.ts, opts...)
		return err
	}
	return errors.New("slack: unknown tidy method " + j.method)
}

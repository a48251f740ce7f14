package conversation

import (
	"context"
	"sync"
	"time"

	"github.com/arkbot/arkbot/metrics"
)

// locateAfter bounds the wait for an answer's first lock renewal, which
// records where its message is (see keepLock).
const locateAfter = time.Second

// DefaultSweepInterval is how often SweepOrphans looks for orphaned answers.
const DefaultSweepInterval = 3 * time.Second

// sweepBatch is the most orphans one sweep claims.
const sweepBatch = 256

// FinishOrphansWith makes f finish the orphaned answers of platform that
// this replica's sweeps claim, and from now on records the flights of its
// answers (every replica running platform registers the same finisher).
func (e *Engine) FinishOrphansWith(platform string, f OrphanFinisher) {
	e.finishers.m.Store(platform, f)
	e.store.track(platform)
}

// SweepOrphans claims and finishes, every interval until ctx ends, the
// answers of replicas that died (their locks expired) on the platforms
// this engine has finishers for.
func (e *Engine) SweepOrphans(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.sweep(ctx)
		}
	}
}

// sweep claims one batch of orphans and finishes them; it reports how many
// it claimed.
func (e *Engine) sweep(ctx context.Context) int {
	orphans, err := e.store.ClaimOrphans(ctx, sweepBatch, func(platform string) bool { return e.finishers.get(platform) != nil })
	if err != nil {
		if ctx.Err() == nil {
			metrics.RedisErrors.WithLabelValues("sweep").Inc()
			e.log.Warn("looking for orphaned answers failed", "err", err)
		}
		return 0
	}
	e.finishOrphans(orphans)
	return len(orphans)
}

// finishOrphans finishes claimed orphans in the chat, at once, each within
// finalRenderTimeout (until a shutdown's deadline at the latest).
func (e *Engine) finishOrphans(orphans []Orphan) {
	var wg sync.WaitGroup
	for _, o := range orphans {
		wg.Go(func() {
			log := e.log.With("platform", o.Platform, "channel", o.Channel, "thread", o.Thread, "replica", o.Replica)
			f := e.finishers.get(o.Platform)
			if f == nil {
				log.Warn("no finisher for an orphaned answer")
				return
			}
			ctx, cancel := context.WithTimeout(e.renders, finalRenderTimeout)
			defer cancel()
			err := protect(func() error { return f.FinishOrphan(ctx, o) })
			if err != nil {
				log.Warn("finishing an orphaned answer failed", "err", err)
				return
			}
			metrics.Answers.WithLabelValues(o.Platform, "", "orphaned").Inc()
			log.Info("finished an answer orphaned by a replica that died")
		})
	}
	wg.Wait()
}

package slack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"time"

	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/metrics"
)

// Presence counts the replicas serving Slack through storage they share;
// *conversation.Store is one.
type Presence interface {
	// Heartbeat records member as alive for ttl and returns how many
	// members of group are alive.
	Heartbeat(ctx context.Context, group, member string, ttl time.Duration) (int, error)
	// Leave takes member out of group at once.
	Leave(ctx context.Context, group, member string) error
	// Departures calls left each time a member leaves group, until ctx
	// ends.
	Departures(ctx context.Context, group string, left func()) error
}

// WithPresence makes the replicas serving a workspace split its rate
// budgets by their live count (slack.replicas: auto): each heartbeats
// through p every interval and spends 1/n of each budget, n being the
// replicas heard from within the last three intervals. A replica that
// starts counts itself and those before it at once; the others follow
// within an interval, and take back a stopped replica's share as soon as
// it leaves (or, if it died, within three intervals), renders already
// waiting for budget included. When p fails, the last count stands.
func WithPresence(p Presence, interval time.Duration) Option {
	return func(o *options) { o.presence, o.presenceEvery = p, interval }
}

// DefaultPresenceInterval is the heartbeat interval cmd/bot uses, and
// WithPresence's when given none.
const DefaultPresenceInterval = 10 * time.Second

// presenceGroup names Slack's replicas in the shared storage.
const presenceGroup = "slack"

// presence is this replica's membership among those sharing the budgets.
type presence struct {
	p      Presence
	every  time.Duration
	member string
	count  int  // as last counted; 0 before the first heartbeat
	failed bool // the last heartbeat failed (logged once per failing spell)
}

func newPresence(p Presence, every time.Duration) *presence {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return &presence{p: p, every: every, member: host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b)}
}

// keepCounting heartbeats every interval, and at once when another
// replica leaves, until ctx ends; the caller has made the first.
func (a *Adapter) keepCounting(ctx context.Context) {
	t := time.NewTicker(a.presence.every)
	defer t.Stop()
	left := make(chan struct{}, 1)
	go a.watchDepartures(ctx, left)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-left:
		}
		a.countReplicas(ctx)
	}
}

// watchDepartures signals left (without blocking: one pending recount
// covers any number of departures) each time a replica leaves, until ctx
// ends; a failed subscription is tried again every interval.
func (a *Adapter) watchDepartures(ctx context.Context, left chan<- struct{}) {
	for {
		err := a.presence.p.Departures(ctx, presenceGroup, func() {
			select {
			case left <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		a.log.Debug("not told when replicas leave; counting at heartbeats only", "err", err)
		if ratelimit.Sleep(ctx, a.presence.every) != nil {
			return
		}
	}
}

// countReplicas heartbeats once and sets this replica's budget share.
func (a *Adapter) countReplicas(ctx context.Context) {
	pr := a.presence
	// Short: Run waits for the first count, and Redis answers at once or not at all.
	ctx, cancel := context.WithTimeout(ctx, min(pr.every, 2*time.Second))
	defer cancel()
	n, err := pr.p.Heartbeat(ctx, presenceGroup, pr.member, 3*pr.every)
	if err != nil {
		if !pr.failed && ctx.Err() == nil {
			a.log.Warn("could not count the replicas sharing Slack's rate limits; keeping the last count", "replicas", max(pr.count, 1), "err", err)
		}
		pr.failed = true
		return
	}
	pr.failed = false
	n = max(n, 1)
	if n == pr.count {
		return
	}
	a.log.Info("replicas sharing Slack's rate limits", "replicas", n, "was", pr.count, "member", pr.member)
	pr.count = n
	a.budget.SetShare(1 / float64(n))
	metrics.Replicas.WithLabelValues("slack").Set(float64(n))
}

// leave takes this replica out of the count, once its answers are done.
func (a *Adapter) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.presence.p.Leave(ctx, presenceGroup, a.presence.member); err != nil {
		a.log.Warn("could not leave the replica count; the others notice within three heartbeats", "err", err)
	}
}

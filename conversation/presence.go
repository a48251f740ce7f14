package conversation

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeat records member as alive in group until ttl from now, forgets the
// members whose last heartbeat has run out, and returns how many are alive,
// member included: one round trip. Replicas that heartbeat every ttl/3 count
// each other; one that dies drops out within ttl. Clocks of replicas may
// differ by a fraction of ttl without harm.
func (s *Store) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) (int, error) {
	key := s.presenceKey(group)
	now := time.Now()
	var card *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: member})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		card = p.ZCard(ctx, key)
		p.PExpire(ctx, key, 2*ttl)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(card.Val()), nil
}

// Leave takes member out of group at once, as a replica shutting down does,
// and tells the others (see Departures).
func (s *Store) Leave(ctx context.Context, group, member string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.presenceKey(group), member)
		p.Publish(ctx, s.leftChannel(group), member)
		return nil
	})
	return err
}

// Departures calls left each time a member leaves group (Leave), until ctx
// ends (then it returns nil), so the others can count again at once rather
// than at their next heartbeat. Once subscribed, go-redis resubscribes by
// itself after an outage.
func (s *Store) Departures(ctx context.Context, group string, left func()) error {
	ps := s.rdb.Subscribe(ctx, s.leftChannel(group))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe to departures: %w", err)
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ch:
			if !ok {
				return nil
			}
			left()
		}
	}
}

// leftChannel is the Pub/Sub channel on which members of group say they leave.
func (s *Store) leftChannel(group string) string {
	return s.opt.Prefix + ":replicas:" + tag(group) + ":left"
}

func (s *Store) presenceKey(group string) string {
	return s.opt.Prefix + ":replicas:{" + tag(group) + "}"
}

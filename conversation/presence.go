package conversation

import (
	"context"
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

// Leave takes member out of group at once, as a replica shutting down does.
func (s *Store) Leave(ctx context.Context, group, member string) error {
	return s.rdb.ZRem(ctx, s.presenceKey(group), member).Err()
}

func (s *Store) presenceKey(group string) string {
	return s.opt.Prefix + ":replicas:{" + tag(group) + "}"
}

package conversation

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/metrics"
)

// Chores are deferred platform calls an adapter keeps in Redis rather than
// in its process (tidying after an answer, say), so that whichever replica
// is alive makes them: a replica that dies leaves none undone. A chore is
// due at a time; a replica takes due chores under a lease, and either
// finishes a chore (DoneChore) or puts it back for later (AddChore with its
// ID); a chore whose taker died is due again when its lease ends.

// AddChore stores job under id in queue, due at due (replacing a chore of
// that id).
func (s *Store) AddChore(ctx context.Context, queue, id string, job []byte, due time.Time) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.choreJobsKey(queue), id, job)
		p.ZAdd(ctx, s.choresKey(queue), redis.Z{Score: float64(due.UnixMilli()), Member: id})
		return nil
	})
	return choreErr(err)
}

// takeChoresScript leases up to ARGV[3] chores due by ARGV[1] until
// ARGV[2] and returns their IDs and jobs, in pairs; a chore whose job is
// gone is dropped.
var takeChoresScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out+1] = id
    out[#out+1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)

// TakeChores leases up to n chores of queue due by now for lease, and
// returns their jobs by ID. Another replica takes a chore again only when
// its lease has ended.
func (s *Store) TakeChores(ctx context.Context, queue string, now time.Time, lease time.Duration, n int) (map[string][]byte, error) {
	res, err := takeChoresScript.Run(ctx, s.rdb, []string{s.choresKey(queue), s.choreJobsKey(queue)},
		now.UnixMilli(), now.Add(lease).UnixMilli(), strconv.Itoa(n)).StringSlice()
	if err != nil {
		return nil, choreErr(err)
	}
	out := make(map[string][]byte, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		out[res[i]] = []byte(res[i+1])
	}
	return out, nil
}

// DoneChore forgets the chore id of queue.
func (s *Store) DoneChore(ctx context.Context, queue, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.choresKey(queue), id)
		p.HDel(ctx, s.choreJobsKey(queue), id)
		return nil
	})
	return choreErr(err)
}

// choreErr counts a failed chore operation (metrics.RedisErrors).
func choreErr(err error) error {
	if err != nil {
		metrics.RedisErrors.WithLabelValues("chores").Inc()
	}
	return err
}

func (s *Store) choresKey(queue string) string    { return s.key("chores", queue, "") }
func (s *Store) choreJobsKey(queue string) string { return s.key("chores", queue, "jobs") }

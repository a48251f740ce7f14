package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/embedredis"
)

// openRedis connects to the configured Redis: a single node (redis://,
// rediss://), Sentinel (redis-sentinel://host1:26379,host2:26379/0 with
// master_name) or Cluster (redis-cluster://host1:6379,host2:6379). With no
// URL it starts an embedded in-memory Redis. The returned func closes it all.
func openRedis(cfg config.Redis, log *slog.Logger) (redis.UniversalClient, func(), error) {
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	if cfg.URL == "" {
		mr, err := embedredis.Start()
		if err != nil {
			return nil, nil, fmt.Errorf("embedded redis: %w", err)
		}
		log.Warn("redis.url is empty: using an embedded in-memory Redis; conversations are NOT persisted and are lost when the bot stops. Set REDIS_URL for real use.")
		c := mr.Client()
		return c, func() { c.Close(); mr.Close() }, nil
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("redis.url: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis.url: %w", err)
		}
		c := redis.NewClient(opt)
		return c, func() { c.Close() }, nil
	case "redis-sentinel", "redis-cluster":
		pass, _ := u.User.Password()
		opt := &redis.UniversalOptions{
			Addrs:      strings.Split(u.Host, ","),
			Username:   u.User.Username(),
			Password:   pass,
			MasterName: cfg.MasterName,
		}
		if u.Scheme == "redis-sentinel" {
			if opt.MasterName == "" {
				opt.MasterName = u.Query().Get("master")
			}
			if opt.MasterName == "" {
				return nil, nil, fmt.Errorf("redis.url: a redis-sentinel:// URL needs redis.master_name (or ?master=name)")
			}
			c := redis.NewFailoverClient(opt.Failover())
			return c, func() { c.Close() }, nil
		}
		c := redis.NewClusterClient(opt.Cluster())
		return c, func() { c.Close() }, nil
	}
	return nil, nil, fmt.Errorf("redis.url: unknown scheme %q (use redis://, rediss://, redis-sentinel:// or redis-cluster://)", u.Scheme)
}

// settleMinReplicas sets cfg.MinReplicas, when not configured, to 1 if
// every master rdb reaches has a replica connected (INFO replication), else
// to 0: an embedded or lone Redis has nothing to confirm saves, and waiting
// for a replica it lacks would slow every save. It is settled once, at
// start-up: replicas added later are used once configured or on restart.
func settleMinReplicas(ctx context.Context, cfg *config.Redis, rdb redis.UniversalClient, log *slog.Logger) {
	if cfg.MinReplicas != nil {
		return
	}
	n := 0
	if cfg.URL != "" {
		n = 1
		count := func(ctx context.Context, c *redis.Client) error {
			info, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if replicasIn(info) == 0 {
				n = 0
			}
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		switch c := rdb.(type) {
		case *redis.ClusterClient:
			var mu sync.Mutex
			err = c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
				mu.Lock()
				defer mu.Unlock()
				return count(ctx, c)
			})
		case *redis.Client:
			err = count(ctx, c)
		}
		if err != nil {
			log.Warn("could not count Redis replicas; saves are not confirmed by any (set redis.min_replicas)", "err", err)
			n = 0
		}
	}
	cfg.MinReplicas = &n
	log.Info("redis", "min_replicas", n, "replica_wait", cfg.ReplicaWait.D())
}

// replicasIn reads connected_slaves from INFO replication's reply.
func replicasIn(info string) int {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// redisLogger sends go-redis's own messages (dial failures, pool trouble)
// through the bot's logger, so they are structured and redacted like the rest.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

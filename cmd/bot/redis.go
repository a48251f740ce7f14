package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

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

// redisLogger sends go-redis's own messages (dial failures, pool trouble)
// through the bot's logger, so they are structured and redacted like the rest.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

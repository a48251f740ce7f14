package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

func TestOpenRedisModes(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		url, master string
		want        string // client type, or an error substring
	}{
		{"", "", "*redis.Client"},
		{"redis://127.0.0.1:6379/2", "", "*redis.Client"},
		{"rediss://u:p@example.com:6380/0", "", "*redis.Client"},
		{"redis-sentinel://s1:26379,s2:26379", "mymaster", "*redis.Client"},
		{"redis-sentinel://s1:26379?master=mymaster", "", "*redis.Client"},
		{"redis-sentinel://s1:26379", "", "needs redis.master_name"},
		{"redis-cluster://n1:6379,n2:6379,n3:6379", "", "*redis.ClusterClient"},
		{"memcached://x", "", "unknown scheme"},
	} {
		c, closeFn, err := openRedis(config.Redis{URL: tc.url, MasterName: tc.master}, log)
		if err != nil {
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: error %v, want %q", tc.url, err, tc.want)
			}
			continue
		}
		got := ""
		switch c.(type) {
		case *redis.Client:
			got = "*redis.Client"
		case *redis.ClusterClient:
			got = "*redis.ClusterClient"
		}
		if got != tc.want {
			t.Errorf("%q: %s, want %s", tc.url, got, tc.want)
		}
		if tc.url == "" {
			if err := c.Ping(context.Background()).Err(); err != nil {
				t.Errorf("embedded Redis does not answer: %v", err)
			}
		}
		closeFn()
	}
}

func TestSettleMinReplicas(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	lone := redistest.New(t)
	one := 1
	for _, tc := range []struct {
		name string
		cfg  config.Redis
		want int
	}{
		{"embedded", config.Redis{}, 0},
		{"a lone node", config.Redis{URL: lone.URL}, 0},
		{"configured", config.Redis{URL: lone.URL, MinReplicas: &one}, 1},
	} {
		rdb, closeFn, err := openRedis(tc.cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		settleMinReplicas(ctx, &tc.cfg, rdb, log)
		closeFn()
		if tc.cfg.MinReplicas == nil || *tc.cfg.MinReplicas != tc.want {
			t.Errorf("%s: min_replicas %v, want %d", tc.name, tc.cfg.MinReplicas, tc.want)
		}
	}
	// With a replica: the Sentinel set-up of TestSentinelFailoverKeepsEveryTurn.
	if n := replicasIn("# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=…\r\n"); n != 2 {
		t.Errorf("replicasIn: %d, want 2", n)
	}
}

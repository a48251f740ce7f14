package conversation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/metrics"
)

// startCluster starts a Redis Cluster of real redis-server processes: two
// masters, the first (slots 0-8191) with a replica, the second (8192-16383)
// without. It returns a client of the cluster and of the first master.
func startCluster(t *testing.T) (*redis.ClusterClient, *redis.Client) {
	t.Helper()
	var nodes []*redis.Client
	var addrs []string
	for range 3 {
		rs := redistest.New(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
		if !rs.Owned() {
			t.Skip("!!! SKIPPED: a Redis Cluster needs redis-server installed (CI has it). !!!")
		}
		c := rs.Client().(*redis.Client)
		nodes = append(nodes, c)
		addrs = append(addrs, c.Options().Addr)
	}
	ctx := context.Background()
	a, b, r := nodes[0], nodes[1], nodes[2]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.ClusterAddSlotsRange(ctx, 0, 8191).Err())
	must(b.ClusterAddSlotsRange(ctx, 8192, 16383).Err())
	for _, addr := range addrs[1:] {
		host, port, _ := strings.Cut(addr, ":")
		must(a.ClusterMeet(ctx, host, port).Err())
	}
	aID, err := a.ClusterMyID(ctx).Result()
	must(err)
	ok := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not come up: %s", what)
			}
		}
	}
	ok("the replica meets the first master", func() bool {
		nodes, _ := r.ClusterNodes(ctx).Result()
		return strings.Contains(nodes, aID)
	})
	must(r.ClusterReplicate(ctx, aID).Err())
	ok("cluster_state:ok everywhere and the replica in sync", func() bool {
		for _, n := range nodes {
			if info, _ := n.ClusterInfo(ctx).Result(); !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		info, _ := a.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:2]})
	t.Cleanup(func() { c.Close() })
	return c, a
}

// TestClusterSaveWaitsOnTheThreadsMaster: in a Cluster, a save's WAIT goes
// to the master holding the thread (a keyless WAIT sent through the
// cluster client would reach either master), so threads on the master
// with a replica are confirmed at once; the tokens, on the user's slot,
// are counted once.
func TestClusterSaveWaitsOnTheThreadsMaster(t *testing.T) {
	rdb, withReplica := startCluster(t)
	ctx := context.Background()
	opt := storeOptions("cl")
	opt.MinReplicas, opt.ReplicaWait = 1, 100*time.Millisecond
	s := NewStore(rdb, opt)
	var threads []string
	for i := 0; len(threads) < 8; i++ {
		thread := fmt.Sprintf("slack:T1:C1:t%d", i)
		if slot, _ := withReplica.ClusterKeySlot(ctx, s.turnsKey(thread)).Result(); slot < 8192 {
			threads = append(threads, thread)
		}
	}
	unconfirmed := counterValue(metrics.SavesUnconfirmed)
	for _, thread := range threads {
		th, err := s.Lock(ctx, thread, "slack:U1")
		if err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, []Turn{{Role: "user", Text: "q"}, {Role: "assistant", Text: "a"}}, Usage{User: "slack:U1", Model: "doubao", Tokens: 3}, time.Now()); err != nil {
			t.Fatalf("%s: %v", thread, err)
		}
	}
	if d := counterValue(metrics.SavesUnconfirmed) - unconfirmed; d != 0 {
		t.Errorf("%v of %d saves on the master with a replica went unconfirmed: the WAIT went elsewhere", d, len(threads))
	}
	for _, thread := range threads {
		if n, err := rdb.LLen(ctx, s.turnsKey(thread)).Result(); err != nil || n != 2 {
			t.Errorf("%s: %d turns (%v), want 2", thread, n, err)
		}
	}
	used, err := rdb.Get(ctx, s.usageKey("slack:U1", Day(time.Now()), "doubao")).Int()
	if err != nil || used != 3*len(threads) {
		t.Errorf("tokens counted %d (%v), want %d", used, err, 3*len(threads))
	}
}

package conversation

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestHeartbeatCountsLiveMembers(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		testHeartbeat(t, NewStore(rdb, storeOptions(prefix)))
	})
}

func testHeartbeat(t *testing.T, s *Store) {
	ctx := context.Background()
	beat := func(group, member string, ttl time.Duration) int {
		t.Helper()
		n, err := s.Heartbeat(ctx, group, member, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := beat("slack", "a", time.Minute); n != 1 {
		t.Fatalf("alone: %d alive", n)
	}
	if n := beat("slack", "b", 300*time.Millisecond); n != 2 {
		t.Fatalf("a and b: %d alive", n)
	}
	if n := beat("slack", "a", time.Minute); n != 2 {
		t.Fatalf("a again: %d alive, want 2 (a heartbeat does not add a member twice)", n)
	}
	if n := beat("discord", "a", time.Minute); n != 1 {
		t.Fatalf("another group: %d alive", n)
	}
	time.Sleep(400 * time.Millisecond) // b stops beating and runs out
	if n := beat("slack", "a", time.Minute); n != 1 {
		t.Fatalf("after b's ttl: %d alive", n)
	}
	beat("slack", "c", time.Minute)
	if err := s.Leave(ctx, "slack", "c"); err != nil {
		t.Fatal(err)
	}
	if n := beat("slack", "a", time.Minute); n != 1 {
		t.Fatalf("after c left: %d alive", n)
	}
}

func TestDeparturesTellTheOthers(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		s := NewStore(rdb, storeOptions(prefix))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		left := make(chan struct{}, 16)
		done := make(chan error, 1)
		go func() { done <- s.Departures(ctx, "slack", func() { left <- struct{}{} }) }()
		// Leave until the subscription hears one (it may not be up yet).
		for heard := false; !heard; {
			if err := s.Leave(ctx, "slack", "b"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-left:
				heard = true
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal("no departure heard")
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Departures after its context ended: %v", err)
		}
	})
}

package conversation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStoreLockIsExclusiveAndExpiresWhenTheHolderDies(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		opt := storeOptions(prefix)
		opt.LockTTL, opt.LockWait = 300*time.Millisecond, 100*time.Millisecond
		a, b := NewStore(rdb, opt), NewStore(rdb, opt)

		held, err := a.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Lock(ctx, "k"); !errors.Is(err, ErrBusy) {
			t.Fatalf("second lock: %v, want ErrBusy", err)
		}
		// The holder "dies": never renews. Its lock expires and b takes over.
		time.Sleep(350 * time.Millisecond)
		taken, err := b.Lock(ctx, "k")
		if err != nil {
			t.Fatalf("the dead holder's lock did not expire: %v", err)
		}
		// The dead holder's late save must not land in the thread.
		if err := held.Save(ctx, []Turn{{Role: "user", Text: "late"}}, Usage{}, time.Now()); !errors.Is(err, ErrLockLost) {
			t.Fatalf("save with a lost lock: %v, want ErrLockLost", err)
		}
		if err := taken.Save(ctx, []Turn{{Role: "user", Text: "q"}, {Role: "assistant", Text: "a"}}, Usage{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		th, err := a.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer th.Release(ctx)
		if len(th.Turns) != 2 || th.Turns[0].Text != "q" {
			t.Fatalf("turns %+v", th.Turns)
		}
	})
}

func TestStoreRenewKeepsTheLock(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		opt := storeOptions(prefix)
		opt.LockTTL, opt.LockWait = 200*time.Millisecond, 50*time.Millisecond
		s := NewStore(rdb, opt)
		th, err := s.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			time.Sleep(100 * time.Millisecond)
			if ok, err := th.Renew(ctx); !ok || err != nil {
				t.Fatalf("renew %d: %v %v", i, ok, err)
			}
		}
		if _, err := s.Lock(ctx, "k"); !errors.Is(err, ErrBusy) {
			t.Fatalf("renewed lock was taken: %v", err)
		}
		th.Release(ctx)
		if _, err := s.Lock(ctx, "k"); err != nil {
			t.Fatalf("released lock not free: %v", err)
		}
	})
}

func TestStoreTrimsAndExpires(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		opt := storeOptions(prefix)
		opt.MaxTurns = 4
		s := NewStore(rdb, opt)
		for i := 0; i < 5; i++ {
			th, err := s.Lock(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			turns := []Turn{{Role: "user", Text: string(rune('a' + i))}, {Role: "assistant", Text: "ok"}}
			if err := th.Save(ctx, turns, Usage{User: "slack:U1", Model: "doubao", Tokens: 10}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		th, _ := s.Lock(ctx, "k")
		defer th.Release(ctx)
		if len(th.Turns) != 4 || th.Turns[0].Text != "d" {
			t.Fatalf("want the newest 4 turns from d, got %+v", th.Turns)
		}
		ttl := rdb.PTTL(ctx, s.turnsKey("k")).Val()
		if ttl <= 0 || ttl > opt.TTL {
			t.Errorf("turns TTL %v", ttl)
		}
		adm, err := s.Admit(ctx, Message{Platform: "slack", User: User{ID: "U1"}, ID: "x"}, []string{"doubao", "other"}, time.Now())
		if err != nil || adm.UsedToday != 50 || adm.UsedByModel["doubao"] != 50 || adm.UsedByModel["other"] != 0 {
			t.Fatalf("usage %+v %v", adm, err)
		}
	})
}

// A follow-up is admitted only in a thread the bot talks in, and one that
// isn't leaves nothing behind in Redis.
func TestAdmitFollowUp(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		s := NewStore(rdb, storeOptions(prefix))
		ctx := context.Background()
		m := Message{Platform: "slack", Workspace: "T1", Channel: "C1", Thread: "100.1", ID: "C1:100.2", User: User{ID: "U1"}}
		if _, talking, err := s.AdmitFollowUp(ctx, m, []string{"doubao"}, time.Now()); err != nil || talking {
			t.Fatalf("follow-up in a thread without conversation: talking %v, %v", talking, err)
		}
		if keys := rdb.Keys(ctx, prefix+":*").Val(); len(keys) != 0 {
			t.Fatalf("an ignored follow-up wrote %v", keys)
		}
		th, err := s.Lock(ctx, m.ThreadKey())
		if err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, []Turn{{Role: "user", Text: "hi"}, {Role: "assistant", Text: "hello"}}, Usage{User: "slack:U1", Model: "doubao", Tokens: 7}, time.Now()); err != nil {
			t.Fatal(err)
		}
		adm, talking, err := s.AdmitFollowUp(ctx, m, []string{"doubao"}, time.Now())
		if err != nil || !talking || !adm.First || adm.UsedToday != 7 || adm.UsedByModel["doubao"] != 7 {
			t.Fatalf("follow-up in the bot's thread: %+v talking %v, %v", adm, talking, err)
		}
		if adm, talking, err := s.AdmitFollowUp(ctx, m, nil, time.Now()); err != nil || !talking || adm.First {
			t.Fatalf("redelivered follow-up: %+v talking %v, %v", adm, talking, err)
		}
	})
}

func TestStoreKeysShareTheThreadsHashTag(t *testing.T) {
	s := NewStore(nil, storeOptions("p"))
	k := "slack:T1:C1:1712345.0001"
	followUp := Message{Platform: "slack", Workspace: "T1", Channel: "C1", Thread: "1712345.0001", ID: "C1:1712345.0002"}
	for _, key := range []string{s.turnsKey(k), s.metaKey(k), s.lockKey(k), s.markerKey(followUp)} {
		if !strings.Contains(key, "{"+k+"}") {
			t.Errorf("%s lacks the hash tag", key)
		}
	}
	if got := s.turnsKey("a{b}c"); strings.Count(got, "{") != 1 {
		t.Errorf("braces in an ID break the hash tag: %s", got)
	}
}

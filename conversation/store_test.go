package conversation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/metrics"
)

func TestStoreLockIsExclusiveAndExpiresWhenTheHolderDies(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		opt := storeOptions(prefix)
		opt.LockTTL, opt.LockWait = 300*time.Millisecond, 100*time.Millisecond
		a, b := NewStore(rdb, opt), NewStore(rdb, opt)

		held, err := a.Lock(ctx, "k", "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Lock(ctx, "k", "test:u1"); !errors.Is(err, ErrBusy) {
			t.Fatalf("second lock: %v, want ErrBusy", err)
		}
		// The holder "dies": never renews. Its lock expires and b takes over.
		time.Sleep(350 * time.Millisecond)
		taken, err := b.Lock(ctx, "k", "test:u1")
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
		th, err := a.Lock(ctx, "k", "test:u1")
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
		opt.LockTTL, opt.LockWait = time.Second, 50*time.Millisecond
		s := NewStore(rdb, opt)
		th, err := s.Lock(ctx, "k", "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ { // renewed every 0.4 of the TTL, it outlives the TTL
			time.Sleep(400 * time.Millisecond)
			if ok, err := th.Renew(ctx, Progress{}); !ok || err != nil {
				t.Fatalf("renew %d: %v %v", i, ok, err)
			}
		}
		if _, err := s.Lock(ctx, "k", "test:u1"); !errors.Is(err, ErrBusy) {
			t.Fatalf("renewed lock was taken: %v", err)
		}
		th.Release(ctx)
		if _, err := s.Lock(ctx, "k", "test:u1"); err != nil {
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
			th, err := s.Lock(ctx, "k", "test:u1")
			if err != nil {
				t.Fatal(err)
			}
			turns := []Turn{{Role: "user", Text: string(rune('a' + i))}, {Role: "assistant", Text: "ok"}}
			if err := th.Save(ctx, turns, Usage{User: "slack:U1", Model: "doubao", Tokens: 10}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		th, _ := s.Lock(ctx, "k", "test:u1")
		defer th.Release(ctx)
		if len(th.Turns) != 4 || th.Turns[0].Text != "d" {
			t.Fatalf("want the newest 4 turns from d, got %+v", th.Turns)
		}
		ttl := rdb.PTTL(ctx, s.turnsKey("k")).Val()
		if ttl <= 0 || ttl > opt.TTL {
			t.Errorf("turns TTL %v", ttl)
		}
		adm, err := s.Admit(ctx, Message{Platform: "slack", User: User{ID: "U1"}, ID: "x", Mentioned: true}, []string{"doubao", "other"}, time.Now(), false)
		if err != nil || adm.UsedToday != 50 || adm.UsedByModel["doubao"] != 50 || adm.UsedByModel["other"] != 0 {
			t.Fatalf("usage %+v %v", adm, err)
		}
	})
}

// A follow-up is admitted only in a thread the bot talks in, and one that
// isn't leaves nothing behind in Redis, lock asked for or not.
func TestAdmitFollowUp(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		s := NewStore(rdb, storeOptions(prefix))
		ctx := context.Background()
		m := Message{Platform: "slack", Workspace: "T1", Channel: "C1", Thread: "100.1", ID: "C1:100.2", User: User{ID: "U1"}}
		for _, lock := range []bool{false, true} {
			if adm, err := s.Admit(ctx, m, []string{"doubao"}, time.Now(), lock); err != nil || adm.Talking || adm.First || adm.Thread != nil {
				t.Fatalf("follow-up in a thread without conversation (lock %v): %+v, %v", lock, adm, err)
			}
		}
		if keys := rdb.Keys(ctx, prefix+":*").Val(); len(keys) != 0 {
			t.Fatalf("an ignored follow-up wrote %v", keys)
		}
		th, err := s.Lock(ctx, m.ThreadKey(), "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, []Turn{{Role: "user", Text: "hi"}, {Role: "assistant", Text: "hello"}}, Usage{User: "slack:U1", Model: "doubao", Tokens: 7}, time.Now()); err != nil {
			t.Fatal(err)
		}
		adm, err := s.Admit(ctx, m, []string{"doubao"}, time.Now(), false)
		if err != nil || !adm.Talking || !adm.First || adm.Thread != nil || adm.UsedToday != 7 || adm.UsedByModel["doubao"] != 7 {
			t.Fatalf("follow-up in the bot's thread: %+v, %v", adm, err)
		}
		if adm, err := s.Admit(ctx, m, nil, time.Now(), true); err != nil || !adm.Talking || adm.First || adm.Thread != nil {
			t.Fatalf("redelivered follow-up: %+v, %v", adm, err)
		}
		if n := rdb.Exists(ctx, s.lockKey(m.ThreadKey())).Val(); n != 0 {
			t.Fatal("a redelivered message took the thread's lock")
		}
	})
}

// Asked to, Admit locks and loads a new message's thread in its round trip;
// a busy thread is left to Lock, which waits for it.
func TestAdmitLocks(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		s := NewStore(rdb, storeOptions(prefix))
		ctx := context.Background()
		m := Message{Platform: "discord", Workspace: "G1", Channel: "C1", Thread: "T1", ID: "m1", User: User{ID: "U1"}, Mentioned: true}
		th, err := s.Lock(ctx, m.ThreadKey(), "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, []Turn{{Role: "user", Text: "hi"}, {Role: "assistant", Text: "hello", Model: "doubao"}}, Usage{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.SetThreadModel(ctx, m.ThreadKey(), "other"); err != nil {
			t.Fatal(err)
		}
		adm, err := s.Admit(ctx, m, []string{"doubao"}, time.Now(), true)
		if err != nil || !adm.First || !adm.Talking || adm.Thread == nil {
			t.Fatalf("admission of a new mention with lock: %+v, %v", adm, err)
		}
		if got := adm.Thread; got.Key != m.ThreadKey() || got.Model != "other" || len(got.Turns) != 2 || got.Turns[1].Text != "hello" {
			t.Fatalf("thread loaded %+v", got)
		}
		if ttl := rdb.PTTL(ctx, s.lockKey(m.ThreadKey())).Val(); ttl <= 0 || ttl > storeOptions("").LockTTL {
			t.Fatalf("lock TTL %v", ttl)
		}
		// Held: a second message is admitted without the lock.
		m2 := m
		m2.ID = "m2"
		adm2, err := s.Admit(ctx, m2, nil, time.Now(), true)
		if err != nil || !adm2.First || adm2.Thread != nil {
			t.Fatalf("admission while the thread is locked: %+v, %v", adm2, err)
		}
		if err := adm.Thread.Save(ctx, []Turn{{Role: "user", Text: "q"}, {Role: "assistant", Text: "a"}}, Usage{}, time.Now()); err != nil {
			t.Fatalf("saving with the admission's lock: %v", err)
		}
		th, err = s.Lock(ctx, m.ThreadKey(), "test:u1")
		if err != nil || len(th.Turns) != 4 {
			t.Fatalf("after the save: %+v, %v", th, err)
		}
		if err := th.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreKeysShareTheThreadsHashTag(t *testing.T) {
	s := NewStore(nil, storeOptions("p"))
	k := "slack:T1:C1:1712345.0001"
	followUp := Message{Platform: "slack", Workspace: "T1", Channel: "C1", Thread: "1712345.0001", ID: "C1:1712345.0002"}
	mention := followUp
	mention.Mentioned = true
	for _, key := range []string{s.turnsKey(k), s.metaKey(k), s.lockKey(k), s.markerKey(followUp), s.markerKey(mention)} {
		if !strings.Contains(key, "{"+k+"}") {
			t.Errorf("%s lacks the hash tag", key)
		}
	}
	if got := s.turnsKey("a{b}c"); strings.Count(got, "{") != 1 {
		t.Errorf("braces in an ID break the hash tag: %s", got)
	}
}

// resave re-runs saveScript as Save's re-save does, for turns of th.
func resave(t *testing.T, th *Thread, turns []Turn, now time.Time) int64 {
	t.Helper()
	s := th.store
	args, err := th.saveArgs(turns, now)
	if err != nil {
		t.Fatal(err)
	}
	args[5] = "1"
	res, _, err := s.saveTurns(context.Background(), th.Key, args, Usage{}, now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func threadTexts(t *testing.T, s *Store, thread string) string {
	t.Helper()
	th, err := s.Lock(context.Background(), thread, "test:u9")
	if err != nil {
		t.Fatal(err)
	}
	defer th.Release(context.Background())
	var texts []string
	for _, turn := range th.Turns {
		texts = append(texts, turn.Text)
	}
	return strings.Join(texts, ",")
}

func TestStoreResaveAppendsOnce(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := NewStore(rdb, storeOptions(prefix))
		now := time.Now()
		first := []Turn{{ID: "m1", Role: "user", Text: "q1", Time: now.Unix()}, {Role: "assistant", Text: "a1", Time: now.Unix()}}
		th, err := s.Lock(ctx, "k", "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, first, Usage{}, now); err != nil {
			t.Fatal(err)
		}
		// The save landed but its confirmation did not: the re-save finds it.
		if res := resave(t, th, first, now); res != 2 {
			t.Fatalf("re-save of a kept save: %d, want 2 (found)", res)
		}
		// Another answer saves after it; the re-save still finds the first.
		next, err := s.Lock(ctx, "k", "test:u2")
		if err != nil {
			t.Fatal(err)
		}
		if err := next.Save(ctx, []Turn{{ID: "m2", Role: "user", Text: "q2"}, {Role: "assistant", Text: "a2"}}, Usage{}, now); err != nil {
			t.Fatal(err)
		}
		if res := resave(t, th, first, now); res != 2 {
			t.Fatalf("re-save behind a later exchange: %d, want 2 (found)", res)
		}
		if got := threadTexts(t, s, "k"); got != "q1,a1,q2,a2" {
			t.Fatalf("turns %s, want q1,a1,q2,a2", got)
		}

		// A failover lost the save and the lock with it: the re-save appends.
		lost, err := s.Lock(ctx, "lost", "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.Del(ctx, s.lockKey("lost")).Err(); err != nil {
			t.Fatal(err)
		}
		if res := resave(t, lost, first, now); res != 1 {
			t.Fatalf("re-save of a lost save: %d, want 1 (appended)", res)
		}
		if res := resave(t, lost, first, now); res != 2 {
			t.Fatalf("second re-save: %d, want 2 (found)", res)
		}
		if got := threadTexts(t, s, "lost"); got != "q1,a1" {
			t.Fatalf("turns %s, want q1,a1 once", got)
		}
	})
}

func TestStoreLockLostInAFailover(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		s := NewStore(rdb, storeOptions(prefix))
		th, err := s.Lock(ctx, "k", "test:u1")
		if err != nil {
			t.Fatal(err)
		}
		// The new master never saw the lock: renewing takes it again…
		if err := rdb.Del(ctx, s.lockKey("k")).Err(); err != nil {
			t.Fatal(err)
		}
		if ok, err := th.Renew(ctx, Progress{}); !ok || err != nil {
			t.Fatalf("renew of a vanished lock: %v %v, want it taken again", ok, err)
		}
		quick := storeOptions(prefix)
		quick.LockWait = 50 * time.Millisecond
		if _, err := NewStore(rdb, quick).Lock(ctx, "k", "test:u2"); !errors.Is(err, ErrBusy) {
			t.Fatalf("lock taken again by renewal was free: %v", err)
		}
		// …and a save without it appends rather than losing the turns.
		if err := rdb.Del(ctx, s.lockKey("k")).Err(); err != nil {
			t.Fatal(err)
		}
		if err := th.Save(ctx, []Turn{{Role: "user", Text: "q"}, {Role: "assistant", Text: "a"}}, Usage{}, time.Now()); err != nil {
			t.Fatalf("save without a lock: %v", err)
		}
		if got := threadTexts(t, s, "k"); got != "q,a" {
			t.Fatalf("turns %s, want q,a", got)
		}
	})
}

func TestStoreSaveUnconfirmedByMissingReplica(t *testing.T) {
	rs := redistest.New(t)
	ctx := context.Background()
	opt := storeOptions(rs.Prefix)
	opt.MinReplicas, opt.ReplicaWait = 1, 10*time.Millisecond
	s := NewStore(rs.Client(), opt)
	th, err := s.Lock(ctx, "k", "test:u1")
	if err != nil {
		t.Fatal(err)
	}
	unconfirmed, resaves := counterValue(metrics.SavesUnconfirmed), counterValue(metrics.Resaves)
	err = th.Save(ctx, []Turn{{Role: "user", Text: "q"}, {Role: "assistant", Text: "a"}}, Usage{User: "slack:U1", Model: "doubao", Tokens: 5}, time.Now())
	if !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("save with no replica to confirm it: %v, want ErrUnconfirmed", err)
	}
	if d := counterValue(metrics.SavesUnconfirmed) - unconfirmed; d != 1 {
		t.Errorf("unconfirmed saves counted %v, want 1", d)
	}
	if d := counterValue(metrics.Resaves) - resaves; d != resaveAttempts {
		t.Errorf("re-saves counted %v, want %d", d, resaveAttempts)
	}
	if got := threadTexts(t, s, "k"); got != "q,a" {
		t.Fatalf("turns %s, want q,a once", got)
	}
	used, err := rs.Client().Get(ctx, s.usageKey("slack:U1", Day(time.Now()), "")).Int()
	if err != nil || used != 5 {
		t.Fatalf("tokens counted %d (%v), want 5 once", used, err)
	}
	// Still no replica: the next save is not re-saved.
	th, err = s.Lock(ctx, "k", "test:u1")
	if err != nil {
		t.Fatal(err)
	}
	resaves = counterValue(metrics.Resaves)
	if err := th.Save(ctx, []Turn{{Role: "user", Text: "q2"}, {Role: "assistant", Text: "a2"}}, Usage{}, time.Now()); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("save while Redis has no replica: %v, want ErrUnconfirmed", err)
	}
	if d := counterValue(metrics.Resaves) - resaves; d != 0 {
		t.Errorf("%v re-saves while Redis has had no replica for a while, want none", d)
	}
	if got := threadTexts(t, s, "k"); got != "q,a,q2,a2" {
		t.Fatalf("turns %s, want q,a,q2,a2", got)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

package conversation

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// finished records the orphans a replica finished.
type finished struct {
	mu  sync.Mutex
	got []Orphan
}

func (f *finished) FinishOrphan(_ context.Context, o Orphan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, o)
	return nil
}

func (f *finished) list() []Orphan {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Orphan(nil), f.got...)
}

// located is a recorder whose answer's message is at loc.
type located struct {
	*recorder
	loc string
}

func (l *located) Location() (string, bool) { return l.loc, true }

// replica is one bot process: an engine on its own Redis client, finishing
// the orphans of platform "test" it claims.
type replica struct {
	rdb    *redis.Client
	store  *Store
	engine *Engine
	ark    *arktest.Server
	done   finished
}

// orphanLockTTL is the short lock TTL of these tests.
const orphanLockTTL = time.Second

func newReplica(t *testing.T, rdb redis.UniversalClient, prefix string, ark *arktest.Server) *replica {
	t.Helper()
	c := redis.NewClient(rdb.(*redis.Client).Options())
	t.Cleanup(func() { c.Close() })
	if ark == nil {
		ark = arktest.New()
		t.Cleanup(ark.Close)
	}
	client, err := arkclient.New(ark.URL, "k", arkclient.WithRetries(0, time.Millisecond, time.Millisecond),
		arkclient.WithIdleTimeout(time.Minute), arkclient.WithFirstTokenTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	opt := storeOptions(prefix)
	opt.LockTTL = orphanLockTTL
	store := NewStore(c, opt)
	rp := &replica{rdb: c, store: store, ark: ark}
	rp.engine = NewEngine(testModels(), store, client, append(testOptions(), WithRenderInterval("test", 0))...)
	rp.engine.FinishOrphansWith("test", &rp.done)
	return rp
}

// sweepEvery runs the replica's sweep until the test ends.
func (rp *replica) sweepEvery(t *testing.T, d time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rp.engine.SweepOrphans(ctx, d); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// dyingReplica starts n answers in threads "o0"… on a replica whose Ark
// streams three words and then hangs, waits until every answer's flight
// records where its message is and what it showed, and kills the replica:
// its Redis connection closes, so it renews, saves and releases nothing.
// It returns the questions asked and a func that ends the dead replica's
// goroutines.
func dyingReplica(t *testing.T, rdb redis.UniversalClient, prefix string, n int) ([]Message, func()) {
	t.Helper()
	ark := arktest.New()
	ark.SetHandler(func(arktest.Request) arktest.Response {
		return arktest.Response{Content: []string{"Partial ", "answer ", "here"}, Hang: true}
	})
	dead := newReplica(t, rdb, prefix, ark)
	var wg sync.WaitGroup
	var asked []Message
	for i := range n {
		m := msg("a slow question")
		m.Thread = fmt.Sprintf("o%d", i)
		asked = append(asked, m)
		r := &located{recorder: &recorder{t: t}, loc: "loc-" + m.ID}
		wg.Go(func() { _ = dead.engine.Handle(context.Background(), m, r) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range asked {
		for {
			shown, _ := rdb.HGet(context.Background(), dead.store.flightKey(m.ThreadKey()), "shown").Result()
			if shown == "Partial answer here" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the flight of %s never recorded what it showed (%q)", m.ThreadKey(), shown)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	dead.rdb.Close() // SIGKILL: nothing more reaches Redis from this replica
	return asked, func() { ark.Close(); wg.Wait() }
}

// Two surviving replicas sweeping at once finish every answer of a replica
// that died exactly once, within lock_ttl + 10 s, with where its message
// is, what it showed and its question (for Retry); then a follow-up that
// doesn't mention the bot in such a thread is answered.
func TestOrphansAreFinishedOnceBySurvivors(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		a, b := newReplica(t, rdb, prefix, nil), newReplica(t, rdb, prefix, nil)
		a.sweepEvery(t, 50*time.Millisecond)
		b.sweepEvery(t, 50*time.Millisecond)
		asked, endDead := dyingReplica(t, rdb, prefix, 8)
		defer endDead()
		killed := time.Now()
		for len(a.done.list())+len(b.done.list()) < len(asked) {
			if time.Since(killed) > orphanLockTTL+10*time.Second {
				t.Fatalf("%d of %d orphans finished within lock_ttl + 10 s", len(a.done.list())+len(b.done.list()), len(asked))
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("every orphan finished %s after the kill", time.Since(killed).Round(10*time.Millisecond))
		time.Sleep(500 * time.Millisecond) // ten more sweeps each: nothing is finished twice
		got := map[string]Orphan{}
		for _, o := range append(a.done.list(), b.done.list()...) {
			if _, dup := got[o.Thread]; dup {
				t.Errorf("orphan in %s finished twice", o.Thread)
			}
			got[o.Thread] = o
		}
		for _, m := range asked {
			o, ok := got[m.Thread]
			want := Orphan{Platform: "test", Workspace: "w", Channel: "c1", Thread: m.Thread, Asker: "u1", Question: m.ID,
				Location: "loc-" + m.ID, Shown: "Partial answer here"}
			if o.Replica == "" || o.Replica == a.store.replica || o.Replica == b.store.replica {
				t.Errorf("orphan of replica %q", o.Replica)
			}
			o.Replica = ""
			if !ok || o != want {
				t.Errorf("orphan in %s:\n got %+v\nwant %+v", m.Thread, o, want)
			}
		}
		if n, err := rdb.ZCard(context.Background(), a.store.indexKey()).Result(); err != nil || n != 0 {
			t.Errorf("index holds %d entries after the sweep (%v)", n, err)
		}
		follow := msg("are you there?")
		follow.Thread, follow.Mentioned = asked[0].Thread, false
		r := &recorder{t: t}
		if err := a.engine.Handle(context.Background(), follow, r); err != nil {
			t.Fatal(err)
		}
		if f := r.final(); f.Outcome != OutcomeDone || !strings.Contains(f.Text, "are you there?") {
			t.Errorf("follow-up in an orphaned thread: %+v", f)
		}
		// The follow-up saw the orphaned exchange, as far as it was shown.
		reqs := a.ark.Requests()
		if got := transcript(reqs[len(reqs)-1]); !strings.Contains(got, "user: a slow question\nassistant: Partial answer here\nuser: are you there?") {
			t.Errorf("the follow-up's request:\n%s", got)
		}
		// Retry under an orphan answers its question again.
		retry := msg("/retry " + asked[1].ID)
		retry.Thread = asked[1].Thread
		r = &recorder{t: t}
		if err := b.engine.Handle(context.Background(), retry, r); err != nil {
			t.Fatal(err)
		}
		if f := r.final(); f.Outcome != OutcomeDone || !strings.Contains(f.Text, "a slow question") {
			t.Errorf("retry of an orphan: %+v", f)
		}
	})
}

// A follow-up that comes after the dead replica's lock expired but before
// any sweep takes the thread and finishes the orphan it finds there.
func TestFollowUpFinishesTheOrphanItFinds(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		survivor := newReplica(t, rdb, prefix, nil)
		asked, endDead := dyingReplica(t, rdb, prefix, 1)
		defer endDead()
		lock := survivor.store.lockKey(asked[0].ThreadKey())
		for deadline := time.Now().Add(5 * time.Second); rdb.Exists(context.Background(), lock).Val() == 1; {
			if time.Now().After(deadline) {
				t.Fatal("the dead replica's lock never expired")
			}
			time.Sleep(20 * time.Millisecond)
		}
		follow := msg("hello?")
		follow.Thread, follow.Mentioned = asked[0].Thread, false
		r := &recorder{t: t}
		if err := survivor.engine.Handle(context.Background(), follow, r); err != nil {
			t.Fatal(err)
		}
		if f := r.final(); f.Outcome != OutcomeDone {
			t.Errorf("follow-up: %+v", f)
		}
		if got := transcript(survivor.ark.Requests()[0]); got != "user: a slow question\nassistant: Partial answer here\nuser: hello?" {
			t.Errorf("the follow-up's request:\n%s", got)
		}
		for deadline := time.Now().Add(5 * time.Second); len(survivor.done.list()) == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if got := survivor.done.list(); len(got) != 1 || got[0].Question != asked[0].ID || got[0].Location != "loc-"+asked[0].ID {
			t.Fatalf("orphans finished: %+v", got)
		}
		if n := survivor.engine.sweep(context.Background()); n != 0 {
			t.Errorf("a sweep claimed %d orphans the follow-up had finished", n)
		}
	})
}

// Answers that end normally, saved or not, and a thread reset after one,
// leave no orphan behind once their lock deadline has passed.
func TestFinishedAnswersAreNoOrphans(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rp := newReplica(t, rdb, prefix, nil)
		ask := func(m Message) Frame {
			r := &recorder{t: t}
			if err := rp.engine.Handle(context.Background(), m, r); err != nil {
				t.Logf("Handle: %v", err)
			}
			return r.final()
		}
		saved := msg("saved")
		saved.Thread = "s1"
		if f := ask(saved); f.Outcome != OutcomeDone {
			t.Fatalf("answer: %+v", f)
		}
		retried := msg("/retry")
		retried.Thread = "s1"
		if f := ask(retried); f.Outcome != OutcomeDone {
			t.Fatalf("retry: %+v", f)
		}
		reset := msg("reset after")
		reset.Thread = "s2"
		ask(reset)
		if err := rp.store.Reset(context.Background(), reset.ThreadKey()); err != nil {
			t.Fatal(err)
		}
		rp.ark.Enqueue(arktest.Response{Status: 500})
		failed := msg("fails")
		failed.Thread = "s3"
		if f := ask(failed); f.Outcome != OutcomeFailed {
			t.Fatalf("failure: %+v", f)
		}
		if n := rdb.Exists(context.Background(), rp.store.flightKey(failed.ThreadKey())).Val(); n != 0 {
			t.Error("a released answer left its flight record")
		}
		time.Sleep(orphanLockTTL + 100*time.Millisecond)
		if n := rp.engine.sweep(context.Background()); n != 0 || len(rp.done.list()) != 0 {
			t.Errorf("sweep claimed %d orphans: %+v", n, rp.done.list())
		}
		if n, err := rdb.ZCard(context.Background(), rp.store.indexKey()).Result(); err != nil || n != 0 {
			t.Errorf("index holds %d entries after the sweep (%v)", n, err)
		}
	})
}

// A thread where the bot took a mention stays one it talks in when the
// first answer saved nothing: a follow-up there is answered.
func TestMentionedThreadWithoutTurnsTakesFollowUps(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newRig(t, rdb, prefix)
		rg.ark.Enqueue(arktest.Response{Status: 500}, arktest.Response{Status: 500}, arktest.Response{Status: 500})
		first := msg("first")
		first.Thread = "nt"
		if f := rg.ask(t, first).final(); f.Outcome != OutcomeFailed {
			t.Fatalf("first answer: %+v", f)
		}
		follow := msg("again")
		follow.Thread, follow.Mentioned = "nt", false
		if f := rg.ask(t, follow).final(); f.Outcome != OutcomeDone {
			t.Errorf("follow-up: %+v", f)
		}
		elsewhere := msg("not for the bot")
		elsewhere.Thread, elsewhere.Mentioned = "other", false
		if r := rg.ask(t, elsewhere); len(r.frames) != 0 || r.begun != 0 {
			t.Errorf("a follow-up where the bot was never asked was answered: %+v", r.frames)
		}
	})
}

// transcript is a request's conversation, one "role: text" line a message.
func transcript(req arktest.Request) string {
	var lines []string
	for _, m := range req.Messages {
		if m.Role != "system" {
			lines = append(lines, m.Role+": "+m.Text)
		}
	}
	return strings.Join(lines, "\n")
}

package conversation

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// testModels registers four models: two like the example config's, one
// small enough to test trimming, and an admins-only one.
func testModels() []Model {
	return []Model{
		{Name: "doubao", ID: "doubao-seed-1-6-250615", Thinking: "disabled", Vision: true, ContextWindow: 256000, MaxTokens: 4096},
		{Name: "deepseek-r1", ID: "deepseek-r1-250528", ContextWindow: 64000, MaxTokens: 16000},
		{Name: "tiny", ID: "ep-20250101-tiny", ContextWindow: 400, MaxTokens: 100},
		{Name: "vip", ID: "ep-vip", ContextWindow: 32768, MaxTokens: 4096, AdminsOnly: true},
	}
}

// testOptions are the engine options of a configuration that sets none.
func testOptions() []Option {
	return []Option{
		WithSystemPrompt("You are a helpful assistant in a team chat on {platform}, talking with {user}. Today is {date}."),
		WithLimits(Limits{MaxInputChars: 16000}),
		WithIdleTimeout(time.Minute),
		WithLogger(slog.New(slog.DiscardHandler)),
	}
}

// backends runs a test against the real Redis and the embedded one.
func backends(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient, prefix string)) {
	t.Run("redis", func(t *testing.T) {
		rs := redistest.New(t)
		f(t, rs.Client(), rs.Prefix)
	})
	t.Run("embedded", func(t *testing.T) {
		mr, err := embedredis.Start()
		if err != nil {
			t.Fatal(err)
		}
		c := mr.Client()
		t.Cleanup(func() { c.Close(); mr.Close() })
		f(t, c, "emb")
	})
}

func storeOptions(prefix string) StoreOptions {
	return StoreOptions{Prefix: prefix, TTL: time.Hour, MaxTurns: 20, LockTTL: 2 * time.Second, LockWait: 5 * time.Second, DedupeTTL: time.Hour}
}

// rig is an engine wired to a fake Ark and a Redis.
type rig struct {
	ark    *arktest.Server
	store  *Store
	engine *Engine
}

func newRig(t testing.TB, rdb redis.UniversalClient, prefix string, opts ...Option) *rig {
	t.Helper()
	ark := arktest.New()
	t.Cleanup(ark.Close)
	client, err := arkclient.New(ark.URL, "k", arkclient.WithRetries(2, time.Millisecond, 10*time.Millisecond),
		arkclient.WithIdleTimeout(2*time.Second), arkclient.WithFirstTokenTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(rdb, storeOptions(prefix))
	opts = append(append(testOptions(), WithRenderInterval("test", 0)), opts...)
	return &rig{ark: ark, store: store, engine: NewEngine(testModels(), store, client, opts...)}
}

var msgSeq sync.Mutex
var msgN int

// msg is a mentioned message in thread "t1" of channel "c1".
func msg(text string) Message {
	msgSeq.Lock()
	msgN++
	n := msgN
	msgSeq.Unlock()
	return Message{
		Platform: "test", Workspace: "w", Channel: "c1", Thread: "t1", ID: fmt.Sprintf("m%d", n),
		User: User{ID: "u1", Name: "Ada", CanSwitchModel: true}, Text: text, Mentioned: true, InThread: true, Time: time.Now(),
	}
}

// recorder is a Reply that records every call and checks the engine's contract.
type recorder struct {
	t        testing.TB
	mu       sync.Mutex
	begun    int
	frames   []Frame
	notices  []string
	inRender bool
	delay    time.Duration // each Render takes this long
	slowSign time.Duration // Begin takes this long
	times    []time.Time
}

func (r *recorder) Begin(context.Context) error {
	time.Sleep(r.slowSign)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.begun++
	return nil
}

func (r *recorder) Render(_ context.Context, f Frame) error {
	r.mu.Lock()
	if r.inRender {
		r.t.Error("two renders in flight for one reply")
	}
	if n := len(r.frames); n > 0 && r.frames[n-1].Final {
		r.t.Error("render after the final frame")
	}
	r.inRender = true
	r.frames = append(r.frames, f)
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	time.Sleep(r.delay)
	r.mu.Lock()
	r.inRender = false
	r.mu.Unlock()
	return nil
}

func (r *recorder) Notice(_ context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notices = append(r.notices, text)
	return nil
}

func (r *recorder) final() Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.frames) == 0 {
		r.t.Fatal("no frame rendered")
	}
	f := r.frames[len(r.frames)-1]
	if !f.Final {
		r.t.Fatalf("last frame not final: %+v", f)
	}
	return f
}

func (r *recorder) notice() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notices) != 1 {
		r.t.Fatalf("want one notice, got %q", r.notices)
	}
	return r.notices[0]
}

func (rg *rig) ask(t *testing.T, m Message) *recorder {
	t.Helper()
	r := &recorder{t: t}
	if err := rg.engine.Handle(context.Background(), m, r); err != nil {
		t.Logf("Handle: %v", err)
	}
	return r
}

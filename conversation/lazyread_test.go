package conversation

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// countingTransport counts the reads of response bodies.
type countingTransport struct{ reads atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = countingBody{resp.Body, &c.reads}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	b.n.Add(1)
	return b.ReadCloser.Read(p)
}

// The engine reads Ark's stream in batches just before each render rather
// than a read per token, and the renders still show what had arrived.
func TestStreamIsReadJustBeforeRenders(t *testing.T) {
	backends(t, testReadJustBeforeRenders)
}

func testReadJustBeforeRenders(t *testing.T, rdb redis.UniversalClient, prefix string) {
	var mu sync.Mutex
	var firstAt time.Time
	ark := arktest.New(arktest.WithFirstChunkHook(func(_ arktest.Request, at time.Time) {
		mu.Lock()
		firstAt = at
		mu.Unlock()
	}))
	t.Cleanup(ark.Close)
	const tokens, every, interval = 80, 10 * time.Millisecond, 200 * time.Millisecond
	chunks := make([]string, tokens)
	for i := range chunks {
		chunks[i] = "t "
	}
	ark.Enqueue(arktest.Response{Content: chunks, PerChunk: every})

	ct := &countingTransport{}
	client, err := arkclient.New(ark.URL, "k", arkclient.WithHTTPClient(&http.Client{Transport: ct}))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(testModels(), NewStore(rdb, storeOptions(prefix)), client,
		append(testOptions(), WithRenderInterval("test", interval))...)
	r := &recorder{t: t}
	if err := e.Handle(context.Background(), msg("stream"), r); err != nil {
		t.Fatal(err)
	}
	if f := r.final(); f.Text != strings.Repeat("t ", tokens) {
		t.Fatalf("final text %q", f.Text)
	}
	// Read per token, the body would take at least one read per chunk.
	if n := ct.reads.Load(); n >= tokens/2 {
		t.Errorf("%d reads of the body for %d chunks: read per token, not per render", n, tokens)
	}
	// Every render shows the tokens written until shortly before it (the
	// read-ahead and some scheduling slack).
	mu.Lock()
	first := firstAt
	mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, f := range r.frames[:len(r.frames)-1] {
		written := int(r.times[i].Sub(first)/every) + 1
		shown := strings.Count(f.Text, "t ")
		if slack := int((min(readAhead, interval/4) + 60*time.Millisecond) / every); shown < min(written, tokens)-slack {
			t.Errorf("render %d at +%v shows %d tokens, %d were written", i, r.times[i].Sub(first).Round(time.Millisecond), shown, written)
		}
	}
}

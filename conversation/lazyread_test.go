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
	var writes []time.Time // when each chunk was written
	ark := arktest.New(arktest.WithChunkHook(func(_ arktest.Request, at time.Time) {
		mu.Lock()
		writes = append(writes, at)
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
	// read-ahead and some scheduling slack), counted by when the fake
	// actually wrote them, so a slow machine delaying the fake fails nothing.
	mu.Lock()
	defer mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	first := writes[0]
	for i, f := range r.frames[:len(r.frames)-1] {
		before := r.times[i].Add(-min(readAhead, interval/4) - 60*time.Millisecond)
		written := 0
		for _, at := range writes {
			if at.Before(before) {
				written++
			}
		}
		if shown := strings.Count(f.Text, "t "); shown < written {
			t.Errorf("render %d at +%v shows %d tokens, %d were written by +%v", i, r.times[i].Sub(first).Round(time.Millisecond),
				shown, written, before.Sub(first).Round(time.Millisecond))
		}
	}
}

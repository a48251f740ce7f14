package conversation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// nopReply renders nowhere; it isolates the engine's own cost.
type nopReply struct{}

func (nopReply) Begin(context.Context) error         { return nil }
func (nopReply) Render(context.Context, Frame) error { return nil }
func (nopReply) Notice(context.Context, string) error {
	return nil
}

// BenchmarkEngineAnswer answers one 200-token message per op through the
// whole engine (embedded Redis, fake Ark over loopback HTTP). Divide the
// allocations by 200 for a per-token figure.
func BenchmarkEngineAnswer(b *testing.B) {
	mr, err := embedredis.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer mr.Close()
	rdb := mr.Client()
	defer rdb.Close()
	rg := newRig(b, rdb, "bench", WithRenderInterval("test", 0))
	chunks := make([]string, 200)
	for i := range chunks {
		chunks[i] = "token "
	}
	rg.ark.SetHandler(func(arktest.Request) arktest.Response { return arktest.Response{Content: chunks} })
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		m := msg("bench")
		m.Thread = fmt.Sprintf("t%d", i%50)
		_ = rg.engine.Handle(context.Background(), m, nopReply{})
	}
}

// BenchmarkStoreTurn is one turn's store work: admit, lock and load, save.
func BenchmarkStoreTurn(b *testing.B) {
	mr, err := embedredis.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer mr.Close()
	rdb := mr.Client()
	defer rdb.Close()
	s := NewStore(rdb, storeOptions("bench"))
	ctx := context.Background()
	turns := []Turn{{Role: "user", Text: "question?"}, {Role: "assistant", Text: "an answer of moderate length, about this long."}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		m := msg("x")
		m.ID = fmt.Sprint(i)
		adm, err := s.Admit(ctx, m, []string{"doubao"}, time.Now(), true)
		if err != nil || adm.Thread == nil {
			b.Fatal(adm, err)
		}
		if err := adm.Thread.Save(ctx, turns, Usage{User: "u", Model: "doubao", Tokens: 10}, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPacer pushes 1,000 frames through the pacer per op.
func BenchmarkPacer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		p := newPacer(context.Background(), nopReply{}, time.Millisecond, nil, func() {})
		for i := 0; i < 1000; i++ {
			p.update(Frame{Text: "x"})
		}
		_ = p.finish(Frame{Text: "x", Final: true})
	}
}

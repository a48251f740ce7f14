package conversation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/embedredis"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/sentineltest"
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

// BenchmarkReplicatedTurn measures what confirming writes on a replica
// costs, on a master with one replica (real redis-server processes on
// loopback): a turn's store work (admit, lock and load, save) with
// redis.min_replicas 0 and 1, and the admission alone, bare and followed by
// a WAIT for one replica (what confirming dedupe markers would add).
func BenchmarkReplicatedTurn(b *testing.B) {
	set := sentineltest.New(b)
	rdb := set.Client(set.Nodes[0])
	ctx := context.Background()
	turns := []Turn{{Role: "user", Text: "question?"}, {Role: "assistant", Text: "an answer of moderate length, about this long."}}
	i := 0
	admit := func(b *testing.B, s *Store) *Thread {
		i++
		m := msg("x")
		m.ID = fmt.Sprint(i)
		m.Thread = fmt.Sprintf("t%d", i%50)
		adm, err := s.Admit(ctx, m, []string{"doubao"}, time.Now(), true)
		if err != nil || adm.Thread == nil {
			b.Fatal(adm, err)
		}
		return adm.Thread
	}
	for _, n := range []int{0, 1} {
		b.Run(fmt.Sprintf("turn/min_replicas=%d", n), func(b *testing.B) {
			opt := storeOptions(fmt.Sprintf("bench%d", n))
			opt.MinReplicas, opt.ReplicaWait = n, 200*time.Millisecond
			s := NewStore(rdb, opt)
			for b.Loop() {
				if err := admit(b, s).Save(ctx, turns, Usage{User: "u", Model: "doubao", Tokens: 10}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, wait := range []bool{false, true} {
		b.Run(fmt.Sprintf("admit/wait=%v", wait), func(b *testing.B) {
			s := NewStore(rdb, storeOptions("benchadmit"))
			for b.Loop() {
				th := admit(b, s)
				b.StopTimer()
				_ = th.Release(ctx)
				b.StartTimer()
				if wait {
					if n, err := rdb.Do(ctx, "wait", 1, 200).Int(); err != nil || n != 1 {
						b.Fatal(n, err)
					}
				}
			}
		})
	}
}

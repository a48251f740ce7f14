package conversation

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// Environment of the test binary re-run as a replica to kill.
const (
	envReplicaRedis  = "ARKBOT_TEST_REPLICA_REDIS"
	envReplicaPrefix = "ARKBOT_TEST_REPLICA_PREFIX"
	envReplicaArk    = "ARKBOT_TEST_REPLICA_ARK"
	envReplicaN      = "ARKBOT_TEST_REPLICA_ANSWERS"
)

// doomedReplicaMain runs the test binary as the replica
// TestKilledReplicasAnswersAreFinished kills, when its environment says so.
func doomedReplicaMain() {
	if os.Getenv(envReplicaRedis) == "" {
		return
	}
	if err := runDoomedReplica(); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// stuckReply is the doomed replica's Reply: its message is "loc-<ID>".
type stuckReply struct{ loc string }

func (stuckReply) Begin(context.Context) error                { return nil }
func (stuckReply) Render(context.Context, Frame) error        { return nil }
func (stuckReply) Notice(context.Context, string) error       { return nil }
func (r stuckReply) Location() (string, bool)                 { return r.loc, true }
func (stuckReply) FinishOrphan(context.Context, Orphan) error { return nil }
func questionIn(thread int) Message                           { return threadMsg(thread, fmt.Sprintf("q%d", thread)) }
func threadMsg(thread int, id string) Message {
	return Message{Platform: "test", Workspace: "w", Channel: "c1", Thread: fmt.Sprintf("k%d", thread), ID: id,
		User: User{ID: "u1", Name: "Ada"}, Text: "a slow question", Mentioned: true, InThread: true, Time: time.Now()}
}

// runDoomedReplica is the process the test kills: it starts the answers
// (its Ark streams a little and hangs), prints "ready" once every
// answer's flight records what it showed, and waits to be killed.
func runDoomedReplica() error {
	opt, err := redis.ParseURL(os.Getenv(envReplicaRedis))
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	n, _ := strconv.Atoi(os.Getenv(envReplicaN))
	sopt := storeOptions(os.Getenv(envReplicaPrefix))
	sopt.LockTTL = orphanLockTTL
	store := NewStore(rdb, sopt)
	ark, err := arkclient.New(os.Getenv(envReplicaArk), "k", arkclient.WithRetries(0, time.Millisecond, time.Millisecond),
		arkclient.WithIdleTimeout(time.Minute), arkclient.WithFirstTokenTimeout(time.Minute))
	if err != nil {
		return err
	}
	e := NewEngine(testModels(), store, ark, WithLogger(slog.New(slog.DiscardHandler)), WithRenderInterval("test", 0))
	e.FinishOrphansWith("test", stuckReply{})
	for i := range n {
		m := questionIn(i)
		go func() { _ = e.Handle(context.Background(), m, stuckReply{loc: "loc-" + m.ID}) }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < n; {
		if shown, _ := rdb.HGet(context.Background(), store.flightKey(questionIn(i).ThreadKey()), "shown").Result(); shown != "" {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("answer %d never recorded what it showed", i)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return fmt.Errorf("not killed")
}

// A replica process killed with SIGKILL in the middle of 20 answers: the
// two survivors' sweeps finish each exactly once within lock_ttl + 10 s,
// with its location, what it showed and its question, and a follow-up
// without a mention in each of those threads is answered.
func TestKilledReplicasAnswersAreFinished(t *testing.T) {
	rs := redistest.New(t)
	rdb := rs.Client()
	ark := arktest.New()
	defer ark.Close()
	ark.SetHandler(func(arktest.Request) arktest.Response {
		return arktest.Response{Content: []string{"Half ", "an ", "answer"}, Hang: true}
	})
	const n = 20
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envReplicaRedis+"="+rs.URL, envReplicaPrefix+"="+rs.Prefix, envReplicaArk+"="+ark.URL, envReplicaN+"="+strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); line == "ready" || strings.HasPrefix(line, "error:") {
				ready <- line
				return
			}
		}
		ready <- "exited"
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("doomed replica: %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the doomed replica never got ready")
	}

	a, b := newReplica(t, rdb, rs.Prefix, nil), newReplica(t, rdb, rs.Prefix, nil)
	a.sweepEvery(t, 200*time.Millisecond)
	b.sweepEvery(t, 200*time.Millisecond)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	for len(a.done.list())+len(b.done.list()) < n && time.Since(killed) < orphanLockTTL+10*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	time.Sleep(time.Second) // five more sweeps each: nothing is finished twice
	all := append(a.done.list(), b.done.list()...)
	if len(all) != n {
		t.Fatalf("%d orphans finished within lock_ttl + 10 s, want %d", len(all), n)
	}
	t.Logf("%d orphans finished %s after SIGKILL (lock_ttl %s), %d by one survivor, %d by the other",
		n, took.Round(10*time.Millisecond), orphanLockTTL, len(a.done.list()), len(b.done.list()))
	seen := map[string]bool{}
	for _, o := range all {
		if seen[o.Thread] {
			t.Errorf("orphan in %s finished twice", o.Thread)
		}
		seen[o.Thread] = true
		if o.Location != "loc-"+o.Question || o.Shown == "" || !strings.HasPrefix("Half an answer", o.Shown) {
			t.Errorf("orphan %+v", o)
		}
	}
	for i := range n {
		if !seen[questionIn(i).Thread] {
			t.Errorf("orphan in %s not finished", questionIn(i).Thread)
		}
		follow := threadMsg(i, fmt.Sprintf("f%d", i))
		follow.Text, follow.Mentioned = "still there?", false
		r := &recorder{t: t}
		if err := a.engine.Handle(context.Background(), follow, r); err != nil {
			t.Fatal(err)
		}
		if f := r.final(); f.Outcome != OutcomeDone {
			t.Errorf("follow-up in %s: %+v", follow.Thread, f)
		}
	}
}

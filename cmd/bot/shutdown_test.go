package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// SIGTERM with answers in flight whose final renders must wait for Slack
// budget the bot has spent: everything runs under server.shutdown_timeout,
// so run returns in time (final renders still waiting are abandoned), and
// every answer's turn (the question and the text it got to) is in Redis,
// saved before its final render.
func TestShutdownDeadlineSavesTurnsBeforeFinalRenders(t *testing.T) {
	const answers, shutdownTimeout = 8, 3 * time.Second
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	defer fs.Close()
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	fs.SetRateLimits(&slacktest.RateLimits{Scale: 1}) // Slack's real limits
	t.Setenv("T_SLACK_BOT", fs.BotToken())
	t.Setenv("T_SLACK_APP", fs.AppToken())
	addr := freeAddr(t)
	// replicas: 10 leaves this bot a tenth of Slack's budgets: chat.update
	// 4.5 a minute, its burst spent by the first renders.
	cfg := writeConfig(t, ark.URL, rs.URL, fmt.Sprintf(`
server: {addr: %s, shutdown_timeout: %s}
slack: {bot_token: "${T_SLACK_BOT}", app_token: "${T_SLACK_APP}", api_url: %s, streaming: update, edit_interval: 50ms, replicas: 10}
`, addr, shutdownTimeout, fs.APIURL()))

	words := make([]string, 400)
	for i := range words {
		words[i] = fmt.Sprintf("w%d ", i)
	}
	for range answers {
		ark.Enqueue(arktest.Response{Content: words, PerChunk: 50 * time.Millisecond})
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", cfg}, strings.NewReader(""), &stdout, &stderr) }()
	waitUntil(t, "/readyz", 15*time.Second, func() bool { code, _ := get(t, "http://"+addr+"/readyz"); return code == 200 })

	type question struct{ channel, ts, text string }
	var qs []question
	for i := range answers {
		q := question{channel: fmt.Sprintf("C%d", i), ts: fs.NextTS(), text: fmt.Sprintf("question %d", i)}
		qs = append(qs, q)
		if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention(q.channel, "U1", "<@"+fs.BotUserID()+"> "+q.text, q.ts, "")); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "every answer streaming", 15*time.Second, func() bool { return len(ark.Requests()) == answers })

	stop() // SIGTERM
	began := time.Now()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d", code)
		}
		t.Logf("run returned %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("run did not return within shutdown_timeout + 5s\n%s", stderr.String())
	}

	store := conversation.NewStore(rs.Client(), conversation.StoreOptions{Prefix: "t" + t.Name(),
		TTL: time.Hour, MaxTurns: 100, LockTTL: 30 * time.Second, LockWait: time.Second, DedupeTTL: time.Hour})
	for _, q := range qs {
		key := strings.Join([]string{conversation.PlatformSlack, slacktest.DefaultTeamID, q.channel, q.ts}, ":")
		th, err := store.Lock(context.Background(), key, "test")
		if err != nil {
			t.Fatalf("%s: %v (the answer still held its lock: not saved)", key, err)
		}
		turns := th.Turns
		th.Release(context.Background())
		if len(turns) != 2 || turns[0].Role != "user" || turns[0].Text != q.text || turns[1].Role != "assistant" ||
			turns[1].Text == "" || !strings.HasPrefix(strings.Join(words, ""), turns[1].Text) {
			t.Errorf("%s: turns %+v", key, turns)
		}
	}
}

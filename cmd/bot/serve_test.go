package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole bot, as main runs it, against fake Ark, Slack and Discord and a
// real Redis: both platforms answer, health and metrics are served, no
// secret reaches the logs or /metrics, and SIGTERM interrupts an answer
// visibly and exits cleanly.
func TestServeSlackAndDiscord(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	defer fs.Close()
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	fd := discordtest.New()
	defer fd.Close()
	const guild, channel = "700000000000000001", "700000000000000002"
	fd.AddGuild(guild, "Test guild")
	fd.AddChannel(discordtest.Channel{ID: channel, GuildID: guild, Name: "general", Type: discordtest.ChannelText})

	addr := freeAddr(t)
	t.Setenv("T_SLACK_BOT", fs.BotToken())
	t.Setenv("T_SLACK_APP", fs.AppToken())
	t.Setenv("T_DISCORD", fd.Token())
	cfg := writeConfig(t, ark.URL, rs.URL, fmt.Sprintf(`
server:
  addr: %s
  shutdown_timeout: 3s # a grace of 2s: the slow answer below needs 5s
slack:
  bot_token: ${T_SLACK_BOT}
  app_token: ${T_SLACK_APP}
  api_url: %s
  edit_interval: 50ms
discord:
  token: ${T_DISCORD}
  api_url: %s
  guild_ids: [%s]
  edit_interval: 50ms
`, addr, fs.APIURL(), fd.APIURL(), guild))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", cfg}, strings.NewReader(""), &stdout, &stderr) }()

	base := "http://" + addr
	waitUntil(t, "/readyz", 15*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}

	// Slack: a mention in a channel is answered in its thread.
	ts := fs.NextTS()
	if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@"+fs.BotUserID()+"> hello slack", ts, "")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the Slack answer", 10*time.Second, func() bool {
		for _, m := range fs.Replies("C1", ts) {
			if strings.Contains(m.Visible(), "You said: hello slack") && !m.Streaming {
				return true
			}
		}
		return false
	})

	// Discord: a mention is answered with a reply.
	bot := fd.Bot()
	if _, err := fd.PostUserMessage(discordtest.MessageSpec{ChannelID: channel, GuildID: guild,
		Author: discordtest.User{ID: "600000000000000001", Username: "alice"}, Content: "<@" + bot.ID + "> hello discord",
		Mentions: []discordtest.User{bot}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the Discord answer", 10*time.Second, func() bool {
		for _, m := range fd.Messages(channel) {
			if m.Author.ID == bot.ID && strings.Contains(m.Content, "You said: hello discord") && !strings.Contains(m.Content, "▌") {
				return true
			}
		}
		return false
	})

	_, metricsText := get(t, base+"/metrics")
	for _, want := range []string{`arkbot_answers_total{model="doubao",outcome="done",platform="slack"}`, `arkbot_answers_total{model="doubao",outcome="done",platform="discord"}`, "arkbot_platform_calls_total"} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Redis down: not ready, and users hear why; back up: ready again by itself.
	if rs.Owned() {
		rs.Stop()
		waitUntil(t, "/readyz to fail", 10*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 503 })
		ts := fs.NextTS()
		fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@"+fs.BotUserID()+"> are you there?", ts, ""))
		waitUntil(t, "the memory notice", 15*time.Second, func() bool {
			for _, m := range fs.Replies("C1", ts) {
				if strings.Contains(m.Visible(), "can't reach my memory") {
					return true
				}
			}
			return false
		})
		rs.Start()
		waitUntil(t, "/readyz to recover", 15*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	}

	// SIGTERM with a slow answer in flight: it is interrupted visibly.
	slow := make([]string, 50)
	for i := range slow {
		slow[i] = "word "
	}
	ark.Enqueue(arktest.Response{Content: slow, PerChunk: 100 * time.Millisecond})
	ts2 := fs.NextTS()
	fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@"+fs.BotUserID()+"> long story", ts2, ""))
	waitUntil(t, "the slow answer to start", 10*time.Second, func() bool {
		for _, m := range fs.Replies("C1", ts2) {
			if strings.Contains(m.Visible(), "word") {
				return true
			}
		}
		return false
	})
	stop()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the bot did not stop after SIGTERM")
	}
	var final string
	for _, m := range fs.Replies("C1", ts2) {
		final += m.Visible()
	}
	if !strings.Contains(final, "restarted before I could finish") || strings.Count(final, "word") >= 50 {
		t.Errorf("interrupted answer not marked: %q", final)
	}

	logs := stderr.String() + stdout.String()
	for name, secret := range map[string]string{"ark": testKey, "slack bot": fs.BotToken(), "slack app": fs.AppToken(), "discord": fd.Token()} {
		if strings.Contains(logs, secret) || strings.Contains(metricsText, secret) {
			t.Errorf("the %s secret leaked into the logs or /metrics", name)
		}
	}
	if !strings.Contains(logs, "discord.com/oauth2/authorize") {
		t.Error("the Discord invite URL was not logged at start-up")
	}
}

package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/internal/fakeslack"
)

// An event sent while no Socket Mode connection is open is sent again,
// with the same event_id and its attempt counted, once one opens.
func TestSlackEventRedelivered(t *testing.T) {
	h := &harness{fs: fakeslack.New(fakeslack.Options{}), stats: newCallStats()}
	defer h.fs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- h.sendSlack(fakeslack.UserMessage("C1", "channel", "U1", "hi", h.fs.NextTS(), "")) }()
	time.Sleep(2 * slackRedeliverWait) // nowhere to go meanwhile
	api := slack.New(h.fs.BotToken(), slack.OptionAppLevelToken(h.fs.AppToken()), slack.OptionAPIURL(h.fs.APIURL()))
	_, wsURL, err := api.StartSocketModeContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var env struct {
			Type         string `json:"type"`
			RetryAttempt int    `json:"retry_attempt"`
			RetryReason  string `json:"retry_reason"`
			Payload      struct {
				EventID string `json:"event_id"`
			} `json:"payload"`
		}
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("no event arrived: %v", err)
		}
		if err := json.Unmarshal(b, &env); err != nil || env.Type != "events_api" {
			continue // hello
		}
		if env.RetryAttempt < 1 || env.RetryReason == "" || env.Payload.EventID == "" {
			t.Errorf("redelivered envelope %s", b)
		}
		break
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := h.stats.redelivered.Load(); n < 2 {
		t.Errorf("%d redeliveries counted, want at least 2", n)
	}
}

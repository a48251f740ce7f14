package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// busyHandler's engine holds its first answer at the gate; the adapter has
// one worker and no queue, so a second message finds it full.
// release opens the gate, once; tests also call it in a cleanup
// registered after the adapter's, so that it runs before the adapter stops.
func busyHandler() (h *scripted, release func()) {
	h = newScripted()
	h.gate = make(chan struct{})
	return h, sync.OnceFunc(func() { close(h.gate) })
}

// In HTTP mode an event the adapter can't take gets a 503 with
// Retry-After, so Slack delivers it again; the redelivery, once a worker
// is free, is answered. An event not for the bot still gets 200.
func TestHTTPEventRefusedWhenBusyIsAnsweredOnRedelivery(t *testing.T) {
	h, release := busyHandler()
	e := setup(t, h, func(c *config.Slack) {
		c.AppToken, c.SigningSecret, c.MaxConcurrent = "", "s3cret", 1
	}, WithWorkQueue(0))
	t.Cleanup(release)
	srv := httptest.NewServer(e.a.HTTPHandler())
	t.Cleanup(srv.Close)
	url := srv.URL + "/slack/events"
	post := func(ev []byte, retry string) (int, http.Header) {
		hdr := slacktest.Sign("s3cret", time.Now(), ev)
		if retry != "" {
			hdr.Set("X-Slack-Retry-Num", retry)
			hdr.Set("X-Slack-Retry-Reason", "http_error")
		}
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(ev))
		req.Header = hdr
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header
	}

	first := e.fs.NextTS()
	if code, _ := post(e.fs.EventCallback(&slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> first", first, "")), ""); code != http.StatusOK {
		t.Fatalf("first event: %d", code)
	}
	<-h.began // the only worker is busy

	second := e.fs.NextTS()
	ev := e.fs.EventCallback(&slacktest.EventOptions{}, slacktest.AppMention("C2", "U1", "<@UBOT> second", second, ""))
	code, hdr := post(ev, "")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("event while busy: %d (Retry-After %q), want 503 with Retry-After", code, hdr.Get("Retry-After"))
	}
	// A click on Retry while busy: 503, so Slack shows the click failed.
	click, _ := json.Marshal(map[string]any{
		"type": "block_actions", "team": map[string]any{"id": e.fs.TeamID()}, "user": map[string]any{"id": "U1"},
		"channel": map[string]any{"id": "C1"}, "container": map[string]any{"message_ts": first, "thread_ts": first},
		"message": map[string]any{"ts": first, "text": "an answer"},
		"actions": []any{map[string]any{"type": "button", "action_id": retryActionID, "block_id": retryBlockID, "value": "C1:" + first, "action_ts": e.fs.NextTS()}},
	})
	form := []byte(neturl.Values{"payload": {string(click)}}.Encode())
	clickCode := func() int {
		code, _, _ := httpPost(t, srv.URL+"/slack/interactivity", "application/x-www-form-urlencoded", form, slacktest.Sign("s3cret", time.Now(), form))
		return code
	}
	if code := clickCode(); code != http.StatusServiceUnavailable {
		t.Fatalf("click while busy: %d, want 503", code)
	}
	// Not for the bot (a bot's message): done with, whatever the load.
	bot := slacktest.UserMessage("C1", "channel", "U1", "from a bot", e.fs.NextTS(), first)
	bot["bot_id"] = "B9"
	if code, _ := post(e.fs.EventCallback(&slacktest.EventOptions{}, bot), ""); code != http.StatusOK {
		t.Fatalf("ignored event while busy: %d, want 200", code)
	}

	release() // the first answer finishes
	e.waitDone("C1", first)
	e.waitFor("the worker to be free", 5*time.Second, func() bool { return e.a.takingHTTP() && h.active.Load() == 0 })
	e.waitFor("the redelivery taken", 5*time.Second, func() bool {
		code, _ = post(ev, "1")
		return code == http.StatusOK
	})
	if msgs := e.final("C2", second); msgs[0].Visible() != "Answer to: second" {
		t.Fatalf("redelivered answer = %+v", msgs)
	}
	n := 0
	for _, m := range h.messages() {
		if m.Channel == "C2" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the engine saw the refused event %d times, want once (its redelivery)", n)
	}
	e.waitFor("the click taken", 5*time.Second, func() bool { return clickCode() == http.StatusOK })
	e.waitFor("the retry handled", 5*time.Second, func() bool {
		for _, m := range h.messages() {
			if m.Text == "/retry C1:"+first {
				return true
			}
		}
		return false
	})
}

// In Socket Mode an event the adapter can't take is left unacknowledged:
// Slack delivers it again, and the redelivery is answered.
func TestSocketEventRefusedWhenBusyIsRedelivered(t *testing.T) {
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second, Redeliver: time.Second})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann"})
	h, release := busyHandler()
	a, _ := start(t, fs, h, func(c *config.Slack) { c.MaxConcurrent = 1 }, WithWorkQueue(0))
	t.Cleanup(release)
	e := &env{t: t, fs: fs, a: a, h: h}

	first := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> first", first, ""))
	<-h.began

	second := fs.NextTS()
	sent, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C2", "U1", "<@UBOT> second", second, ""))
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor("a redelivery", 5*time.Second, func() bool { return fs.Redelivered() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if fs.WaitAck(ctx, sent.EnvelopeID) == nil {
		t.Fatal("the envelope the adapter could not take was acknowledged")
	}
	release()
	if msgs := e.final("C2", second); msgs[0].Visible() != "Answer to: second" {
		t.Fatalf("redelivered answer = %+v", msgs)
	}
	e.waitDone("C1", first)
}

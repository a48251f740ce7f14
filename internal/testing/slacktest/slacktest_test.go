package slacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
)

func client(s *Server) *slack.Client {
	return slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL()), slack.OptionAppLevelToken(s.AppToken()))
}

// socketConn opens a Socket Mode connection to s as a client does:
// apps.connections.open, then the WebSocket it names.
func socketConn(tb testing.TB, ctx context.Context, s *Server) *websocket.Conn {
	tb.Helper()
	_, wsURL, err := client(s).StartSocketModeContext(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func TestWebAPI(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	api := client(s)
	ctx := context.Background()

	auth, err := api.AuthTestContext(ctx)
	if err != nil || auth.UserID != DefaultBotUserID || auth.TeamID != DefaultTeamID || auth.BotID != DefaultBotID {
		t.Fatalf("auth.test = %+v, %v", auth, err)
	}
	if _, err := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL())).AuthTestContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("auth.test with a wrong token: %v", err)
	}

	s.AddUser(User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "ann.e"})
	u, err := api.GetUserInfoContext(ctx, "U1")
	if err != nil || u.Profile.DisplayName != "ann.e" {
		t.Fatalf("users.info = %+v, %v", u, err)
	}
	if _, err := api.GetUserInfoContext(ctx, "U404"); err == nil {
		t.Fatal("users.info of an unknown user succeeded")
	}

	// Post with a markdown block and text, then update.
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("fallback", false),
		slack.MsgOptionBlocks(slack.NewMarkdownBlock("", "**hello**")), slack.MsgOptionTS("100.000001"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionBlocks(slack.NewMarkdownBlock("", "**hello** world"))); err != nil {
		t.Fatal(err)
	}
	m, ok := s.Message("C1", ts)
	if !ok || m.Visible() != "**hello** world" || m.ThreadTS != "100.000001" || m.Edits != 1 || m.BotID != DefaultBotID {
		t.Fatalf("message = %+v", m)
	}
	if got := s.Replies("C1", "100.000001"); len(got) != 1 {
		t.Fatalf("replies = %d", len(got))
	}
	// chat.update text over 4,000 characters fails like Slack's.
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText(strings.Repeat("x", 4001), false)); err == nil || err.Error() != "msg_too_long" {
		t.Fatalf("long update: %v", err)
	}
	// markdown_text can't be combined with text.
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("a", false), slack.MsgOptionMarkdownText("b")); err == nil {
		t.Fatal("markdown_text with text accepted")
	}
	if _, err := api.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("psst", false)); err != nil {
		t.Fatal(err)
	}
	if e := s.Ephemerals(); len(e) != 1 || e[0].Text != "psst" || e[0].User != "U1" {
		t.Fatalf("ephemerals = %+v", e)
	}
	if err := api.SetAssistantThreadsStatusContext(ctx, slack.AssistantThreadsSetStatusParameters{ChannelID: "C1", ThreadTS: "100.000001", Status: "is thinking…"}); err != nil {
		t.Fatal(err)
	}
	if st := s.Statuses(); len(st) != 1 || st[0].Status != "is thinking…" {
		t.Fatalf("statuses = %+v", st)
	}
	if c := s.Calls("chat.postMessage"); len(c) != 2 || c[0].Result != "ok" || c[1].Error != "invalid_arguments" || c[0].Params.Get("token") != "" {
		t.Fatalf("calls = %+v", c)
	}
}

func TestOnCall(t *testing.T) {
	var s *Server
	calls := make(chan Call, 10)
	s = New(Options{OnCall: func(c Call) {
		s.Messages("C1") // runs outside the server's lock
		calls <- c
	}})
	defer s.Close()
	s.SetRateLimits(&RateLimits{Tiers: map[string]Tier{"chat.postMessage": {PerMinute: 1, Burst: 1}}})
	api := client(s)
	ctx := context.Background()
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("one", false)); err != nil {
		t.Fatal(err)
	}
	_, _, _ = api.PostMessageContext(ctx, "C1", slack.MsgOptionText("two", false))
	for i, want := range []struct{ text, result string }{{"one", "ok"}, {"two", "ratelimited"}} {
		c := <-calls
		if c.Method != "chat.postMessage" || c.Params.Get("text") != want.text || c.Result != want.result || c.Time.IsZero() {
			t.Errorf("call %d = %+v", i, c)
		}
	}
}

func TestStreaming(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	api := client(s)
	ctx := context.Background()
	rcpt := []slack.MsgOption{slack.MsgOptionTS("1.1"), slack.MsgOptionRecipientUserID("U1"), slack.MsgOptionRecipientTeamID(DefaultTeamID)}

	if _, _, err := api.StartStreamContext(ctx, "C1", slack.MsgOptionTS("1.1"), slack.MsgOptionMarkdownText("x")); err == nil {
		t.Fatal("startStream in a channel without recipients accepted")
	}
	_, ts, err := api.StartStreamContext(ctx, "C1", append(rcpt, slack.MsgOptionMarkdownText("Hel"))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", ts, slack.MsgOptionMarkdownText("lo")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("x", false)); err == nil || err.Error() != "streaming_state_conflict" {
		t.Fatalf("update while streaming: %v", err)
	}
	if _, _, err := api.StopStreamContext(ctx, "C1", ts, slack.MsgOptionMarkdownText("!")); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message("C1", ts); m.Visible() != "Hello!" || m.Streaming || !m.Streamed {
		t.Fatalf("streamed message = %+v", m)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", ts, slack.MsgOptionMarkdownText("more")); err == nil {
		t.Fatal("append after stop accepted")
	}

	s.SetNativeStreaming(false)
	_, _, err = api.StartStreamContext(ctx, "C1", rcpt...)
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) || se.Err != "unknown_method" {
		t.Fatalf("startStream with streaming off: %v", err)
	}
}

func TestRateLimits(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	api := client(s)
	ctx := context.Background()

	s.FailNext("chat.update", Failure{RetryAfter: 3}, Failure{Error: "fatal_error"})
	_, _, _, err := api.UpdateMessageContext(ctx, "C1", "1.1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 3*time.Second {
		t.Fatalf("injected 429: %v", err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", "1.1", slack.MsgOptionText("x", false)); err == nil || err.Error() != "fatal_error" {
		t.Fatalf("injected error: %v", err)
	}

	// Tier 2 at real speed: a burst of 5, then 429 with Retry-After.
	s.SetRateLimits(&RateLimits{})
	rcpt := []slack.MsgOption{slack.MsgOptionTS("1.1"), slack.MsgOptionRecipientUserID("U1"), slack.MsgOptionRecipientTeamID(DefaultTeamID)}
	for i := range 6 {
		_, _, err := api.StartStreamContext(ctx, "C1", rcpt...)
		if i < Tier2.Burst && err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if i == Tier2.Burst && !errors.As(err, &rl) {
			t.Fatalf("call %d over the burst: %v", i, err)
		}
	}
	if rl.RetryAfter < time.Second || rl.RetryAfter > 3*time.Second {
		t.Fatalf("Retry-After = %v, want about 3s (60s/20)", rl.RetryAfter)
	}
	// postMessage budgets are per channel.
	for i := range PostMessage.Burst {
		if _, _, err := api.PostMessageContext(ctx, "C9", slack.MsgOptionText("x", false)); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	if _, _, err := api.PostMessageContext(ctx, "C9", slack.MsgOptionText("x", false)); !errors.As(err, &rl) {
		t.Fatalf("post over the burst: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C8", slack.MsgOptionText("x", false)); err != nil {
		t.Fatalf("post in another channel: %v", err)
	}
	if s.RateLimited() != 3 {
		t.Fatalf("RateLimited() = %d, want 3", s.RateLimited())
	}
	s.SetRateLimits(nil)
	if _, _, err := api.PostMessageContext(ctx, "C9", slack.MsgOptionText("x", false)); err != nil {
		t.Fatalf("with emulation off: %v", err)
	}
}

func TestFiles(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	obj := s.AddFile("notes.md", "text/markdown", []byte("# hi"))
	u := obj["url_private"].(string)
	var buf bytes.Buffer
	if err := client(s).GetFileContext(context.Background(), u, &buf); err != nil || buf.String() != "# hi" {
		t.Fatalf("download = %q, %v", buf.String(), err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("download without a token: %d", resp.StatusCode)
	}
	if obj["size"].(int) != 4 || obj["filetype"] != "md" {
		t.Fatalf("file object = %v", obj)
	}
}

func TestSocketModeAndResponseURL(t *testing.T) {
	s := New(Options{PingInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := socketConn(t, ctx, s)
	pinged := make(chan struct{}, 1)
	conn.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil
	})
	var hello map[string]any
	if err := conn.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
		t.Fatalf("hello = %v, %v", hello, err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	sent, err := s.SendEvent(EventOptions{RetryAttempt: 1}, AppMention("C1", "U1", "<@UBOT> hi", s.NextTS(), ""))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		EnvelopeID   string `json:"envelope_id"`
		Type         string `json:"type"`
		RetryAttempt int    `json:"retry_attempt"`
		Payload      struct {
			TeamID  string         `json:"team_id"`
			EventID string         `json:"event_id"`
			Event   map[string]any `json:"event"`
		} `json:"payload"`
	}
	if err := conn.ReadJSON(&env); err != nil {
		t.Fatal(err)
	}
	if env.Type != "events_api" || env.EnvelopeID != sent.EnvelopeID || env.Payload.EventID != sent.EventID || env.RetryAttempt != 1 ||
		env.Payload.TeamID != DefaultTeamID || env.Payload.Event["type"] != "app_mention" {
		t.Fatalf("envelope = %+v", env)
	}
	if s.Acked(sent.EnvelopeID) {
		t.Fatal("acked before the ack")
	}
	if err := conn.WriteJSON(map[string]string{"envelope_id": sent.EnvelopeID}); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAck(ctx, sent.EnvelopeID); err != nil {
		t.Fatal(err)
	}
	go func() { // the ping handler runs inside reads
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case <-pinged:
	case <-ctx.Done():
		t.Fatal("no ping")
	}

	cmd := s.NewSlashCommand("/model", "deepseek-r1", "C1", "U1")
	resp, err := http.Post(cmd.ResponseURL, "application/json", strings.NewReader(`{"response_type":"ephemeral","text":"ok!"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ok map[string]any
	if json.Unmarshal(body, &ok) != nil || ok["ok"] != true {
		t.Fatalf("response_url answer = %s", body)
	}
	if e := s.Ephemerals(); len(e) != 1 || e[0].Via != "response_url" || e[0].Text != "ok!" || e[0].ResponseType != "ephemeral" {
		t.Fatalf("ephemerals = %+v", e)
	}
	if f := cmd.Form(); f.Get("command") != "/model" || f.Get("text") != "deepseek-r1" || f.Get("response_url") == "" {
		t.Fatalf("form = %v", f)
	}

	// Close never hangs, even with a client connected.
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(7 * time.Second):
		t.Fatal("Close hung")
	}
}

func TestSign(t *testing.T) {
	body := []byte(`{"type":"url_verification"}`)
	h := Sign("secret", time.Now(), body)
	sv, err := slack.NewSecretsVerifier(h, "secret")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = sv.Write(body)
	if err := sv.Ensure(); err != nil {
		t.Fatalf("slack-go rejects the fake's signature: %v", err)
	}
}

// TestWireFormat checks that the structs answering the frequent calls encode
// to the bytes of the maps they stand for.
func TestWireFormat(t *testing.T) {
	ch, ts, text := "C<&>", "1.000002", "say \"<b>\" é \u2028"
	pm := postMessageResponse{OK: true, Channel: ch, TS: ts}
	pm.Message.Text, pm.Message.TS = text, ts
	s := &Server{opts: Options{TeamID: DefaultTeamID, BotUserID: DefaultBotUserID}}
	o := EventOptions{EnvelopeID: "env-1", RetryAttempt: 2, RetryReason: "timeout"}
	ev := AppMention(ch, "U1", text, ts, "")
	p := s.callbackPayload(&o, ev)
	for i, c := range []struct{ got, want any }{
		{apiError(text), map[string]any{"ok": false, "error": text}},
		{okResponse{OK: true}, map[string]any{"ok": true}},
		{messageResponse{OK: true, Channel: ch, TS: ts}, map[string]any{"ok": true, "channel": ch, "ts": ts}},
		{pm, map[string]any{"ok": true, "channel": ch, "ts": ts, "message": map[string]any{"text": text, "ts": ts, "thread_ts": ""}}},
		{updateResponse{OK: true, Channel: ch, TS: ts, Text: text}, map[string]any{"ok": true, "channel": ch, "ts": ts, "text": text}},
		{ephemeralResponse{OK: true, MessageTS: ts}, map[string]any{"ok": true, "message_ts": ts}},
		{eventsAPIEnvelope{EnvelopeID: "env-1", Type: "events_api", RetryAttempt: 2, RetryReason: "timeout", Payload: p}, map[string]any{
			"envelope_id": "env-1", "type": "events_api", "accepts_response_payload": false, "retry_attempt": 2, "retry_reason": "timeout",
			"payload": map[string]any{
				"token": "verification-token-unused", "team_id": DefaultTeamID, "api_app_id": DefaultAppID,
				"event": ev, "type": "event_callback", "event_id": o.EventID, "event_time": p.EventTime,
				"authorizations":        []map[string]any{{"team_id": DefaultTeamID, "user_id": DefaultBotUserID, "is_bot": true, "is_enterprise_install": false}},
				"is_ext_shared_channel": false, "event_context": "4-fake-" + o.EventID,
			},
		}},
	} {
		got, _ := json.Marshal(c.got)
		want, _ := json.Marshal(c.want)
		if string(got) != string(want) {
			t.Errorf("%d: got  %s\nwant %s", i, got, want)
		}
	}
	s.tsCounter.Store(1700000000_000122)
	if env, ts := s.newEnvelopeID(), s.NextTS(); o.EventID != "Ev00000001" || env != "env-00000001" || ts != "1700000000.000123" {
		t.Errorf("IDs: %s, %s, %s", o.EventID, env, ts)
	}
}

// With EchoOwn, the bot's own posts come back over Socket Mode as message
// events with its bot_id, and its updates and stream calls as
// message_changed, each once the call is answered.
func TestEchoOwn(t *testing.T) {
	s := New(Options{EchoOwn: true})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	api := client(s)
	conn := socketConn(t, ctx, s)
	var hello map[string]any
	if err := conn.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
		t.Fatalf("hello = %v, %v", hello, err)
	}
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	next := func() map[string]any {
		t.Helper()
		var env struct {
			Type    string `json:"type"`
			Payload struct {
				Event map[string]any `json:"event"`
			} `json:"payload"`
		}
		if err := conn.ReadJSON(&env); err != nil || env.Type != "events_api" {
			t.Fatalf("envelope %+v, %v", env, err)
		}
		return env.Payload.Event
	}
	thread := s.NextTS()
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hi", false), slack.MsgOptionTS(thread))
	if err != nil {
		t.Fatal(err)
	}
	if e := next(); e["type"] != "message" || e["subtype"] != nil || e["bot_id"] != DefaultBotID || e["ts"] != ts || e["thread_ts"] != thread || e["text"] != "hi" {
		t.Fatalf("echo of a post = %v", e)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("hi there", false)); err != nil {
		t.Fatal(err)
	}
	e := next()
	msg, _ := e["message"].(map[string]any)
	if e["subtype"] != "message_changed" || e["channel"] != "C1" || msg["text"] != "hi there" || msg["ts"] != ts || msg["bot_id"] != DefaultBotID {
		t.Fatalf("echo of an update = %v", e)
	}
	_, sts, err := api.StartStreamContext(ctx, "C1", slack.MsgOptionTS(thread), slack.MsgOptionMarkdownText("a"),
		slack.MsgOptionRecipientUserID("U1"), slack.MsgOptionRecipientTeamID(DefaultTeamID))
	if err != nil {
		t.Fatal(err)
	}
	if e := next(); e["ts"] != sts || e["subtype"] != nil {
		t.Fatalf("echo of a stream's start = %v", e)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", sts, slack.MsgOptionMarkdownText("b")); err != nil {
		t.Fatal(err)
	}
	if e := next(); e["subtype"] != "message_changed" || e["message"].(map[string]any)["text"] != "ab" {
		t.Fatalf("echo of an append = %v", e)
	}
}

// With Redeliver, an event that found no connection open, and one that was
// not acknowledged, are sent again with the same event_id, counting the
// attempt; an acknowledged one is not.
func TestRedeliver(t *testing.T) {
	s := New(Options{Redeliver: 300 * time.Millisecond})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent, err := s.SendEvent(EventOptions{}, AppMention("C1", "U1", "<@UBOT> hi", s.NextTS(), ""))
	if err != nil {
		t.Fatalf("an event with no connection open: %v, want it kept for redelivery", err)
	}
	conn := socketConn(t, ctx, s)
	type envelope struct {
		Type         string `json:"type"`
		EnvelopeID   string `json:"envelope_id"`
		RetryAttempt int    `json:"retry_attempt"`
		RetryReason  string `json:"retry_reason"`
		Payload      struct {
			EventID string `json:"event_id"`
		} `json:"payload"`
	}
	next := func() envelope {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			var env envelope
			if err := conn.ReadJSON(&env); err != nil {
				t.Fatalf("no envelope: %v", err)
			}
			if env.Type == "events_api" {
				return env
			}
		}
	}
	first := next() // a redelivery: nowhere to go before (a second one if connecting took long)
	if first.Payload.EventID != sent.EventID || first.RetryAttempt < 1 || first.RetryAttempt >= MaxRedeliveries || first.RetryReason != "timeout" || first.EnvelopeID == sent.EnvelopeID {
		t.Errorf("first delivery %+v of %+v", first, sent)
	}
	second := next() // not acknowledged: sent again
	if second.Payload.EventID != sent.EventID || second.RetryAttempt != first.RetryAttempt+1 || second.EnvelopeID == first.EnvelopeID {
		t.Errorf("second delivery %+v", second)
	}
	if err := conn.WriteJSON(map[string]any{"envelope_id": second.EnvelopeID}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	var env envelope
	for conn.ReadJSON(&env) == nil {
		if env.Type == "events_api" {
			t.Fatalf("sent again after its acknowledgement: %+v", env)
		}
	}
	if n := s.Redelivered(); n != int64(second.RetryAttempt) {
		t.Errorf("Redelivered() = %d, want %d", n, second.RetryAttempt)
	}

	// Without Redeliver, an event with nowhere to go is an error.
	plain := New(Options{})
	defer plain.Close()
	if _, err := plain.SendEvent(EventOptions{}, AppMention("C1", "U1", "hi", plain.NextTS(), "")); !errors.Is(err, ErrNotConnected) {
		t.Errorf("no connection, no redelivery: %v", err)
	}
}

package discordtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type frame struct {
	Op int             `json:"op"`
	D  json.RawMessage `json:"d"`
	S  int64           `json:"s"`
	T  string          `json:"t"`
}

func dial(t testing.TB, s *Server) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(s.GatewayURL()+"/?v=10&encoding=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *websocket.Conn) frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

func do(t *testing.T, s *Server, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	} else {
		r = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, s.APIURL()+strings.TrimPrefix(path, "/"), r)
	req.Header.Set("Authorization", "Bot "+s.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

func TestGatewayHandshakeDispatchAndResume(t *testing.T) {
	s := New(WithHeartbeatInterval(time.Second))
	defer s.Close()
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText, Name: "general"})

	c := dial(t, s)
	if f := read(t, c); f.Op != 10 || !strings.Contains(string(f.D), `"heartbeat_interval":1000`) {
		t.Fatalf("hello = %+v", f)
	}
	_ = c.WriteJSON(map[string]any{"op": 2, "d": map[string]any{"token": "Bot " + s.Token(), "intents": 37377}})
	ready := read(t, c)
	if ready.T != "READY" || ready.S != 1 {
		t.Fatalf("ready = %+v", ready)
	}
	var rd struct {
		SessionID   string `json:"session_id"`
		Application struct{ ID string }
		User        User
	}
	_ = json.Unmarshal(ready.D, &rd)
	if rd.SessionID == "" || rd.Application.ID != s.AppID() || rd.User.ID != s.Bot().ID {
		t.Fatalf("ready data = %s", ready.D)
	}
	if gc := read(t, c); gc.T != "GUILD_CREATE" || !strings.Contains(string(gc.D), `"general"`) {
		t.Fatalf("guild create = %+v", gc)
	}
	_ = c.WriteJSON(map[string]any{"op": 1, "d": 2})
	if ack := read(t, c); ack.Op != 11 {
		t.Fatalf("heartbeat ack = %+v", ack)
	}
	if got := s.Identifies(); len(got) != 1 || got[0].Intents != 37377 {
		t.Fatalf("identifies = %+v", got)
	}

	m, err := s.PostUserMessage(MessageSpec{ChannelID: "200", GuildID: "300", Author: User{ID: "1", Username: "ann"}, Content: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	mc := read(t, c)
	if mc.T != "MESSAGE_CREATE" || mc.S != 3 || !strings.Contains(string(mc.D), `"member"`) {
		t.Fatalf("message create = %+v %s", mc, mc.D)
	}

	// Drop the connection, post while it is down, resume: the event is replayed.
	s.DropConnections()
	if err := s.WaitFor(2*time.Second, func() bool { return s.Connected() == 0 }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PostUserMessage(MessageSpec{ID: m.ID}); err != nil { // redelivery
		t.Fatal(err)
	}
	c2 := dial(t, s)
	read(t, c2) // hello
	_ = c2.WriteJSON(map[string]any{"op": 6, "d": map[string]any{"token": "Bot " + s.Token(), "session_id": rd.SessionID, "seq": 3}})
	if f := read(t, c2); f.T != "MESSAGE_CREATE" || f.S != 4 || !strings.Contains(string(f.D), m.ID) {
		t.Fatalf("replayed = %+v", f)
	}
	if f := read(t, c2); f.T != "RESUMED" {
		t.Fatalf("resumed = %+v", f)
	}
	// Unknown session: op 9.
	c3 := dial(t, s)
	read(t, c3)
	_ = c3.WriteJSON(map[string]any{"op": 6, "d": map[string]any{"token": "Bot " + s.Token(), "session_id": "nope", "seq": 1}})
	if f := read(t, c3); f.Op != 9 {
		t.Fatalf("invalid session = %+v", f)
	}
}

func TestRESTMessagesAndRateLimit(t *testing.T) {
	s := New(WithRateLimit(2, time.Second), WithEchoOwnMessages(false))
	defer s.Close()
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText})

	resp, body := do(t, s, "POST", "/channels/200/messages", map[string]any{"content": "one"})
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "1" || resp.Header.Get("X-RateLimit-Bucket") == "" {
		t.Fatalf("post: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	var m struct{ ID string }
	_ = json.Unmarshal(body, &m)
	resp, body = do(t, s, "PATCH", "/channels/200/messages/"+m.ID, map[string]any{"content": "uno", "components": []any{}})
	if resp.StatusCode != 200 {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, s, "PATCH", "/channels/200/messages/"+m.ID, map[string]any{"content": "dos"})
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"retry_after"`) || resp.Header.Get("X-RateLimit-Reset-After") == "" {
		t.Fatalf("over limit: %d %s", resp.StatusCode, body)
	}
	if got, _ := s.Message(m.ID); got.Content != "uno" || got.Edits != 1 {
		t.Fatalf("stored = %+v", got)
	}
	if s.Stats().RateLimited != 1 {
		t.Fatalf("stats = %v", s.Stats())
	}
	s.SetRateLimit(0, 0)
	resp, body = do(t, s, "POST", "/channels/200/messages", map[string]any{"content": strings.Repeat("x", 2001)})
	if resp.StatusCode != 400 || !strings.Contains(string(body), "50035") {
		t.Fatalf("too long: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, s, "POST", "/channels/200/messages", map[string]any{"content": " "})
	if resp.StatusCode != 400 {
		t.Fatalf("empty: %d", resp.StatusCode)
	}
	resp, body = do(t, s, "POST", "/channels/200/messages/"+m.ID+"/threads", map[string]any{"name": "topic"})
	if resp.StatusCode != 201 || !strings.Contains(string(body), `"parent_id":"200"`) {
		t.Fatalf("thread: %d %s", resp.StatusCode, body)
	}
	if th := s.Threads(); len(th) != 1 || th[0].ID != m.ID {
		t.Fatalf("threads = %+v", th)
	}
	resp, _ = do(t, s, "GET", "/channels/404/messages/1", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("unknown: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", s.APIURL()+"users/@me", nil)
	r2, _ := http.DefaultClient.Do(req)
	r2.Body.Close()
	if r2.StatusCode != 401 {
		t.Fatalf("no auth: %d", r2.StatusCode)
	}
}

func TestCallHook(t *testing.T) {
	calls := make(chan Call, 10)
	s := New(WithRateLimit(1, time.Minute), WithEchoOwnMessages(false), WithCallHook(func(c Call) { calls <- c }))
	defer s.Close()
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText})
	before := time.Now()
	resp, body := do(t, s, "POST", "/channels/200/messages", map[string]any{"content": "one"})
	if resp.StatusCode != 200 {
		t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	do(t, s, "POST", "/channels/200/messages", map[string]any{"content": "two"})
	do(t, s, "GET", "/users/@me", nil)
	want := []struct {
		method, route, channel, content string
		status                          int
	}{
		{"POST", "/channels/{channel}/messages", "200", "one", 200},
		{"POST", "/channels/{channel}/messages", "200", "two", 429},
		{"GET", "/users/@me", "", "", 200},
	}
	for i, w := range want {
		c := <-calls
		content := ""
		if c.Content != nil {
			content = *c.Content
		}
		if c.Method != w.method || c.Route != w.route || c.Channel != w.channel || content != w.content || c.Status != w.status || c.Time.Before(before) {
			t.Errorf("call %d = %+v (content %q)", i, c, content)
		}
	}
	if m := s.Messages("200"); len(m) != 1 || m[0].Content != "one" {
		t.Errorf("the hook changed what was stored: %+v", m)
	}
}

func TestInteractionLifecycle(t *testing.T) {
	s := New(WithInteractionDeadline(300*time.Millisecond, time.Minute))
	defer s.Close()
	c := dial(t, s)
	read(t, c)
	_ = c.WriteJSON(map[string]any{"op": 2, "d": map[string]any{"token": s.Token(), "intents": 1}})
	read(t, c) // READY
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText})
	ref, err := s.Interact(InteractionSpec{Type: InteractionApplicationCommand, GuildID: "300", ChannelID: "200",
		User: User{ID: "1", Username: "ann"}, Command: "ask", Options: []CommandOption{{Name: "prompt", Type: 3, Value: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	f := read(t, c)
	for f.T != "INTERACTION_CREATE" {
		f = read(t, c)
	}
	if !strings.Contains(string(f.D), `"channel":{`) || !strings.Contains(string(f.D), ref.Token) {
		t.Fatalf("interaction = %s", f.D)
	}
	cb := fmt.Sprintf("/interactions/%s/%s/callback", ref.ID, ref.Token)
	if resp, body := do(t, s, "POST", cb, map[string]any{"type": 5}); resp.StatusCode != 204 {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, s, "POST", cb, map[string]any{"type": 5}); resp.StatusCode != 400 {
		t.Fatalf("second callback: %d", resp.StatusCode)
	}
	orig, ok := s.OriginalResponse(ref.ID)
	if !ok || orig.Flags&FlagLoading == 0 {
		t.Fatalf("original = %+v", orig)
	}
	path := fmt.Sprintf("/webhooks/%s/%s/messages/@original", s.AppID(), ref.Token)
	if resp, body := do(t, s, "PATCH", path, map[string]any{"content": "> hi"}); resp.StatusCode != 200 {
		t.Fatalf("edit original: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, s, "POST", fmt.Sprintf("/webhooks/%s/%s?wait=true", s.AppID(), ref.Token), map[string]any{"content": "more", "flags": 64}); resp.StatusCode != 200 {
		t.Fatalf("followup: %d %s", resp.StatusCode, body)
	}
	msgs := s.Messages("200")
	if len(msgs) != 2 || msgs[0].Content != "> hi" || !msgs[1].Ephemeral() {
		t.Fatalf("messages = %+v", msgs)
	}
	// A late callback is refused as on Discord.
	late, _ := s.Interact(InteractionSpec{Type: InteractionApplicationCommand, GuildID: "300", ChannelID: "200", User: User{ID: "1"}, Command: "help"})
	time.Sleep(350 * time.Millisecond)
	if resp, _ := do(t, s, "POST", fmt.Sprintf("/interactions/%s/%s/callback", late.ID, late.Token), map[string]any{"type": 5}); resp.StatusCode != 404 {
		t.Fatalf("late callback: %d", resp.StatusCode)
	}
}

func TestCloseNeverHangs(t *testing.T) {
	s := New()
	c := dial(t, s)
	read(t, c)
	done := make(chan struct{})
	go func() { s.Close(); s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
}

// TestMessageWireFormat pins the message object's fields, nulls and
// omissions, as Discord sends them.
func TestMessageWireFormat(t *testing.T) {
	s := New()
	defer s.Close()
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText})
	ann := User{ID: "1", Username: "ann", GlobalName: "Ann"}
	gone, _ := s.PostUserMessage(MessageSpec{ChannelID: "200", GuildID: "300", Author: ann, Content: "gone"})
	s.ForgetMessages(gone.ID)
	m, _ := s.PostUserMessage(MessageSpec{ChannelID: "200", GuildID: "300", Author: ann, Nick: "annie", Content: "hi <@2>",
		Mentions: []User{{ID: "2", Username: "bot", Bot: true}}, ReplyTo: gone.ID})
	ts := m.Created.UTC().Format(timestampLayout)
	user := func(id, name string, global any, bot bool) map[string]any {
		u := map[string]any{"id": id, "username": name, "discriminator": "0", "avatar": nil, "global_name": global, "public_flags": 0}
		if bot {
			u["bot"] = true
		}
		return u
	}
	want := map[string]any{
		"id": m.ID, "channel_id": "200", "guild_id": "300", "author": user("1", "ann", "Ann", false), "content": "hi <@2>",
		"timestamp": ts, "edited_timestamp": nil, "tts": false, "mention_everyone": false,
		"mentions": []any{user("2", "bot", nil, true)}, "mention_roles": []any{}, "attachments": []any{}, "embeds": []any{},
		"components": []any{}, "pinned": false, "type": MessageReply, "flags": 0,
		"message_reference":  map[string]any{"type": 0, "message_id": gone.ID, "channel_id": "200", "guild_id": "300"},
		"referenced_message": nil,
	}
	check := func(name string, got *messageObject, want map[string]any) {
		t.Helper()
		var g any
		_ = json.Unmarshal(got.encode(), &g)
		gb, _ := json.Marshal(g) // keys sorted, as for want
		if wb, _ := json.Marshal(want); string(gb) != string(wb) {
			t.Errorf("%s:\n got %s\nwant %s", name, gb, wb)
		}
	}
	s.mu.Lock()
	rest, gateway := s.messageJSONLocked(s.byID[m.ID], true, false), s.messageJSONLocked(s.byID[m.ID], true, true)
	s.mu.Unlock()
	check("REST", rest, want)
	want["member"] = map[string]any{"roles": []any{}, "joined_at": "2024-01-01T00:00:00+00:00", "deaf": false, "mute": false,
		"flags": 0, "pending": false, "nick": "annie"}
	check("gateway", gateway, want)
}

// With WithEchoOwnEdits, the bot's edits come back as MESSAGE_UPDATE with
// the edited message, after the PATCH is answered; without it, nothing.
func TestEchoOwnEdits(t *testing.T) {
	for _, on := range []bool{true, false} {
		s := New(WithEchoOwnEdits(on), WithEchoOwnMessages(false))
		s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText, Name: "general"})
		c := dial(t, s)
		read(t, c) // hello
		_ = c.WriteJSON(map[string]any{"op": 2, "d": map[string]any{"token": "Bot " + s.Token(), "intents": 37377}})
		read(t, c) // READY
		read(t, c) // GUILD_CREATE
		_, body := do(t, s, "POST", "/channels/200/messages", map[string]any{"content": "one"})
		var m struct{ ID string }
		_ = json.Unmarshal(body, &m)
		if resp, _ := do(t, s, "PATCH", "/channels/200/messages/"+m.ID, map[string]any{"content": "one two"}); resp.StatusCode != 200 {
			t.Fatalf("edit: %d", resp.StatusCode)
		}
		_ = c.WriteJSON(map[string]any{"op": 1, "d": 3})
		f := read(t, c)
		if on && f.Op == 11 { // the echo goes out from a queue: the ACK may come first
			f = read(t, c)
		}
		if on && (f.T != "MESSAGE_UPDATE" || !strings.Contains(string(f.D), `"content":"one two"`) || !strings.Contains(string(f.D), m.ID)) {
			t.Fatalf("with echo: %+v %s", f, f.D)
		}
		if !on && f.Op != 11 {
			t.Fatalf("without echo, the next frame is %+v %s", f, f.D)
		}
		s.Close()
	}
}

// GET /gateway/bot reports the session start limit, which each IDENTIFY
// accepted counts down; an IDENTIFY within its bucket's window gets
// INVALID_SESSION, and one with no start left ends every session with 4004.
func TestSessionStartLimit(t *testing.T) {
	s := New(WithSessionStartLimit(SessionStartLimit{Total: 5, Remaining: 2, ResetAfter: time.Hour, MaxConcurrency: 3}),
		WithIdentifyWindow(time.Hour))
	defer s.Close()
	type startLimit struct {
		Total          int `json:"total"`
		Remaining      int `json:"remaining"`
		ResetAfter     int `json:"reset_after"`
		MaxConcurrency int `json:"max_concurrency"`
	}
	limit := func() startLimit {
		t.Helper()
		_, body := do(t, s, "GET", "/gateway/bot", nil)
		var gb struct {
			URL   string
			Limit startLimit `json:"session_start_limit"`
		}
		if err := json.Unmarshal(body, &gb); err != nil || gb.URL != s.GatewayURL() {
			t.Fatalf("GET /gateway/bot = %s", body)
		}
		return gb.Limit
	}
	if l := limit(); l.Total != 5 || l.Remaining != 2 || l.MaxConcurrency != 3 || l.ResetAfter <= 3500_000 || l.ResetAfter > 3600_000 {
		t.Fatalf("session_start_limit = %+v", l)
	}
	identify := func(shard int) *websocket.Conn {
		c := dial(t, s)
		read(t, c) // hello
		_ = c.WriteJSON(map[string]any{"op": 2, "d": map[string]any{"token": s.Token(), "intents": 1, "shard": [2]int{shard, 4}}})
		return c
	}
	// Shards 0 and 1 are in buckets 0 and 1 (of 3): both start.
	for shard := range 2 {
		if f := read(t, identify(shard)); f.T != "READY" {
			t.Fatalf("shard %d: %+v", shard, f)
		}
	}
	if l := limit(); l.Remaining != 0 {
		t.Fatalf("remaining after two starts = %d", l.Remaining)
	}
	// Shard 3 shares bucket 0 with shard 0, within the window.
	if f := read(t, identify(3)); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("too fast: %+v", f)
	}
	// Shard 2's bucket is free, but no start is left: the token is reset.
	c := identify(2)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 4004) {
		t.Fatalf("over the limit: %v", err)
	}
	if err := s.WaitFor(5*time.Second, func() bool { return s.Connected() == 0 }); err != nil {
		t.Fatal("sessions kept after the token reset")
	}
	st := s.Stats()
	if st.Identifies != 2 || st.IdentifiesTooFast != 1 || st.StartsExceeded != 1 || len(s.Identifies()) != 2 {
		t.Fatalf("stats = %+v", st)
	}
	// Once the limit resets, the total is back.
	s.SetSessionStartLimit(0, 0)
	if l := limit(); l.Remaining != 5 || l.ResetAfter <= 86_000_000 {
		t.Fatalf("after the reset: %+v", l)
	}
}

// Command registration takes contexts and integration_types as Discord
// does, and refuses values outside their enums.
func TestCommandContexts(t *testing.T) {
	s := New()
	defer s.Close()
	path := "/applications/" + s.AppID() + "/commands"
	ok := map[string]any{"name": "ask", "description": "Ask", "contexts": []int{0, 1}, "integration_types": []int{0}}
	if resp, body := do(t, s, "PUT", path, []any{ok}); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"contexts":[0,1]`) {
		t.Fatalf("PUT = %d %s", resp.StatusCode, body)
	}
	for field, bad := range map[string]any{"contexts": []int{0, 3}, "integration_types": []any{"guild"}} {
		cmd := map[string]any{"name": "ask", "description": "Ask", field: bad}
		resp, body := do(t, s, "PUT", path, []any{cmd})
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"0.`+field+`.`) || !strings.Contains(string(body), "ENUM_TYPE_COERCE") {
			t.Fatalf("%s %v: %d %s", field, bad, resp.StatusCode, body)
		}
	}
}

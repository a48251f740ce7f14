package discordtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkPostAndEdit measures one streamed answer's step over loopback, as
// the Discord adapter makes it: a reply posted with a Stop button, then
// edited. A gateway session is connected, so the post is echoed as
// MESSAGE_CREATE. The client's work is included.
func BenchmarkPostAndEdit(b *testing.B) {
	s := New()
	defer s.Close()
	s.AddChannel(Channel{ID: "200", GuildID: "300", Type: ChannelText, Name: "general"})
	c := dial(b, s)
	_ = c.WriteJSON(map[string]any{"op": 2, "d": map[string]any{"token": "Bot " + s.Token(), "intents": 37377}})
	go func() { // drain the gateway
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := s.WaitConnected(1, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	user, err := s.PostUserMessage(MessageSpec{ChannelID: "200", GuildID: "300", Content: "<@" + s.Bot().ID + "> explain",
		Author: User{ID: "600000000000000001", Username: "alice", GlobalName: "Alice"}, Mentions: []User{s.Bot()}})
	if err != nil {
		b.Fatal(err)
	}
	comps := `[{"type":1,"components":[{"type":2,"label":"Stop","style":4,"custom_id":"stop:abc"}]}]`
	text := strings.Repeat("Streaming answer text. ", 20)
	post := []byte(`{"content":"` + text + ` ▌","components":` + comps + `,"allowed_mentions":{"parse":[]},` +
		`"message_reference":{"message_id":"` + user.ID + `","channel_id":"200","fail_if_not_exists":false}}`)
	patch := []byte(`{"content":"` + text + text + ` ▌","components":` + comps + `,"allowed_mentions":{"parse":[]}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	call := func(method, path string, body []byte) []byte {
		req, _ := http.NewRequest(method, s.APIURL()+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bot "+s.Token())
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
		return out
	}
	b.ReportAllocs()
	for b.Loop() {
		var m struct{ ID string }
		if err := json.Unmarshal(call("POST", "channels/200/messages", post), &m); err != nil {
			b.Fatal(err)
		}
		call("PATCH", "channels/200/messages/"+m.ID, patch)
	}
}

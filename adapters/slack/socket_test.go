package slack

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// An envelope read off a connection that closes before its ack can be
// written is still handled: the connection's end must not lose the event
// (Slack sends it again if unacknowledged, and the engine drops repeats).
func TestEnvelopeHandledWhenAckFails(t *testing.T) {
	e := setup(t, newScripted(), nil)
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err == nil {
			_ = c.Close()
		}
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close() // every write, the ack among them, now fails

	ts := e.fs.NextTS()
	payload, err := json.Marshal(map[string]any{
		"token": "unused", "team_id": e.fs.TeamID(), "api_app_id": slacktest.DefaultAppID, "type": "event_callback",
		"event_id": "EvAckFails", "event_time": time.Now().Unix(),
		"event": slacktest.AppMention("C1", "U1", "<@UBOT> are you there?", ts, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.a.onEnvelope(conn, envelope{Type: "events_api", EnvelopeID: "env-1", Payload: payload}); err == nil {
		t.Fatal("the failed ack was not reported")
	}
	if msgs := e.final("C1", ts); msgs[0].Visible() != "Answer to: are you there?" {
		t.Fatalf("answer = %+v", msgs)
	}
}

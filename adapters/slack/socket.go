package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/metrics"
)

// The Socket Mode client. slack-go's socketmode.Client decodes each
// envelope four times (the frame, the request, slackevents' outer and typed
// inner event) and passes it through three goroutines before the adapter
// sees it; Slack sends a bot its own posts and edits too, about five
// envelopes per streamed answer (docs/decisions.md). This client reads each
// frame once into an envelope whose payload stays raw, hands the payload to
// the same handlers as the HTTP Events API, and acknowledges it once they
// have taken it (an envelope they could not take is left for Slack to
// redeliver).

const (
	// socketPingGap is how long a connection may stay silent (Slack pings
	// every few seconds) before it counts as dead; slack-go waits as long.
	socketPingGap = 30 * time.Second
	// socketWriteTimeout bounds an acknowledgement or a pong.
	socketWriteTimeout = 10 * time.Second
	// socketReadLimit caps one frame; Slack's envelopes are a few KB, an
	// interaction payload with a large message some tens.
	socketReadLimit = 4 << 20
	// socketMaxBackoff caps the wait between failed connection attempts.
	socketMaxBackoff = 30 * time.Second
	// socketRetireAfter bounds how long a connection Slack asked to
	// replace keeps serving beside its successor; Slack closes it sooner.
	socketRetireAfter = 20 * time.Second
)

// errTooManySockets ends a connection Slack closed because the app has
// more Socket Mode connections than it allows (10).
var errTooManySockets = errors.New("slack refused another socket mode connection (too_many_websockets: at most 10 per app, counting every replica's)")

// envelope is one Socket Mode message, its payload left undecoded.
type envelope struct {
	Type         string          `json:"type"`
	EnvelopeID   string          `json:"envelope_id"`
	Payload      json.RawMessage `json:"payload"`
	RetryAttempt int             `json:"retry_attempt"`
	Reason       string          `json:"reason"` // of a disconnect
}

// ackMessage acknowledges an envelope, with a response payload for a
// slash command.
type ackMessage struct {
	EnvelopeID string `json:"envelope_id"`
	Payload    any    `json:"payload,omitempty"`
}

// runSocket keeps a Socket Mode connection open until ctx ends,
// reconnecting when the connection breaks. When Slack asks for a new
// connection (a disconnect message, sent some seconds before it closes the
// old one), the next one opens at once while the old one keeps serving
// until Slack closes it, so no event waits for a connection. It returns an
// error only when Slack refuses the app token, which no retry mends.
func (a *Adapter) runSocket(ctx context.Context) error {
	var retiring sync.WaitGroup
	defer retiring.Wait()
	backoff := time.Second
	for {
		began := time.Now()
		replaced := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() { done <- a.socketSession(ctx, func() { once.Do(func() { close(replaced) }) }) }()
		var err error
		select {
		case <-replaced:
			retiring.Add(1)
			go func() {
				defer retiring.Done()
				a.log.Debug("socket mode: retired connection closed", "err", <-done)
			}()
			continue
		case err = <-done:
		}
		a.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if wait, limited := rateLimited(err); limited {
			metrics.PlatformCall("slack", "apps.connections.open", "ratelimited")
			backoff = max(backoff, wait)
		} else if refused(err) {
			metrics.PlatformCall("slack", "apps.connections.open", "error")
			return fmt.Errorf("slack socket mode: %w (check slack.app_token: an xapp-… token with connections:write, and Socket Mode enabled for the app)", err)
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second // the last connection served a while
		}
		a.log.Warn("socket mode connection lost; reconnecting", "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, socketMaxBackoff)
	}
}

// refused reports whether apps.connections.open refused the token itself.
func refused(err error) bool {
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) {
		return false
	}
	switch se.Err {
	case "invalid_auth", "not_authed", "not_allowed_token_type", "account_inactive", "token_revoked", "token_expired", "missing_scope", "no_permission":
		return true
	}
	return false
}

// socketSession opens one connection and serves it until it breaks or ctx
// ends. When Slack sends a disconnect it calls replace, and serves on until
// Slack closes the connection or socketRetireAfter passes.
func (a *Adapter) socketSession(ctx context.Context, replace func()) error {
	_, url, err := a.api.StartSocketModeContext(ctx)
	if err != nil {
		return err
	}
	metrics.PlatformCall("slack", "apps.connections.open", "ok")
	dialer := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: socketPingGap}
	conn, resp, err := dialer.DialContext(ctx, url, http.Header{"Origin": {"https://api.slack.com"}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { _ = conn.Close() })() // unblocks the read at shutdown
	conn.SetReadLimit(socketReadLimit)
	var retireBy time.Time // set once Slack asked to replace the connection
	alive := func() {
		deadline := time.Now().Add(socketPingGap)
		if !retireBy.IsZero() && retireBy.Before(deadline) {
			deadline = retireBy
		}
		_ = conn.SetReadDeadline(deadline)
	}
	alive()
	conn.SetPingHandler(func(data string) error {
		alive()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(socketWriteTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			a.log.Debug("socket mode pong failed", "err", err)
		}
		return nil
	})
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		alive()
		var env envelope
		if err := json.Unmarshal(frame, &env); err != nil {
			a.log.Warn("unreadable socket mode message", "err", err)
			continue
		}
		if err := a.onEnvelope(conn, env); err != nil {
			return err
		}
		if env.Type == "disconnect" {
			if env.Reason == "too_many_websockets" {
				return errTooManySockets
			}
			if retireBy.IsZero() {
				a.log.Info("socket mode: Slack is replacing the connection; opening the next", "reason", env.Reason)
				retireBy = time.Now().Add(socketRetireAfter)
				alive()
				replace()
			}
		}
	}
}

// onEnvelope acknowledges and handles one envelope; an error means the
// connection failed.
func (a *Adapter) onEnvelope(conn *websocket.Conn, env envelope) error {
	switch env.Type {
	case "hello":
		a.ready.Store(true)
		a.log.Info("socket mode connected")
		return nil
	case "slash_commands":
		var cmd slack.SlashCommand
		if err := json.Unmarshal(env.Payload, &cmd); err != nil {
			a.log.Warn("unreadable slash command", "err", err)
			return ack(conn, env.EnvelopeID, nil)
		}
		var payload any
		if refusal := a.onSlash(cmd); refusal != "" {
			payload = map[string]string{"response_type": "ephemeral", "text": refusal}
		}
		return ack(conn, env.EnvelopeID, payload)
	}
	// An envelope is acknowledged once the adapter took its work (or found
	// none in it): one it could not take (queue full, shutting down) stays
	// unacknowledged, and Slack delivers it again, perhaps to another
	// connection. An envelope taken is handled even when its ack can't be
	// written (the connection closing under it): Slack then sends it
	// again, and the engine drops the repeat.
	taken := true
	switch env.Type {
	case "events_api":
		taken = a.onEvent(env.Payload, env.RetryAttempt)
	case "interactive":
		var cb slack.InteractionCallback
		if jerr := json.Unmarshal(env.Payload, &cb); jerr != nil {
			a.log.Warn("unreadable interaction", "err", jerr)
			break
		}
		taken = a.onInteraction(cb)
	}
	if !taken {
		a.log.Debug("socket mode: envelope left unacknowledged for Slack to deliver again", "type", env.Type, "retry_attempt", env.RetryAttempt)
		return nil
	}
	if env.EnvelopeID != "" {
		return ack(conn, env.EnvelopeID, nil)
	}
	return nil
}

// ack acknowledges an envelope, from the connection's reading goroutine
// (the only one that writes frames; pongs are control frames).
func ack(conn *websocket.Conn, envelopeID string, payload any) error {
	b, err := json.Marshal(ackMessage{EnvelopeID: envelopeID, Payload: payload})
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(socketWriteTimeout))
	return conn.WriteMessage(websocket.TextMessage, b)
}

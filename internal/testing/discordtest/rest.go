package discordtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/arkbot/arkbot/internal/testing/arrival"
)

var apiPrefix = regexp.MustCompile(`^/api/v\d+`)

// routes builds the server's handler: the gateway websocket, attachments,
// and the REST API under /api/v{N}.
func (s *Server) routes() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /gateway", s.rest(false, s.getGateway))
	api.HandleFunc("GET /gateway/bot", s.rest(true, s.getGatewayBot))
	api.HandleFunc("GET /users/@me", s.rest(true, s.getMe))
	api.HandleFunc("GET /users/@me/guilds", s.rest(true, s.getMyGuilds))
	api.HandleFunc("GET /oauth2/applications/@me", s.rest(true, s.getApplication))
	api.HandleFunc("GET /applications/@me", s.rest(true, s.getApplication))
	api.HandleFunc("PUT /applications/{app}/commands", s.rest(true, s.putCommands))
	api.HandleFunc("PUT /applications/{app}/guilds/{guild}/commands", s.rest(true, s.putCommands))
	api.HandleFunc("POST /interactions/{id}/{token}/callback", s.rest(false, s.postCallback))
	api.HandleFunc("GET /webhooks/{app}/{token}/messages/{msg}", s.rest(false, s.webhookMessage))
	api.HandleFunc("PATCH /webhooks/{app}/{token}/messages/{msg}", s.rest(false, s.webhookMessage))
	api.HandleFunc("DELETE /webhooks/{app}/{token}/messages/{msg}", s.rest(false, s.webhookMessage))
	api.HandleFunc("POST /webhooks/{app}/{token}", s.rest(false, s.postFollowup))
	api.HandleFunc("GET /channels/{channel}", s.rest(true, s.getChannel))
	api.HandleFunc("POST /channels/{channel}/messages", s.rest(true, s.postMessage))
	api.HandleFunc("GET /channels/{channel}/messages/{msg}", s.rest(true, s.getMessage))
	api.HandleFunc("PATCH /channels/{channel}/messages/{msg}", s.rest(true, s.patchMessage))
	api.HandleFunc("DELETE /channels/{channel}/messages/{msg}", s.rest(true, s.deleteMessage))
	api.HandleFunc("POST /channels/{channel}/messages/{msg}/threads", s.rest(true, s.postMessageThread))
	api.HandleFunc("POST /channels/{channel}/threads", s.rest(true, s.postThread))
	api.HandleFunc("POST /channels/{channel}/typing", s.rest(true, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.count(r.Method + " (unknown) " + r.URL.Path)
		writeError(w, http.StatusNotFound, 0, "404: Not Found")
	})

	root := http.NewServeMux()
	root.HandleFunc("/ws", s.serveGateway)
	root.HandleFunc("/ws/", s.serveGateway)
	root.HandleFunc("GET /attachments/", s.getAttachment)
	root.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		loc := apiPrefix.FindString(r.URL.Path)
		if loc == "" {
			writeError(w, http.StatusNotFound, 0, "404: Not Found")
			return
		}
		// A shallow copy with its own URL, as http.StripPrefix makes.
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = strings.TrimPrefix(r.URL.Path, loc)
		u.RawPath = ""
		r2.URL = &u
		api.ServeHTTP(w, r2)
	})
	return root
}

// rest wraps a REST handler: counts it by route, checks the bot token when
// auth is set, and adds default rate-limit headers.
func (s *Server) rest(auth bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.onCall != nil {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			w = sw
			call := Call{Time: arrival.Time(r), Handled: time.Now(), Header: r.Header, Method: r.Method, Route: strings.TrimPrefix(r.Pattern, r.Method+" "), Channel: r.PathValue("channel")}
			if body, err := readAll(r); err == nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
				var b struct {
					Content   *string `json:"content"`
					Reference *struct {
						MessageID string `json:"message_id"`
					} `json:"message_reference"`
				}
				if json.Unmarshal(body, &b) == nil {
					call.Content = b.Content
					if b.Reference != nil {
						call.ReplyTo = b.Reference.MessageID
					}
				}
			}
			defer func() {
				call.Status = sw.status
				s.onCall(call)
			}()
		}
		s.count(r.Method + " " + strings.TrimPrefix(r.Pattern, r.Method+" "))
		if auth && r.Header.Get("Authorization") != "Bot "+s.token {
			writeError(w, http.StatusUnauthorized, 0, "401: Unauthorized")
			return
		}
		if w.Header().Get("X-RateLimit-Limit") == "" {
			setRateHeaders(w, 1000, 999, time.Second, bucketHash(r.Pattern))
		}
		h(w, r)
	}
}

// statusWriter remembers the status a handler answered, for WithCallHook.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.stats.Requests[route]++
	s.mu.Unlock()
}

func bucketHash(route string) string {
	h := fnv.New64a()
	h.Write([]byte(route))
	return fmt.Sprintf("%016x", h.Sum64())
}

// setRateHeaders sets the X-RateLimit-* headers. It writes the canonical
// keys, those Header.Set would make, straight into the map.
func setRateHeaders(w http.ResponseWriter, limit, remaining int, resetAfter time.Duration, bucket string) {
	h := w.Header()
	v := []string{
		strconv.Itoa(limit),
		strconv.Itoa(remaining),
		strconv.FormatFloat(float64(time.Now().Add(resetAfter).UnixMilli())/1000, 'f', 3, 64),
		strconv.FormatFloat(resetAfter.Seconds(), 'f', 3, 64),
		bucket,
	}
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	h["X-Ratelimit-Reset-After"] = v[3:4:4]
	h["X-Ratelimit-Bucket"] = v[4:5:5]
}

// limitChannel applies the per-channel message limit. It writes a 429 and
// returns false when the channel is over its budget.
func (s *Server) limitChannel(w http.ResponseWriter, channelID string) bool {
	s.mu.Lock()
	if inj := s.injected[channelID]; inj.n > 0 {
		inj.n--
		s.injected[channelID] = inj
		s.stats.RateLimited++
		s.mu.Unlock()
		write429(w, 5, inj.after, bucketHash("messages:"+channelID))
		return false
	}
	limit, win := s.rlLimit, s.rlWindow
	if limit <= 0 || win <= 0 {
		s.mu.Unlock()
		setRateHeaders(w, 1000, 999, time.Second, bucketHash("messages"))
		return true
	}
	now := time.Now()
	wd := s.windows[channelID]
	if wd == nil || now.Sub(wd.start) >= win {
		wd = &window{start: now}
		s.windows[channelID] = wd
	}
	resetAfter := win - now.Sub(wd.start)
	bucket := bucketHash("messages:" + channelID)
	if wd.count >= limit {
		s.stats.RateLimited++
		s.mu.Unlock()
		write429(w, limit, resetAfter, bucket)
		return false
	}
	wd.count++
	remaining := limit - wd.count
	s.mu.Unlock()
	setRateHeaders(w, limit, remaining, resetAfter, bucket)
	return true
}

func write429(w http.ResponseWriter, limit int, retryAfter time.Duration, bucket string) {
	setRateHeaders(w, limit, 0, retryAfter, bucket)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	w.Header().Set("X-RateLimit-Scope", "user")
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"message": "You are being rate limited.", "retry_after": math.Round(retryAfter.Seconds()*1000) / 1000, "global": false,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeEncoded is writeJSON for a value json.Marshal has encoded.
func writeEncoded(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg, "code": code})
}

func writeFormError(w http.ResponseWriter, field, code, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"code": 50035, "message": "Invalid Form Body",
		"errors": map[string]any{field: map[string]any{"_errors": []any{map[string]string{"code": code, "message": msg}}}},
	})
}

// readAll reads a request's body, at most 1 MiB of it, as io.ReadAll does but
// in one allocation when the Content-Length is known.
func readAll(r *http.Request) ([]byte, error) {
	const limit = 1 << 20
	if n := r.ContentLength; n > 0 && n <= limit {
		b := make([]byte, n)
		k, err := io.ReadFull(r.Body, b)
		return b[:k], err
	}
	return io.ReadAll(io.LimitReader(r.Body, limit))
}

func readBody(r *http.Request, v any) error {
	b, err := readAll(r)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// checkContent validates message content as Discord does.
func checkContent(w http.ResponseWriter, content string, hasOther bool) bool {
	if n := utf8.RuneCountInString(content); n > 2000 {
		writeFormError(w, "content", "BASE_TYPE_MAX_LENGTH", fmt.Sprintf("Must be 2000 or fewer in length. (got %d)", n))
		return false
	}
	if strings.TrimSpace(content) == "" && !hasOther {
		writeError(w, http.StatusBadRequest, 50006, "Cannot send an empty message")
		return false
	}
	return true
}

// hasComponents reports whether raw, a JSON value as decoded from a request
// body (so valid, and without surrounding space), is a non-empty array.
func hasComponents(raw json.RawMessage) bool {
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	rest := bytes.TrimLeft(raw[1:], " \t\r\n")
	return len(rest) > 0 && rest[0] != ']'
}

func (s *Server) getGateway(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"url": s.GatewayURL()})
}

func (s *Server) getGatewayBot(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	l := s.sessionStartLimitLocked(time.Now())
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"url": s.GatewayURL(), "shards": s.shards,
		"session_start_limit": map[string]int{"total": l.Total, "remaining": l.Remaining,
			"reset_after": int(l.ResetAfter.Milliseconds()), "max_concurrency": l.MaxConcurrency},
	})
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, userJSON(s.bot))
}

// getMyGuilds lists the guilds the bot is in as partial guild objects, by
// ID (limit, before and after are not needed by the bot's few guilds).
func (s *Server) getMyGuilds(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.guilds))
	for id := range s.guilds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		out = append(out, map[string]any{"id": id, "name": s.guilds[id], "icon": nil, "banner": nil, "owner": false,
			"permissions": "309237763072", "features": []string{}})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getApplication(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"id": s.appID, "name": s.bot.Username, "description": "", "bot_public": true,
		"bot_require_code_grant": false, "flags": s.appFlags, "bot": userJSON(s.bot),
	})
}

var commandName = regexp.MustCompile(`^[-_\p{Ll}\p{N}]{1,32}$`)

func (s *Server) putCommands(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("app") != s.appID {
		writeError(w, http.StatusForbidden, 50001, "Missing Access")
		return
	}
	var cmds []map[string]any
	if err := readBody(r, &cmds); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	guild := r.PathValue("guild")
	var stored []json.RawMessage
	for i, c := range cmds {
		name, _ := c["name"].(string)
		desc, _ := c["description"].(string)
		if !commandName.MatchString(name) {
			writeFormError(w, fmt.Sprintf("%d.name", i), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
			return
		}
		if n := utf8.RuneCountInString(desc); n < 1 || n > 100 {
			writeFormError(w, fmt.Sprintf("%d.description", i), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
			return
		}
		for _, f := range []struct {
			name string
			max  float64
		}{{"contexts", 2}, {"integration_types", 1}} {
			if at, bad := badEnumList(c[f.name], f.max); bad != "" {
				writeFormError(w, fmt.Sprintf("%d.%s%s", i, f.name, at), "ENUM_TYPE_COERCE", fmt.Sprintf("Value %q is not a valid enum value.", bad))
				return
			}
		}
		c["id"] = s.NewID()
		c["application_id"] = s.appID
		c["version"] = s.NewID()
		if guild != "" {
			c["guild_id"] = guild
		}
		b, _ := json.Marshal(c)
		stored = append(stored, b)
	}
	s.mu.Lock()
	s.commands[guild] = stored
	s.notifyLocked()
	s.mu.Unlock()
	if stored == nil {
		stored = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, stored)
}

// badEnumList checks a command's list of enum values (contexts: 0 guild, 1
// bot DM, 2 private channel; integration_types: 0 guild install, 1 user
// install), absent or null when the command takes Discord's default. It
// returns the offending value and where (".N"), or "" if the list is valid.
func badEnumList(v any, max float64) (at, bad string) {
	if v == nil {
		return "", ""
	}
	list, ok := v.([]any)
	if !ok {
		return "", fmt.Sprint(v)
	}
	for i, e := range list {
		if n, ok := e.(float64); !ok || n != math.Trunc(n) || n < 0 || n > max {
			return fmt.Sprintf(".%d", i), fmt.Sprint(e)
		}
	}
	return "", ""
}

type messageBody struct {
	Content          string          `json:"content"`
	Components       json.RawMessage `json:"components"`
	Embeds           json.RawMessage `json:"embeds"`
	Flags            int             `json:"flags"`
	MessageReference *struct {
		MessageID       string `json:"message_id"`
		FailIfNotExists *bool  `json:"fail_if_not_exists"`
	} `json:"message_reference"`
}

func (s *Server) postCallback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Type int `json:"type"`
		Data struct {
			messageBody
			Choices json.RawMessage `json:"choices"`
		} `json:"data"`
	}
	raw, _ := readAll(r)
	if err := json.Unmarshal(raw, &body); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	var rawData struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(raw, &rawData)

	s.mu.Lock()
	in, ok := s.interactions[r.PathValue("id")]
	if !ok || in.token != r.PathValue("token") {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10062, "Unknown interaction")
		return
	}
	after := time.Since(in.dispatched)
	if len(in.callbacks) > 0 {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 40060, "Interaction has already been acknowledged.")
		return
	}
	if after > s.callbackDeadline {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10062, "Unknown interaction")
		return
	}
	valid := false
	switch body.Type {
	case CallbackChannelMessage, CallbackDeferredChannelMessage:
		valid = in.kind == InteractionApplicationCommand || in.kind == InteractionMessageComponent
	case CallbackDeferredUpdate, CallbackUpdateMessage:
		valid = in.kind == InteractionMessageComponent
	case CallbackAutocompleteResult:
		valid = in.kind == InteractionAutocomplete
		var choices []json.RawMessage
		if json.Unmarshal(body.Data.Choices, &choices) == nil && len(choices) > 25 {
			s.mu.Unlock()
			writeFormError(w, "data.choices", "BASE_TYPE_BAD_LENGTH", "Must be between 0 and 25 in length.")
			return
		}
	}
	if !valid {
		s.mu.Unlock()
		writeFormError(w, "type", "INTERACTION_RESPONSE_TYPE_INVALID", fmt.Sprintf("Interaction response type %d is invalid here", body.Type))
		return
	}
	if body.Type == CallbackChannelMessage || body.Type == CallbackUpdateMessage {
		if utf8.RuneCountInString(body.Data.Content) > 2000 {
			s.mu.Unlock()
			writeFormError(w, "data.content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
			return
		}
	}
	in.callbacks = append(in.callbacks, Callback{Type: body.Type, Data: rawData.Data, After: after})
	var echo *messageObject
	switch body.Type {
	case CallbackChannelMessage, CallbackDeferredChannelMessage:
		m := &Message{
			ID: s.NewID(), ChannelID: in.channelID, GuildID: in.guildID, Author: s.bot,
			Type: MessageChatInputCommand, Flags: body.Data.Flags & FlagEphemeral, WebhookID: s.appID,
			InteractionID: in.id, Created: time.Now(),
		}
		if body.Type == CallbackDeferredChannelMessage {
			m.Flags |= FlagLoading
		} else {
			m.Content = body.Data.Content
			m.Components = body.Data.Components
		}
		in.originalID = m.ID
		s.storeLocked(m)
		if m.Flags&FlagEphemeral == 0 && s.echoOwn {
			echo = s.messageJSONLocked(m, true, true)
		}
	case CallbackUpdateMessage:
		if m, ok := s.byID[in.messageID]; ok {
			var e messageEdit
			_ = json.Unmarshal(rawData.Data, &e)
			applyEdit(m, e, e.text())
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	if echo != nil {
		s.echo(w, "MESSAGE_CREATE", echo.GuildID, echo.encode())
	}
}

// messageEdit is the body of a message edit, by field name. (A map, not a
// struct: the keys match exactly, not case-insensitively.)
type messageEdit map[string]json.RawMessage

// text is the content the edit stores: the string sent, or "" for null or a
// value that is not a string.
func (e messageEdit) text() string {
	var s string
	if c, ok := e["content"]; ok {
		_ = json.Unmarshal(c, &s)
	}
	return s
}

// applyEdit applies the fields present in an edit, whose text is e.text().
func applyEdit(m *Message, e messageEdit, text string) {
	if _, ok := e["content"]; ok {
		m.Content = text
	}
	if c, ok := e["components"]; ok {
		m.Components = c
	}
	m.Flags &^= FlagLoading
	m.Edits++
}

func (s *Server) webhookInteractionLocked(w http.ResponseWriter, r *http.Request) (*interaction, bool) {
	in, ok := s.byToken[r.PathValue("token")]
	if !ok || r.PathValue("app") != s.appID {
		writeError(w, http.StatusNotFound, 10015, "Unknown Webhook")
		return nil, false
	}
	if time.Since(in.dispatched) > s.tokenTTL {
		writeError(w, http.StatusUnauthorized, 50027, "Invalid Webhook Token")
		return nil, false
	}
	return in, true
}

func (s *Server) webhookMessage(w http.ResponseWriter, r *http.Request) {
	var e messageEdit
	if r.Method == http.MethodPatch {
		if err := readBody(r, &e); err != nil {
			writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
			return
		}
	}
	s.mu.Lock()
	in, ok := s.webhookInteractionLocked(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	id := r.PathValue("msg")
	if id == "@original" {
		id = in.originalID
	}
	m, ok := s.byID[id]
	if !ok || m.InteractionID != in.id || m.Deleted {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10008, "Unknown Message")
		return
	}
	switch r.Method {
	case http.MethodDelete:
		m.Deleted = true
		s.notifyLocked()
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPatch:
		text := e.text()
		if utf8.RuneCountInString(text) > 2000 {
			s.mu.Unlock()
			writeFormError(w, "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
			return
		}
		applyEdit(m, e, text)
		s.notifyLocked()
	}
	out := s.messageJSONLocked(m, true, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) postFollowup(w http.ResponseWriter, r *http.Request) {
	var body messageBody
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	if !checkContent(w, body.Content, hasComponents(body.Components) || hasComponents(body.Embeds)) {
		return
	}
	s.mu.Lock()
	in, ok := s.webhookInteractionLocked(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	if len(in.callbacks) == 0 {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10015, "Unknown Webhook")
		return
	}
	m := &Message{
		ID: s.NewID(), ChannelID: in.channelID, GuildID: in.guildID, Author: s.bot, Content: body.Content,
		Components: body.Components, Type: MessageChatInputCommand, Flags: body.Flags & FlagEphemeral,
		WebhookID: s.appID, InteractionID: in.id, Created: time.Now(),
	}
	s.storeLocked(m)
	// The bot's own message has no member: the REST and gateway renderings are one.
	out := s.messageJSONLocked(m, true, false)
	echo := m.Flags&FlagEphemeral == 0 && s.echoOwn
	s.mu.Unlock()
	b := out.encode()
	if r.URL.Query().Get("wait") == "true" {
		writeEncoded(w, http.StatusOK, b)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	if echo {
		s.echo(w, "MESSAGE_CREATE", out.GuildID, b)
	}
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c, ok := s.channels[r.PathValue("channel")]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10003, "Unknown Channel")
		return
	}
	out := s.channelJSONLocked(c)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// botChannelLocked finds a channel the bot may write to, or writes an error.
func (s *Server) botChannelLocked(w http.ResponseWriter, id string) (*Channel, bool) {
	c, ok := s.channels[id]
	if !ok {
		writeError(w, http.StatusNotFound, 10003, "Unknown Channel")
		return nil, false
	}
	if c.Forbidden {
		writeError(w, http.StatusForbidden, 50013, "Missing Permissions")
		return nil, false
	}
	return c, true
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	chID := r.PathValue("channel")
	var body messageBody
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	if !s.limitChannel(w, chID) {
		return
	}
	if !checkContent(w, body.Content, hasComponents(body.Components) || hasComponents(body.Embeds)) {
		return
	}
	s.mu.Lock()
	c, ok := s.botChannelLocked(w, chID)
	if !ok {
		s.mu.Unlock()
		return
	}
	m := &Message{
		ID: s.NewID(), ChannelID: chID, GuildID: c.GuildID, Author: s.bot, Content: body.Content,
		Components: body.Components, Type: MessageDefault, Created: time.Now(),
	}
	if ref := body.MessageReference; ref != nil && ref.MessageID != "" {
		if rm, ok := s.byID[ref.MessageID]; !ok || rm.Deleted || rm.ChannelID != chID {
			if ref.FailIfNotExists == nil || *ref.FailIfNotExists {
				s.mu.Unlock()
				writeFormError(w, "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
				return
			}
		} else {
			m.ReferenceID = ref.MessageID
			m.Type = MessageReply
		}
	}
	s.storeLocked(m)
	// The bot's own message has no member: the REST and gateway renderings are one.
	out := s.messageJSONLocked(m, true, false)
	s.mu.Unlock()
	b := out.encode()
	writeEncoded(w, http.StatusOK, b)
	if s.echoOwn {
		s.echo(w, "MESSAGE_CREATE", out.GuildID, b)
	}
}

// echo queues the bot's own new or edited message, encoded, to come back
// to it as event, as Discord does, once the request that made it is
// answered: Discord does not hold a REST response, nor the connection it
// came on, until the gateway has delivered the event, and a fake that did
// would charge its dispatch queue to the bot's latency.
func (s *Server) echo(w http.ResponseWriter, event, guildID string, msg []byte) {
	_ = http.NewResponseController(w).Flush()
	select {
	case s.echoes <- echoed{event, guildID, msg}:
	case <-s.stop:
	}
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m, ok := s.byID[r.PathValue("msg")]
	if !ok || m.Deleted || m.ChannelID != r.PathValue("channel") || m.Ephemeral() {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10008, "Unknown Message")
		return
	}
	out := s.messageJSONLocked(m, true, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) patchMessage(w http.ResponseWriter, r *http.Request) {
	chID := r.PathValue("channel")
	var e messageEdit
	if err := readBody(r, &e); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	if !s.limitChannel(w, chID) {
		return
	}
	s.mu.Lock()
	if _, ok := s.botChannelLocked(w, chID); !ok {
		s.mu.Unlock()
		return
	}
	m, ok := s.byID[r.PathValue("msg")]
	if !ok || m.Deleted || m.ChannelID != chID {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, 10008, "Unknown Message")
		return
	}
	if m.Author.ID != s.bot.ID {
		s.mu.Unlock()
		writeError(w, http.StatusForbidden, 50005, "Cannot edit a message authored by another user")
		return
	}
	// Checked: the content sent if it is a string, else the current one.
	text, content := e.text(), m.Content
	if c := e["content"]; len(c) > 0 && c[0] == '"' {
		content = text
	}
	comps := m.Components
	if c, ok := e["components"]; ok {
		comps = c
	}
	if utf8.RuneCountInString(content) > 2000 {
		s.mu.Unlock()
		writeFormError(w, "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
		return
	}
	if strings.TrimSpace(content) == "" && !hasComponents(comps) {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 50006, "Cannot send an empty message")
		return
	}
	applyEdit(m, e, text)
	s.notifyLocked()
	out := s.messageJSONLocked(m, true, false)
	s.mu.Unlock()
	b := out.encode()
	writeEncoded(w, http.StatusOK, b)
	if s.echoEdits {
		s.echo(w, "MESSAGE_UPDATE", out.GuildID, b)
	}
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) {
	chID := r.PathValue("channel")
	if !s.limitChannel(w, chID) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byID[r.PathValue("msg")]
	if !ok || m.Deleted || m.ChannelID != chID {
		writeError(w, http.StatusNotFound, 10008, "Unknown Message")
		return
	}
	m.Deleted = true
	s.notifyLocked()
	w.WriteHeader(http.StatusNoContent)
}

type threadBody struct {
	Name                string `json:"name"`
	Type                int    `json:"type"`
	AutoArchiveDuration int    `json:"auto_archive_duration"`
}

func (s *Server) createThread(w http.ResponseWriter, parentID, id string, typ int, name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > 100 {
		writeFormError(w, "name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
		return
	}
	s.mu.Lock()
	parent, ok := s.botChannelLocked(w, parentID)
	if !ok {
		s.mu.Unlock()
		return
	}
	if parent.GuildID == "" || isThread(parent.Type) {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 50024, "Cannot execute action on this channel type")
		return
	}
	if _, exists := s.channels[id]; exists {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 160004, "A thread has already been created for this message")
		return
	}
	t := &Channel{ID: id, GuildID: parent.GuildID, ParentID: parentID, Name: name, Type: typ}
	s.channels[id] = t
	s.threads = append(s.threads, *t)
	out := s.channelJSONLocked(t)
	s.notifyLocked()
	s.mu.Unlock()
	ev := map[string]any{"newly_created": true}
	for k, v := range out {
		ev[k] = v
	}
	_ = s.Dispatch("THREAD_CREATE", ev)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) postMessageThread(w http.ResponseWriter, r *http.Request) {
	var body threadBody
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	s.mu.Lock()
	m, ok := s.byID[r.PathValue("msg")]
	ok = ok && !m.Deleted && m.ChannelID == r.PathValue("channel") && !m.Ephemeral()
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, 10008, "Unknown Message")
		return
	}
	// A thread started from a message has that message's ID.
	s.createThread(w, r.PathValue("channel"), r.PathValue("msg"), ChannelPublicThread, body.Name)
}

func (s *Server) postThread(w http.ResponseWriter, r *http.Request) {
	var body threadBody
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
		return
	}
	typ := body.Type
	if typ == 0 {
		typ = ChannelPrivateThread
	}
	s.createThread(w, r.PathValue("channel"), s.NewID(), typ, body.Name)
}

func (s *Server) getAttachment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a, ok := s.attachments[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
	_, _ = w.Write(a.data)
}

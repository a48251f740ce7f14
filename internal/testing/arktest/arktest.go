// Package arktest is a fake Volcengine Ark server for tests and load tests:
// chat completions, the Responses API and image generation. It speaks Ark's
// wire formats (OpenAI-compatible JSON and SSE, Responses events, Ark-shaped
// errors) on a loopback httptest server, answers with scripted Responses or
// a default echo, keeps stored responses for chains, and records every
// request it receives.
//
// It deliberately has no dependency on package testing, so the same server
// serves unit tests, integration tests and the load-test command.
package arktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BasePath is the API prefix the fake serves, like Ark's /api/v3.
const BasePath = "/api/v3"

// ChatPath is the chat completions route.
const ChatPath = BasePath + "/chat/completions"

// maxBody bounds how much of a request body the fake reads.
const maxBody = 32 << 20

// Server is a running fake Ark. Create it with New and stop it with Close.
type Server struct {
	// URL is the API base, e.g. http://127.0.0.1:port/api/v3, as an operator
	// would configure it for Ark.
	URL string

	ts        *httptest.Server
	apiKey    string
	ttft      time.Duration
	perToken  time.Duration
	onFirst   func(Request, time.Time)
	onChunk   func(Request, time.Time)
	quit      chan struct{}
	closeOnce sync.Once
	nextID    atomic.Uint64

	mu       sync.Mutex
	images   imageState
	queue    []Response
	handler  func(Request) Response
	requests []Request
	stored   map[string]stored // Responses API responses by ID
}

// Option configures a Server.
type Option func(*Server)

// WithAPIKey makes the server require "Authorization: Bearer k"; other
// requests get 401 with Ark's AuthenticationError.
func WithAPIKey(k string) Option { return func(s *Server) { s.apiKey = k } }

// WithTiming sets the default answer's time to first token and the delay
// between its chunks (useful for load tests). Scripted Responses use their
// own TTFT and PerChunk.
func WithTiming(ttft, perToken time.Duration) Option {
	return func(s *Server) { s.ttft, s.perToken = ttft, perToken }
}

// WithFirstChunkHook calls f for every streamed answer with its request and
// the time its first chunk was written (taken just before the write, so no
// client can have seen the chunk earlier), for latency measurements. f runs
// on the request's goroutine once the chunk is flushed; it should return
// quickly.
func WithFirstChunkHook(f func(req Request, at time.Time)) Option {
	return func(s *Server) { s.onFirst = f }
}

// WithChunkHook calls f for every chunk of every streamed answer with the
// time it was written (taken just before the write), once it is flushed.
func WithChunkHook(f func(req Request, at time.Time)) Option {
	return func(s *Server) { s.onChunk = f }
}

// Request is one request the server received.
type Request struct {
	Path     string           // URL path, e.g. /api/v3/chat/completions
	Header   http.Header      // request headers
	Body     map[string]any   // decoded JSON body (nil if it was not a JSON object)
	Raw      []byte           // raw body
	Model    string           // body.model
	Messages []RequestMessage // chat messages, or the Responses API's input items
	Thinking string           // body.thinking.type, "" when absent

	// Responses API requests only:
	PreviousResponseID string
	Instructions       string
	Store              bool // default true
	ExpireAt           int64
	Caching            bool           // caching.type is "enabled"
	ReasoningEffort    string         // reasoning.effort
	Tools              []string       // the tools' types
	WebSearch          map[string]any // the web_search tool as sent, nil without
	// Context is what the model sees: the chain's earlier turns, carried
	// by Ark, then Messages.
	Context []RequestMessage
}

// RequestMessage is one message of a request, with content parts flattened.
type RequestMessage struct {
	Role   string
	Text   string   // the string content, or the text parts joined with "\n"
	Images []string // image_url part URLs, in order
}

// Usage is the token usage the server reports in a usage chunk.
type Usage struct {
	PromptTokens, CompletionTokens, TotalTokens, CachedTokens, ReasoningTokens int
}

// ErrorBody is Ark's error object: {"code","message","param","type"}.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param"`
	Type    string `json:"type"`
}

// Response scripts one answer of the server.
type Response struct {
	// Status, when neither 0 nor 200, makes an error response with Ark's JSON
	// body built from ErrorCode and ErrorMessage (defaults derived from the
	// status). A non-empty ErrorCode with Status 0 means 400.
	Status       int
	ErrorCode    string
	ErrorMessage string
	ErrorParam   string
	RetryAfter   string // Retry-After header value on an error response

	Reasoning    []string // reasoning_content deltas, sent before Content
	Content      []string // content deltas
	FinishReason string   // default "stop"; on /responses, "length" and "content_filter" end it as response.incomplete
	Usage        *Usage   // default: estimated from the request and the chunks

	// StreamError is sent as `data: {"error":{...}}` (on /responses, an
	// "error" event) after the chunks, instead of a finish_reason and
	// [DONE]; the stream then ends.
	StreamError *ErrorBody
	// CutAfter > 0 closes the connection abruptly after this many content
	// chunks: no finish_reason, no [DONE].
	CutAfter int
	// Hang sends nothing after the chunks until the client goes away or the
	// server closes.
	Hang bool

	TTFT     time.Duration // delay before the first chunk
	PerChunk time.Duration // delay before each later chunk

	// Responses API only: web searches before the text, their citations
	// after it; Failed ends the stream with response.failed.
	Searches []Search
	Failed   *ErrorBody
}

// New starts a fake Ark on 127.0.0.1.
func New(opts ...Option) *Server {
	s := &Server{quit: make(chan struct{}), stored: map[string]stored{}}
	for _, o := range opts {
		o(s)
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.ts.URL + BasePath
	return s
}

// Close stops the server. Hanging and slow streams are aborted, so Close
// returns promptly; it is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.ts.CloseClientConnections()
		s.ts.Close()
	})
}

// Enqueue adds scripted responses for the next chat requests, first in first out.
func (s *Server) Enqueue(r ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, r...)
}

// SetHandler sets the responder used when the queue is empty; nil restores
// the default echo answer.
func (s *Server) SetHandler(f func(Request) Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = f
}

// Requests returns every request received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// Result files are fetched from their own URL, unrecorded.
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, FilesPath) {
		s.serveFile(w, r)
		return
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	req := parseRequest(r, raw)
	s.mu.Lock()
	s.requests = append(s.requests, req)
	index := len(s.requests) - 1
	s.mu.Unlock()

	reqID := fmt.Sprintf("021%013d%08x", time.Now().UnixMilli(), s.nextID.Add(1))
	w.Header().Set("X-Request-Id", reqID)

	if r.Method != http.MethodPost || r.URL.Path != ChatPath && r.URL.Path != ResponsesPath && r.URL.Path != ImagesPath {
		writeError(w, reqID, Response{Status: http.StatusNotFound, ErrorCode: "NotFound",
			ErrorMessage: fmt.Sprintf("The requested resource %s %s is not found.", r.Method, r.URL.Path)})
		return
	}
	if s.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+s.apiKey {
		writeError(w, reqID, Response{Status: http.StatusUnauthorized, ErrorCode: "AuthenticationError",
			ErrorMessage: "The API key in the request is missing or invalid."})
		return
	}
	if req.Body == nil {
		writeError(w, reqID, Response{Status: http.StatusBadRequest, ErrorCode: "InvalidParameter",
			ErrorMessage: "The request body is not a valid JSON object."})
		return
	}
	if r.URL.Path == ResponsesPath {
		s.serveResponses(w, r, req, reqID, index)
		return
	}

	if r.URL.Path == ImagesPath {
		s.serveImages(w, r, req, reqID)
		return
	}
	resp := s.next(req)
	if (resp.Status != 0 && resp.Status != http.StatusOK) || resp.ErrorCode != "" {
		writeError(w, reqID, resp)
		return
	}
	if resp.FinishReason == "" {
		resp.FinishReason = "stop"
	}
	if resp.Usage == nil {
		resp.Usage = estimateUsage(req, resp)
	}
	if stream, _ := req.Body["stream"].(bool); stream {
		opts, _ := req.Body["stream_options"].(map[string]any)
		includeUsage, _ := opts["include_usage"].(bool)
		s.stream(w, r, req, reqID, resp, includeUsage)
		return
	}
	s.complete(w, r, req.Model, reqID, resp)
}

// next pops the queue, else asks the handler, else builds the echo answer.
func (s *Server) next(req Request) Response {
	s.mu.Lock()
	if len(s.queue) > 0 {
		r := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		return r
	}
	h := s.handler
	s.mu.Unlock()
	if h != nil {
		return h(req)
	}
	return s.echo(req)
}

// echo is the default answer: "You said: <last user text>" in word chunks.
func (s *Server) echo(req Request) Response {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Text
		}
	}
	return Response{Content: SplitWords("You said: " + last), TTFT: s.ttft, PerChunk: s.perToken}
}

// SplitWords splits text into chunks of one word each, keeping the spaces,
// so that concatenating the chunks gives back text.
func SplitWords(text string) []string {
	var out []string
	start := 0
	for i := 1; i < len(text); i++ {
		if text[i] == ' ' && text[i-1] != ' ' {
			out = append(out, text[start:i])
			start = i
		}
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

func parseRequest(r *http.Request, raw []byte) Request {
	req := Request{Path: r.URL.Path, Header: r.Header.Clone(), Raw: raw}
	if json.Unmarshal(raw, &req.Body) != nil {
		req.Body = nil
		return req
	}
	req.Model, _ = req.Body["model"].(string)
	if th, ok := req.Body["thinking"].(map[string]any); ok {
		req.Thinking, _ = th["type"].(string)
	}
	msgs, _ := req.Body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		var rm RequestMessage
		rm.Role, _ = mm["role"].(string)
		switch c := mm["content"].(type) {
		case string:
			rm.Text = c
		case []any:
			var texts []string
			for _, p := range c {
				part, _ := p.(map[string]any)
				switch part["type"] {
				case "text":
					t, _ := part["text"].(string)
					texts = append(texts, t)
				case "image_url":
					iu, _ := part["image_url"].(map[string]any)
					u, _ := iu["url"].(string)
					rm.Images = append(rm.Images, u)
				}
			}
			rm.Text = strings.Join(texts, "\n")
		}
		req.Messages = append(req.Messages, rm)
	}
	return req
}

// estimateUsage fills plausible token counts: about 4 characters a prompt
// token, one token a chunk.
func estimateUsage(req Request, resp Response) *Usage {
	chars := 0
	for _, m := range req.Messages {
		chars += len(m.Text) + 4
	}
	u := &Usage{PromptTokens: chars/4 + 1, CompletionTokens: len(resp.Content) + len(resp.Reasoning),
		ReasoningTokens: len(resp.Reasoning)}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

func writeError(w http.ResponseWriter, reqID string, r Response) {
	status := r.Status
	if status == 0 || status == http.StatusOK {
		status = http.StatusBadRequest
	}
	code := r.ErrorCode
	if code == "" {
		code = defaultCode(status)
	}
	msg := r.ErrorMessage
	if msg == "" {
		msg = "The request failed with " + code + "."
	}
	if !strings.Contains(msg, "Request id:") {
		msg += " Request id: " + reqID
	}
	if r.RetryAfter != "" {
		w.Header().Set("Retry-After", r.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": ErrorBody{Code: code, Message: msg, Param: r.ErrorParam, Type: errorType(status)}})
}

func defaultCode(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "AuthenticationError"
	case status == http.StatusForbidden:
		return "AccessDenied"
	case status == http.StatusNotFound:
		return "NotFound"
	case status == http.StatusTooManyRequests:
		return "RateLimitExceeded.EndpointRPMExceeded"
	case status >= 500:
		return "InternalServiceError"
	default:
		return "InvalidParameter"
	}
}

func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "Unauthorized"
	case status == http.StatusForbidden:
		return "Forbidden"
	case status == http.StatusNotFound:
		return "NotFound"
	case status == http.StatusTooManyRequests:
		return "TooManyRequests"
	case status >= 500:
		return "InternalServerError"
	default:
		return "BadRequest"
	}
}

// wait sleeps d, returning false if the client went away or the server closed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-r.Context().Done():
			return false
		case <-s.quit:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	return s.sleep(t, r)
}

// sleep waits for t, which the caller started, returning false if the
// client went away or the server closed. A stream reuses one timer for
// all its chunks.
func (s *Server) sleep(t *time.Timer, r *http.Request) bool {
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.quit:
		return false
	}
}

type delta struct {
	Role      string  `json:"role,omitempty"`
	Content   *string `json:"content,omitempty"`
	Reasoning *string `json:"reasoning_content,omitempty"`
}

type choice struct {
	Index        int     `json:"index"`
	Delta        delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

type chunk struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []choice   `json:"choices"`
	Usage   *usageJSON `json:"usage"`
}

type usageJSON struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func toUsageJSON(u *Usage) *usageJSON {
	j := &usageJSON{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	j.PromptTokensDetails.CachedTokens = u.CachedTokens
	j.CompletionTokensDetails.ReasoningTokens = u.ReasoningTokens
	return j
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, req Request, reqID string, resp Response, includeUsage bool) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}

	base := chunk{ID: reqID, Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: req.Model}
	write := func(event []byte) bool {
		if _, err := w.Write(event); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	send := func(v any) bool {
		b, err := json.Marshal(v)
		return err == nil && write([]byte("data: "+string(b)+"\n\n"))
	}
	prefix, buf := deltaPrefix(base), []byte(nil)
	p := s.newPace(r, resp)
	defer p.stop()
	pause := p.next
	sendDelta := func(d delta, finish *string) bool {
		if p.sent == 0 {
			d.Role = "assistant"
		}
		if !pause() {
			return false
		}
		buf = appendDelta(buf[:0], prefix, d, finish)
		at := time.Now()
		if !write(buf) {
			return false
		}
		if p.sent == 1 && s.onFirst != nil {
			s.onFirst(req, at)
		}
		if s.onChunk != nil {
			s.onChunk(req, at)
		}
		return true
	}

	for _, text := range resp.Reasoning {
		if !sendDelta(delta{Reasoning: &text}, nil) {
			return
		}
	}
	for i, text := range resp.Content {
		if !sendDelta(delta{Content: &text}, nil) {
			return
		}
		if resp.CutAfter > 0 && i+1 >= resp.CutAfter {
			abort(w)
			return
		}
	}
	switch {
	case resp.CutAfter > 0:
		abort(w)
		return
	case resp.Hang:
		s.wait(r, 24*time.Hour)
		return
	case resp.StreamError != nil:
		if pause() {
			send(map[string]any{"error": resp.StreamError})
		}
		return
	}
	// Like Ark, the finish chunk carries an empty content delta.
	empty := ""
	if !sendDelta(delta{Role: "assistant", Content: &empty}, &resp.FinishReason) {
		return
	}
	if includeUsage {
		c := base
		c.Choices = []choice{}
		c.Usage = toUsageJSON(resp.Usage)
		if !send(c) {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// deltaPrefix is the start of every delta chunk of an answer, up to the
// delta's fields: encoded once, since a load test streams tens of thousands
// of chunks a second and json.Marshal for each was most of the fake's CPU.
func deltaPrefix(base chunk) []byte {
	b, _ := json.Marshal(base) // {"id":…,"model":"…","choices":null,"usage":null}
	head, _, _ := strings.Cut(string(b), `"choices":`)
	return []byte("data: " + head + `"choices":[{"index":0,"delta":{`)
}

// appendDelta appends the SSE event of one delta chunk after prefix: the
// same bytes as "data: " + json.Marshal(chunk) + "\n\n" (a test holds it to
// that).
func appendDelta(b, prefix []byte, d delta, finish *string) []byte {
	b = append(b, prefix...)
	sep := ""
	field := func(name, v string) {
		b = append(append(append(b, sep+`"`...), name...), `":`...)
		b = appendJSONString(b, v)
		sep = ","
	}
	if d.Role != "" {
		field("role", d.Role)
	}
	if d.Content != nil {
		field("content", *d.Content)
	}
	if d.Reasoning != nil {
		field("reasoning_content", *d.Reasoning)
	}
	b = append(b, `},"finish_reason":`...)
	if finish == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *finish)
	}
	return append(b, "}],\"usage\":null}\n\n"...)
}

// appendJSONString appends s as json.Marshal encodes it: quoted as is when
// it is plain ASCII with nothing to escape (most tokens), else by Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// abort closes the connection without finishing the response (no final
// chunk of the chunked encoding), so the client sees an unexpected EOF after
// the data already sent.
func abort(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, model, reqID string, resp Response) {
	if resp.CutAfter > 0 {
		abort(w)
		return
	}
	if !s.wait(r, resp.TTFT) {
		return
	}
	if resp.Hang {
		s.wait(r, 24*time.Hour)
		return
	}
	if resp.StreamError != nil {
		writeError(w, reqID, Response{Status: http.StatusInternalServerError, ErrorCode: resp.StreamError.Code,
			ErrorMessage: resp.StreamError.Message})
		return
	}
	msg := map[string]any{"role": "assistant", "content": strings.Join(resp.Content, "")}
	if len(resp.Reasoning) > 0 {
		msg["reasoning_content"] = strings.Join(resp.Reasoning, "")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": reqID, "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": resp.FinishReason}},
		"usage":   toUsageJSON(resp.Usage),
	})
}

// pace spaces a response's chunks as scripted: TTFT before the first,
// PerChunk between the others.
type pace struct {
	s     *Server
	r     *http.Request
	resp  Response
	sent  int // pauses made: chunks about to be sent, the current one included
	timer *time.Timer
}

func (s *Server) newPace(r *http.Request, resp Response) *pace {
	return &pace{s: s, r: r, resp: resp, timer: time.NewTimer(time.Hour)}
}

// next waits before the next chunk; false when the request or the server
// ended meanwhile.
func (p *pace) next() bool {
	d := p.resp.PerChunk
	if p.sent == 0 {
		d = p.resp.TTFT
	}
	p.sent++
	if d <= 0 {
		return p.s.wait(p.r, 0)
	}
	p.timer.Reset(d)
	return p.s.sleep(p.timer, p.r)
}

func (p *pace) stop() { p.timer.Stop() }

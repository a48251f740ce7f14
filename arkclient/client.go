// Package arkclient streams chat completions from Volcengine Ark models.
//
// It speaks the OpenAI wire format with github.com/sashabaranov/go-openai's
// request and error types, and adds what Ark needs on top: Cherry Studio's
// address rule (ResolveURL), Ark's "thinking" field, retries with backoff
// before the first token, first-token and idle timeouts, a stream that never
// reports a cut connection as a finished answer, and errors classified by
// Ark's codes with words for chat users.
package arkclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"time"

	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/metrics"
	openai "github.com/sashabaranov/go-openai"
)

// maxIdleConns is how many idle connections to Ark the default HTTP client
// keeps: about as many as answers may stream at once, so that each new
// answer reuses one.
const maxIdleConns = 1024

// Client calls Ark's chat completions API. It is safe for concurrent use.
type Client struct {
	url          string // chat completions
	responsesURL string
	addr         string // host:port of url
	apiKey       string
	auth         string // the Authorization header, "" without a key
	http         *http.Client
	log          *slog.Logger
	first        time.Duration
	idle         time.Duration
	retries      int
	base         time.Duration
	maxDelay     time.Duration
	connect      time.Duration
	dial         transport.DialFunc
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client used for requests. Its Timeout, if
// any, bounds whole streams, so leave it zero and rely on the client's
// first-token and idle timeouts. WithConnectTimeout and WithDialContext do
// not apply to it: build its transport with internal/transport for that.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) {
		if h != nil {
			c.http = h
		}
	}
}

// WithConnectTimeout bounds each attempt to open a connection to Ark (name
// lookup and TCP connect) to d. Without it, or with d <= 0, net/http's
// dialer bounds it (30 s).
func WithConnectTimeout(d time.Duration) Option { return func(c *Client) { c.connect = d } }

// WithDialContext replaces the dialer of the default HTTP client (to dial
// through a custom network, or in tests); the connect timeout still
// applies.
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *Client) { c.dial = dial }
}

// WithFirstTokenTimeout bounds the time from sending a request to the first
// chunk carrying content, reasoning or a finish reason; each attempt gets
// the full time. Without it, or with d <= 0, there is no such bound.
func WithFirstTokenTimeout(d time.Duration) Option { return func(c *Client) { c.first = d } }

// WithIdleTimeout bounds the silence between such chunks once the answer has
// begun. It is not a limit on the whole answer. Without it, or with d <= 0,
// there is no such bound.
func WithIdleTimeout(d time.Duration) Option { return func(c *Client) { c.idle = d } }

// WithRetries sets how many times a retryable error is retried before the
// first chunk (without it: never; a failed connect at most once, as a
// second failure is all but certain), and the exponential backoff with full jitter: the
// n-th retry waits a random time up to min(maxDelay, base*2^n). A Retry-After
// header, capped at maxDelay, is used instead when present.
func WithRetries(maxRetries int, base, maxDelay time.Duration) Option {
	return func(c *Client) {
		c.retries, c.base, c.maxDelay = max(maxRetries, 0), max(base, 0), max(maxDelay, 0)
	}
}

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// New returns a Client for the API address (resolved with ResolveURL) and
// API key. An empty key sends no Authorization header.
func New(address, apiKey string, opts ...Option) (*Client, error) {
	resolved, full, err := resolve(address)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(resolved)
	if err != nil {
		return nil, fmt.Errorf("arkclient: API address: %w", err)
	}
	c := &Client{url: resolved, responsesURL: responsesURL(resolved), addr: hostPort(u), apiKey: apiKey, log: slog.Default()}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = &http.Client{Transport: transport.New(maxIdleConns,
			transport.WithConnectTimeout(c.connect), transport.WithDialContext(c.dial))}
	}
	if full {
		c.log.Info("ark: the API address ends in /chat/completions, so the bot posts to it as is (end it with # to say so)", "url", resolved)
	}
	if apiKey != "" {
		c.auth = "Bearer " + apiKey
	}
	return c, nil
}

// URL returns the chat completions URL the client posts to.
func (c *Client) URL() string { return c.url }

// hostPort is u's host:port, the port from the scheme when u names none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Message is one message of the conversation.
type Message struct {
	Role    string   // "system" | "user" | "assistant"
	Content string   // the text
	Images  []string // image URLs (https or data:) for vision models; used on user messages only
}

// Request is one chat completion request.
type Request struct {
	Model       string // Ark model ID or endpoint ID (ep-...)
	Messages    []Message
	MaxTokens   int      // the answer's limit (reasoning excluded), sent as max_tokens when > 0
	Temperature *float32 // omitted when nil
	Thinking    string   // "enabled" | "disabled" | "auto", sent as "thinking":{"type":...}; "" omits it
	// ReasoningEffort ("minimal" | "low" | "medium" | "high") is sent as
	// reasoning_effort; "" omits it.
	ReasoningEffort string
	User            string // end-user id, sent as "user" when non-empty
}

// Chunk is one piece of a streamed answer.
type Chunk struct {
	Content      string // answer delta
	Reasoning    string // reasoning_content delta (never part of the answer)
	FinishReason string // "stop", "length", "content_filter", ... on the chunk that carries it, else ""
	Usage        *Usage // on the final usage chunk
	// Responses API only:
	ResponseID string      // the stored response's ID, on the last chunk
	Search     SearchPhase // SearchStarted or SearchDone when a web search starts or ends, else SearchNone
	Sources    []Source    // web pages cited for the first time
}

// empty reports whether c carries nothing.
func (c *Chunk) empty() bool {
	return c.Content == "" && c.Reasoning == "" && c.FinishReason == "" && c.Usage == nil &&
		c.ResponseID == "" && c.Search == SearchNone && len(c.Sources) == 0
}

// Usage is the token usage Ark reports at the end of a stream.
type Usage struct {
	PromptTokens, CompletionTokens, TotalTokens, CachedTokens, ReasoningTokens int
	WebSearches                                                                int // web searches the answer made (Responses API)
}

// WithRequestSent returns ctx set so that a Stream opened with it calls f
// each time its request has been written to the connection (once per
// attempt; f should be idempotent): from then on the bot only waits for
// Ark.
func WithRequestSent(ctx context.Context, f func()) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { f() }})
}

// Stream sends req with stream:true and stream_options.include_usage, and
// waits for the first chunk with content, reasoning or a finish reason, which
// it buffers for Recv. Retryable errors are retried with backoff (honouring
// Retry-After) only in that phase, so a caller never sees a retry after text
// was shown. Errors are *Error; a cancelled ctx gives Code "Canceled", which
// wraps ctx.Err().
func (c *Client) Stream(ctx context.Context, req Request) (*Stream, error) {
	body, err := requestBody(req)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: "building the request: " + err.Error(), cause: err}
	}
	return c.stream(ctx, call{url: c.url, model: req.Model, body: body})
}

// call is one streamed request to Ark.
type call struct {
	url    string
	model  string // for logs
	body   []byte
	events bool // the Responses API's events, not chat completion chunks
	search bool // with the web_search tool
}

// stream sends cl, retrying as Stream says.
func (c *Client) stream(ctx context.Context, cl call) (*Stream, error) {
	connectFailed := false
	for attempt := 0; ; attempt++ {
		s, e := c.open(ctx, cl)
		if e == nil {
			return s, nil
		}
		if !e.Retryable || attempt >= c.retries || ctx.Err() != nil || e.Code == CodeConnectFailed && connectFailed {
			return nil, e
		}
		connectFailed = connectFailed || e.Code == CodeConnectFailed
		delay := c.backoff(attempt, e.RetryAfter)
		c.log.Warn("ark: retrying request", "model", cl.model, "code", e.Code, "status", e.Status,
			"request_id", e.RequestID, "message", e.Message, "retry", attempt+1, "max_retries", c.retries, "delay", delay)
		metrics.ArkRetries.Inc()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, canceledError(ctx.Err(), false)
		}
	}
}

// backoff is the wait before retry number attempt+1.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.maxDelay)
	}
	ceil := c.maxDelay
	if attempt < 30 && c.base<<attempt > 0 && c.base<<attempt < ceil {
		ceil = c.base << attempt
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// open makes one attempt: it posts body and reads up to the first
// meaningful chunk.
func (c *Client) open(ctx context.Context, cl call) (*Stream, *Error) {
	sctx, cancel := context.WithCancel(ctx)
	s := &Stream{c: c, parent: ctx, cancel: cancel, wd: newWatchdog(c.first, cancel), parser: parsers.Get()}
	if cl.events {
		s.events = &eventDecoder{}
	}
	hreq, err := http.NewRequestWithContext(sctx, http.MethodPost, cl.url, bytes.NewReader(cl.body))
	if err != nil {
		return nil, s.fail(err).(*Error) // fail gives io.EOF only after a finish reason
	}
	h := hreq.Header
	h["Content-Type"] = jsonType
	h["Accept"] = eventStream
	h["Cache-Control"] = noCache
	if c.auth != "" {
		h["Authorization"] = []string{c.auth}
	}
	if cl.search {
		h["Ark-Beta-Web-Search"] = webSearchBeta // as the official Python SDK sends it
	}
	s.sent = true
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, s.fail(err).(*Error)
	}
	s.status, s.header = resp.StatusCode, resp.Header
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		err := errorResponse(resp)
		_ = resp.Body.Close()
		return nil, s.fail(err).(*Error)
	}
	s.body, s.data = resp.Body, newSSEData(resp.Body)
	ch, err := s.read()
	switch {
	case err == nil:
		s.pending = append(s.pending, ch)
	case err != io.EOF:
		return nil, err.(*Error)
	}
	s.started = true
	return s, nil
}

// The request's fixed header values, shared by every request (net/http
// does not modify them).
var (
	jsonType      = []string{"application/json"}
	eventStream   = []string{"text/event-stream"}
	noCache       = []string{"no-cache"}
	webSearchBeta = []string{"true"}
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 1 << 20

// errorResponse reads a failed response's body into go-openai's error
// types, as go-openai's client does: *openai.APIError when it is an
// OpenAI-style {"error":{...}} object, else *openai.RequestError with the
// body.
func errorResponse(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("error, reading response body: %w", err)
	}
	var res openai.ErrorResponse
	err = json.Unmarshal(body, &res)
	if err != nil || res.Error == nil {
		return &openai.RequestError{HTTPStatus: resp.Status, HTTPStatusCode: resp.StatusCode, Err: err, Body: body}
	}
	res.Error.HTTPStatus, res.Error.HTTPStatusCode = resp.Status, resp.StatusCode
	return res.Error
}

// requestBody encodes req as the JSON body of a streamed chat completion.
func requestBody(req Request) ([]byte, error) {
	oreq := chatRequest(req)
	body, err := json.Marshal(oreq)
	if err != nil {
		return nil, err
	}
	// go-openai omits an empty content, which Ark rejects.
	patch := slices.ContainsFunc(oreq.Messages, func(m openai.ChatCompletionMessage) bool {
		return m.Content == "" && len(m.MultiContent) == 0
	})
	return rewriteBody(body, extraFields(req), patch)
}

// chatRequest converts req to go-openai's request. Temperature, thinking
// and max_tokens travel as extra fields: go-openai would drop a zero
// temperature, and its only non-deprecated limit is max_completion_tokens,
// which on Ark also counts the reasoning, while max_tokens bounds the
// answer alone.
func chatRequest(req Request) openai.ChatCompletionRequest {
	msgs := make([]openai.ChatCompletionMessage, 0, len(req.Messages))
	for _, m := range req.Messages {
		om := openai.ChatCompletionMessage{Role: m.Role}
		if m.Role != openai.ChatMessageRoleUser || len(m.Images) == 0 {
			om.Content = m.Content
			msgs = append(msgs, om)
			continue
		}
		if m.Content != "" {
			om.MultiContent = append(om.MultiContent, openai.ChatMessagePart{Type: openai.ChatMessagePartTypeText, Text: m.Content})
		}
		for _, u := range m.Images {
			om.MultiContent = append(om.MultiContent, openai.ChatMessagePart{
				Type: openai.ChatMessagePartTypeImageURL, ImageURL: &openai.ChatMessageImageURL{URL: u}})
		}
		msgs = append(msgs, om)
	}
	return openai.ChatCompletionRequest{
		Model:         req.Model,
		Messages:      msgs,
		Stream:        true,
		StreamOptions: &openai.StreamOptions{IncludeUsage: true},
		User:          req.User,
	}
}

// extraFields are the body fields go-openai's request type cannot carry.
func extraFields(req Request) map[string]any {
	extras := map[string]any{}
	if req.Thinking != "" {
		extras["thinking"] = map[string]string{"type": req.Thinking}
	}
	if req.ReasoningEffort != "" {
		extras["reasoning_effort"] = req.ReasoningEffort
	}
	if req.Temperature != nil {
		extras["temperature"] = *req.Temperature
	}
	if req.MaxTokens > 0 {
		extras["max_tokens"] = req.MaxTokens
	}
	return extras
}

// rewriteBody sets top-level fields of the JSON request body, and gives
// every message a "content" (go-openai omits an empty one, which Ark
// rejects) when patchContents says one lacks it. Without that, it splices
// the fields in after the body's "{": decoding and encoding the whole
// history again was a tenth of the client's cost per request.
func rewriteBody(body []byte, fields map[string]any, patchContents bool) ([]byte, error) {
	if !patchContents && len(body) > 0 && body[0] == '{' {
		out := make([]byte, 0, len(body)+64*len(fields))
		out = append(out, '{')
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			key, _ := json.Marshal(k)
			v, err := json.Marshal(fields[k])
			if err != nil {
				return nil, err
			}
			out = append(append(out, key...), ':')
			out = append(append(out, v...), ',')
		}
		if rest := bytes.TrimLeft(body[1:], " \t\r\n"); len(fields) > 0 && len(rest) > 0 && rest[0] == '}' {
			out = out[:len(out)-1] // {} had no field to follow ours
		}
		return append(out, body[1:]...), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		obj[k] = b
	}
	var msgs []map[string]json.RawMessage
	if json.Unmarshal(obj["messages"], &msgs) == nil {
		patched := false
		for _, m := range msgs {
			if _, ok := m["content"]; !ok {
				m["content"], patched = json.RawMessage(`""`), true
			}
		}
		if patched {
			b, err := json.Marshal(msgs)
			if err != nil {
				return nil, err
			}
			obj["messages"] = b
		}
	}
	return json.Marshal(obj)
}

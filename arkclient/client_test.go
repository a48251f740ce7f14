package arkclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/metrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const testKey = "ark-test-key-5f3c9a71e2"

var quiet = slog.New(slog.DiscardHandler)

// newClient makes a client with fast retries and short (but not flaky)
// timeouts; opts override them.
func newClient(t *testing.T, srv *arktest.Server, address string, opts ...Option) *Client {
	t.Helper()
	if address == "" {
		address = srv.URL
	}
	base := []Option{
		WithLogger(quiet),
		WithRetries(3, time.Millisecond, 10*time.Millisecond),
		WithFirstTokenTimeout(5 * time.Second),
		WithIdleTimeout(5 * time.Second),
	}
	c, err := New(address, testKey, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func userReq(text string) Request {
	return Request{Model: "doubao-seed-1-6-250615", Messages: []Message{{Role: "user", Content: text}}}
}

// recvAll reads a stream to its end, returning the chunks and the final
// error (nil for io.EOF).
func recvAll(t *testing.T, s *Stream) ([]Chunk, error) {
	t.Helper()
	defer s.Close()
	var chunks []Chunk
	for range 10000 {
		ch, err := s.Recv()
		if err == io.EOF {
			return chunks, nil
		}
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, ch)
	}
	t.Fatal("stream never ended")
	return nil, nil
}

func joined(chunks []Chunk) (content, reasoning string) {
	for _, c := range chunks {
		content += c.Content
		reasoning += c.Reasoning
	}
	return content, reasoning
}

// collect streams req and returns the answer text and the first error.
func collect(t *testing.T, c *Client, req Request) (string, []Chunk, error) {
	t.Helper()
	s, err := c.Stream(context.Background(), req)
	if err != nil {
		return "", nil, err
	}
	chunks, err := recvAll(t, s)
	text, _ := joined(chunks)
	return text, chunks, err
}

// asError checks that err is an *Error without the API key anywhere.
func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	for _, s := range []string{e.Error(), e.UserMessage(), e.Message} {
		if strings.Contains(s, testKey) {
			t.Fatalf("error text contains the API key: %q", s)
		}
	}
	return e
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func arkErrors(code string) float64 { return counter(metrics.ArkErrors.WithLabelValues(code)) }

func TestStreamContentReasoningUsage(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{
		Reasoning: []string{"Let me ", "think."},
		Content:   []string{"Hello", ", ", "world"},
		Usage:     &arktest.Usage{PromptTokens: 11, CompletionTokens: 20, TotalTokens: 31, CachedTokens: 8, ReasoningTokens: 6},
	})
	c := newClient(t, srv, "")
	s, err := c.Stream(context.Background(), userReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := recvAll(t, s)
	if err != nil {
		t.Fatal(err)
	}
	content, reasoning := joined(chunks)
	if content != "Hello, world" || reasoning != "Let me think." {
		t.Errorf("content %q reasoning %q", content, reasoning)
	}
	if chunks[0].Reasoning != "Let me " || chunks[0].Content != "" {
		t.Errorf("first chunk %+v", chunks[0])
	}
	last, prev := chunks[len(chunks)-1], chunks[len(chunks)-2]
	if prev.FinishReason != "stop" {
		t.Errorf("finish chunk %+v", prev)
	}
	want := Usage{PromptTokens: 11, CompletionTokens: 20, TotalTokens: 31, CachedTokens: 8, ReasoningTokens: 6}
	if last.Usage == nil || *last.Usage != want {
		t.Errorf("usage chunk %+v", last)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("Recv after the end: %v, want io.EOF", err)
	}

	r := srv.Requests()[0]
	opts, _ := r.Body["stream_options"].(map[string]any)
	if r.Body["stream"] != true || opts["include_usage"] != true {
		t.Errorf("stream/stream_options not sent: %s", r.Raw)
	}
	for _, absent := range []string{"thinking", "temperature", "max_tokens", "user"} {
		if _, ok := r.Body[absent]; ok {
			t.Errorf("%s sent though not configured: %s", absent, r.Raw)
		}
	}
	if r.Thinking != "" || r.Model != "doubao-seed-1-6-250615" || r.Header.Get("Authorization") != "Bearer "+testKey {
		t.Errorf("request %+v", r)
	}
}

func TestRequestFields(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newClient(t, srv, "")
	temp := float32(0)
	req := Request{
		Model: "ep-20250101-abcde",
		Messages: []Message{
			{Role: "system", Content: "be brief"},
			{Role: "user", Content: "what is this?", Images: []string{"https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="}},
			{Role: "assistant", Content: "a cat", Images: []string{"https://ignored"}},
			{Role: "user", Content: "and this?"},
			{Role: "assistant", Content: ""},
			{Role: "user", Content: "hm"},
		},
		MaxTokens:   512,
		Temperature: &temp,
		Thinking:    "disabled",
		User:        "slack:T1:U2",
	}
	if _, _, err := collect(t, c, req); err != nil {
		t.Fatal(err)
	}
	r := srv.Requests()[0]
	th, _ := r.Body["thinking"].(map[string]any)
	if r.Thinking != "disabled" || len(th) != 1 {
		t.Errorf("thinking: %s", r.Raw)
	}
	if r.Body["temperature"] != 0.0 || r.Body["max_tokens"] != 512.0 || r.Body["user"] != "slack:T1:U2" || r.Model != "ep-20250101-abcde" {
		t.Errorf("fields: %s", r.Raw)
	}
	if len(r.Messages) != 6 || r.Messages[0].Text != "be brief" || r.Messages[2].Text != "a cat" || len(r.Messages[2].Images) != 0 {
		t.Fatalf("messages: %+v", r.Messages)
	}
	msgs := r.Body["messages"].([]any)
	if c, ok := msgs[4].(map[string]any)["content"]; !ok || c != "" {
		t.Errorf("empty assistant message lost its content: %s", r.Raw)
	}
	if _, ok := msgs[0].(map[string]any)["content"].(string); !ok {
		t.Errorf("system content should be a string: %s", r.Raw)
	}
	parts, _ := msgs[1].(map[string]any)["content"].([]any)
	if len(parts) != 3 {
		t.Fatalf("user content parts: %s", r.Raw)
	}
	p0, p1 := parts[0].(map[string]any), parts[1].(map[string]any)
	iu, _ := p1["image_url"].(map[string]any)
	if p0["type"] != "text" || p0["text"] != "what is this?" || p1["type"] != "image_url" || iu["url"] != "https://example.com/a.png" {
		t.Errorf("parts: %v", parts)
	}
	if got := r.Messages[1].Images; len(got) != 2 || got[1] != "data:image/png;base64,iVBORw0KGgo=" {
		t.Errorf("images: %v", got)
	}
}

func TestRetryRateLimitHonoursRetryAfter(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Status: 429, ErrorCode: "RateLimitExceeded.EndpointRPMExceeded", RetryAfter: "1"})
	const limit = 150 * time.Millisecond
	c := newClient(t, srv, "", WithRetries(3, time.Microsecond, limit))
	retries, errs := counter(metrics.ArkRetries), arkErrors("RateLimitExceeded.EndpointRPMExceeded")

	start := time.Now()
	text, _, err := collect(t, c, userReq("again"))
	elapsed := time.Since(start)
	if err != nil || text != "You said: again" {
		t.Fatalf("%q, %v", text, err)
	}
	// Retry-After: 1 capped at 150ms, where the backoff alone would be ~1µs.
	if elapsed < limit || elapsed > 900*time.Millisecond {
		t.Errorf("retried after %v, want Retry-After capped at %v", elapsed, limit)
	}
	if n := len(srv.Requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	if d := counter(metrics.ArkRetries) - retries; d != 1 {
		t.Errorf("ArkRetries rose by %v, want 1", d)
	}
	if d := arkErrors("RateLimitExceeded.EndpointRPMExceeded") - errs; d != 1 {
		t.Errorf("ArkErrors rose by %v, want 1", d)
	}
}

func TestQuotaExceededNotRetried(t *testing.T) {
	for _, code := range []string{"QuotaExceeded", "SetLimitExceeded"} {
		srv := arktest.New(arktest.WithAPIKey(testKey))
		srv.Enqueue(arktest.Response{Status: 429, ErrorCode: code, RetryAfter: "1"})
		c := newClient(t, srv, "")
		_, _, err := collect(t, c, userReq("x"))
		e := asError(t, err)
		if e.Code != code || e.Status != 429 || e.Retryable || e.Interrupted || e.RetryAfter != time.Second {
			t.Errorf("%s: %+v", code, e)
		}
		if !strings.Contains(e.UserMessage(), "quota or spending cap") {
			t.Errorf("%s: %q", code, e.UserMessage())
		}
		if n := len(srv.Requests()); n != 1 {
			t.Errorf("%s: %d requests, want 1", code, n)
		}
		srv.Close()
	}
}

func TestServerErrorRetried(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError"},
		arktest.Response{Status: 502, ErrorMessage: "bad gateway"})
	c := newClient(t, srv, "")
	text, _, err := collect(t, c, userReq("ok"))
	if err != nil || text != "You said: ok" || len(srv.Requests()) != 3 {
		t.Fatalf("%q, %v after %d requests", text, err, len(srv.Requests()))
	}

	// Retries run out: the last error comes back, still retryable.
	for range 4 {
		srv.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError"})
	}
	_, _, err = collect(t, c, userReq("ok"))
	e := asError(t, err)
	if e.Code != "InternalServiceError" || e.Status != 500 || !e.Retryable || len(srv.Requests()) != 7 {
		t.Errorf("%v after %d requests", e, len(srv.Requests()))
	}
}

func TestNonJSONErrorBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tt-Logid", "logid-9")
		http.Error(w, "<html>502 Bad Gateway</html>", http.StatusBadGateway)
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/api/v3", testKey, WithLogger(quiet), WithRetries(0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stream(context.Background(), userReq("x"))
	e := asError(t, err)
	if e.Code != "HTTP502" || e.Status != 502 || !e.Retryable || e.RequestID != "logid-9" || !strings.Contains(e.Message, "502 Bad Gateway") {
		t.Errorf("%+v", e)
	}
}

func TestModelNotOpen(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Status: 404, ErrorCode: "ModelNotOpen",
		ErrorMessage: "Your account 2100 has not activated the model doubao-seed-1-6. Please activate the model service in the Ark Console. Request id: 021745000000000abcdef"})
	c := newClient(t, srv, "")
	_, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if e.Code != "ModelNotOpen" || e.Status != 404 || e.Retryable || e.RequestID != "021745000000000abcdef" {
		t.Errorf("%+v", e)
	}
	if um := e.UserMessage(); !strings.Contains(um, "开通管理") || !strings.HasSuffix(um, "(request id: 021745000000000abcdef)") {
		t.Errorf("UserMessage %q", um)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestAuthenticationErrorHidesKey(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey("the-right-key"))
	defer srv.Close()
	c := newClient(t, srv, "")
	_, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if e.Code != "AuthenticationError" || e.Status != 401 || e.Retryable || !strings.Contains(e.UserMessage(), "ARK_API_KEY") {
		t.Errorf("%+v: %s", e, e.UserMessage())
	}

	// Even if Ark echoed the key back, it is redacted.
	srv.Enqueue(arktest.Response{Status: 401, ErrorCode: "AuthenticationError", ErrorMessage: "key " + testKey + " is invalid"})
	c2 := newClient(t, srv, "", WithHTTPClient(&http.Client{Transport: rewriteAuth{"the-right-key"}}))
	_, _, err = collect(t, c2, userReq("x"))
	e = asError(t, err)
	if !strings.Contains(e.Message, "[redacted]") {
		t.Errorf("message %q", e.Message)
	}
}

// rewriteAuth lets a request pass the fake's key check.
type rewriteAuth struct{ key string }

func (a rewriteAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.key)
	return http.DefaultTransport.RoundTrip(r)
}

func TestMidStreamErrorIsInterrupted(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Content: []string{"partial ", "answer"},
		StreamError: &arktest.ErrorBody{Code: "InternalServiceError", Message: "The service encountered an unexpected internal error. Request id: 0217zz"}})
	c := newClient(t, srv, "")
	text, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if text != "partial answer" {
		t.Errorf("text before the error: %q", text)
	}
	if e.Code != "InternalServiceError" || !e.Interrupted || e.Status != 0 || e.RequestID != "0217zz" {
		t.Errorf("%+v", e)
	}
	// Retryable by code, but never retried once text was delivered.
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests, want 1 (no retry after the first chunk)", n)
	}
}

func TestStreamErrorBeforeContentIsRetried(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{StreamError: &arktest.ErrorBody{Code: "ServerOverloaded", Message: "busy"}},
		arktest.Response{CutAfter: 1}) // cut before any content
	text, _, err := collect(t, newClient(t, srv, ""), userReq("y"))
	if err != nil || text != "You said: y" || len(srv.Requests()) != 3 {
		t.Errorf("%q, %v after %d requests", text, err, len(srv.Requests()))
	}

	srv.Enqueue(arktest.Response{StreamError: &arktest.ErrorBody{Code: "InputTextSensitiveContentDetected", Message: "blocked"}})
	_, _, err = collect(t, newClient(t, srv, ""), userReq("z"))
	e := asError(t, err)
	if e.Code != "InputTextSensitiveContentDetected" || e.Interrupted || e.Retryable || len(srv.Requests()) != 4 {
		t.Errorf("%+v after %d requests", e, len(srv.Requests()))
	}
}

func TestCutConnectionIsNotEOF(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Content: []string{"one ", "two ", "three"}, CutAfter: 2})
	errs := arkErrors(CodeStreamInterrupted)
	text, _, err := collect(t, newClient(t, srv, ""), userReq("x"))
	e := asError(t, err)
	if text != "one two " || e.Code != CodeStreamInterrupted || !e.Interrupted {
		t.Errorf("%q, %+v", text, e)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Errorf("%d requests", n)
	}
	if d := arkErrors(CodeStreamInterrupted) - errs; d != 1 {
		t.Errorf("ArkErrors{StreamInterrupted} rose by %v", d)
	}
}

// TestCleanCloseWithoutFinishIsNotEOF covers go-openai's io.EOF ambiguity: a
// response that ends cleanly, with neither finish_reason nor [DONE].
func TestCleanCloseWithoutFinishIsNotEOF(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, s := range []string{"Hel", "lo"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", s)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/api/v3", testKey, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if text != "Hello" || e.Code != CodeStreamInterrupted || !e.Interrupted {
		t.Errorf("%q, %+v", text, e)
	}
}

// TestSSECommentsKeepStreamErrors: comment lines before an error event must
// not garble Ark's error code (go-openai accumulates such lines).
func TestSSECommentsKeepStreamErrors(t *testing.T) {
	long := strings.Repeat("x", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": keep-alive\n\nevent: message\n")
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", long)
		fmt.Fprint(w, ": ping\n\n")
		fmt.Fprint(w, `data: {"error":{"code":"OutputTextSensitiveContentDetected","message":"blocked","param":"","type":"BadRequest"}}`+"\n\n")
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/api/v3", testKey, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	text, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if text != long || e.Code != "OutputTextSensitiveContentDetected" || !e.Interrupted || !strings.Contains(e.UserMessage(), "moderation") {
		t.Errorf("%d bytes, %+v", len(text), e)
	}
}

func TestFinishReasonLength(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Content: []string{"cut ", "short"}, FinishReason: "length"})
	text, chunks, err := collect(t, newClient(t, srv, ""), userReq("x"))
	if err != nil || text != "cut short" {
		t.Fatalf("%q, %v", text, err)
	}
	var finish string
	for _, c := range chunks {
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
	}
	if finish != "length" {
		t.Errorf("finish reason %q", finish)
	}
}

func TestEmptyAnswerFinishes(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{FinishReason: "content_filter"})
	text, chunks, err := collect(t, newClient(t, srv, ""), userReq("x"))
	if err != nil || text != "" || len(chunks) == 0 || chunks[0].FinishReason != "content_filter" {
		t.Errorf("%q %+v %v", text, chunks, err)
	}
}

func TestFirstTokenTimeout(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Hang: true}, arktest.Response{Content: []string{"late"}, TTFT: 2 * time.Second})
	c := newClient(t, srv, "", WithFirstTokenTimeout(100*time.Millisecond))
	for i := range 2 {
		start := time.Now()
		_, err := c.Stream(context.Background(), userReq("x"))
		e := asError(t, err)
		if e.Code != CodeTimeout || e.Interrupted || e.Retryable || time.Since(start) > time.Second {
			t.Errorf("case %d: %+v after %v", i, e, time.Since(start))
		}
	}
	if n := len(srv.Requests()); n != 2 {
		t.Errorf("%d requests, want 2 (timeouts are not retried)", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Content: []string{"a", "b"}, Hang: true})
	c := newClient(t, srv, "", WithIdleTimeout(100*time.Millisecond))
	start := time.Now()
	text, _, err := collect(t, c, userReq("x"))
	e := asError(t, err)
	if text != "ab" || e.Code != CodeTimeout || !e.Interrupted || time.Since(start) > time.Second {
		t.Errorf("%q, %+v after %v", text, e, time.Since(start))
	}
	if !strings.Contains(e.UserMessage(), "incomplete") {
		t.Errorf("UserMessage %q", e.UserMessage())
	}
}

// TestIdleTimeoutIsNotWallClock: a slow but steady answer outlasts both
// timeouts (each chunk comes well within them, with room for a loaded CI
// machine).
func TestIdleTimeoutIsNotWallClock(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.Enqueue(arktest.Response{Content: strings.Split("abcdefgh", ""), TTFT: 100 * time.Millisecond, PerChunk: 100 * time.Millisecond})
	c := newClient(t, srv, "", WithFirstTokenTimeout(500*time.Millisecond), WithIdleTimeout(500*time.Millisecond))
	start := time.Now()
	text, _, err := collect(t, c, userReq("x"))
	if err != nil || text != "abcdefgh" || time.Since(start) < 700*time.Millisecond {
		t.Errorf("%q, %v after %v", text, err, time.Since(start))
	}
}

func TestCancel(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newClient(t, srv, "")

	// Cancel while waiting for the first token.
	srv.Enqueue(arktest.Response{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Stream(ctx, userReq("x"))
	e := asError(t, err)
	if e.Code != CodeCanceled || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%+v", e)
	}

	// Close from another goroutine while Recv waits.
	srv.Enqueue(arktest.Response{Content: []string{"a"}, Hang: true})
	s, err := c.Stream(context.Background(), userReq("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := s.Recv(); err != nil || ch.Content != "a" {
		t.Fatalf("%+v %v", ch, err)
	}
	time.AfterFunc(50*time.Millisecond, func() { s.Close() })
	_, err = s.Recv()
	e = asError(t, err)
	if e.Code != CodeCanceled || !e.Interrupted {
		t.Errorf("%+v", e)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{base: 100 * time.Millisecond, maxDelay: time.Second}
	for attempt := range 40 {
		ceil := min(time.Second, 100*time.Millisecond<<min(attempt, 20))
		for range 20 {
			if d := c.backoff(attempt, 0); d < 0 || d > ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", attempt, d, ceil)
			}
		}
	}
	if d := c.backoff(0, 3*time.Second); d != time.Second {
		t.Errorf("Retry-After not capped: %v", d)
	}
	if d := c.backoff(0, 300*time.Millisecond); d != 300*time.Millisecond {
		t.Errorf("Retry-After not honoured: %v", d)
	}
}

// The spliced body (no content to patch) says what the decoded and
// re-encoded one says.
func TestRewriteBodySplice(t *testing.T) {
	fields := map[string]any{"thinking": map[string]string{"type": "enabled"}, "temperature": 0.0}
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi \"there\""}],"stream":true}`,
		`{}`, ` { } `, `{"a":1}`,
	} {
		for _, f := range []map[string]any{fields, {}} {
			fast, err := rewriteBody([]byte(body), f, false)
			if err != nil {
				t.Fatal(err)
			}
			slow, err := rewriteBody([]byte(body), f, true)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(fast, &a); err != nil {
				t.Fatalf("%s with %v: %v: %s", body, f, err, fast)
			}
			if err := json.Unmarshal(slow, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s with %v:\nspliced %s\ndecoded %s", body, f, fast, slow)
			}
		}
	}
}

// Streams reuse pooled read buffers and parsers once they end: many at
// once, ending cleanly or cut off, each still reads exactly its own text,
// and Recv after the end gives the same result again.
func TestConcurrentStreamsKeepTheirText(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	srv.SetHandler(func(r arktest.Request) arktest.Response {
		q := r.Messages[len(r.Messages)-1].Text
		words := make([]string, 40)
		for i := range words {
			words[i] = fmt.Sprintf(" %s-%d", q, i)
		}
		resp := arktest.Response{Content: words, PerChunk: time.Millisecond}
		if strings.HasSuffix(q, "cut") {
			resp.CutAfter = 20
		}
		return resp
	})
	c := newClient(t, srv, "", WithRetries(0, 0, 0))
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for turn := range 3 {
				q := fmt.Sprintf("q%d.%d", g, turn)
				if (g+turn)%4 == 0 {
					q += "cut"
				}
				s, err := c.Stream(context.Background(), userReq(q))
				if err != nil {
					t.Error(err)
					return
				}
				chunks, err := recvAll(t, s)
				content, _ := joined(chunks)
				want, n := "", 40
				if strings.HasSuffix(q, "cut") {
					n = 20
				}
				for i := range n {
					want += fmt.Sprintf(" %s-%d", q, i)
				}
				if content != want {
					t.Errorf("%s: got %q", q, content)
				}
				if _, again := s.Recv(); (err == nil) != (again == io.EOF) || (err != nil && again != err) {
					t.Errorf("%s: Recv after the end gave %v, first %v", q, again, err)
				}
			}
		})
	}
	wg.Wait()
}

// WithRequestSent calls its hook once per request written, before Ark's
// first chunk has come.
func TestWithRequestSent(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	const ttft = 300 * time.Millisecond
	srv.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError"},
		arktest.Response{Content: []string{"hi"}, TTFT: ttft})
	c := newClient(t, srv, "")
	var mu sync.Mutex
	var sent []time.Time
	ctx := WithRequestSent(context.Background(), func() {
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
	})
	s, err := c.Stream(ctx, userReq("ok"))
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 {
		t.Fatalf("hook called %d times for 2 requests", len(sent))
	}
	if gap := opened.Sub(sent[1]); gap < ttft*2/3 {
		t.Errorf("hook called only %v before the stream opened, after the first chunk", gap)
	}
}

package arktest

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// events reads SSE events, checking the framing: every event is exactly one
// "data: ..." line followed by a blank line.
func events(t *testing.T, r io.Reader) []string {
	t.Helper()
	br := bufio.NewReader(r)
	var out []string
	for i := 0; i < 1000; i++ {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return out
		}
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		if blank, _ := br.ReadString('\n'); blank != "\n" {
			t.Fatalf("event %q not followed by a blank line but %q", data, blank)
		}
		out = append(out, strings.TrimSuffix(data, "\n"))
	}
	t.Fatal("too many events")
	return nil
}

type testChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			Reasoning string `json:"reasoning_content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		TotalTokens         int `json:"total_tokens"`
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	} `json:"usage"`
}

const streamBody = `{"model":"doubao-test","stream":true,"stream_options":{"include_usage":true},
	"thinking":{"type":"enabled"},
	"messages":[{"role":"system","content":"be nice"},
	{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]}`

func TestStreamFraming(t *testing.T) {
	s := New(WithAPIKey("k"))
	defer s.Close()
	s.Enqueue(Response{Reasoning: []string{"hm"}, Content: []string{"Hel", "lo"},
		Usage: &Usage{PromptTokens: 5, CompletionTokens: 3, TotalTokens: 8, CachedTokens: 2, ReasoningTokens: 1}})

	resp := post(t, s.URL+"/chat/completions", "k", streamBody)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs := events(t, resp.Body)
	if len(evs) != 6 || evs[5] != "[DONE]" {
		t.Fatalf("events %q", evs)
	}
	var text, reasoning, finish string
	for i, e := range evs[:4] {
		var c testChunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		if c.Object != "chat.completion.chunk" || c.ID == "" || c.Created == 0 || c.Model != "doubao-test" || len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %s", i, e)
		}
		if i == 0 && c.Choices[0].Delta.Role != "assistant" {
			t.Errorf("first chunk has no role: %s", e)
		}
		if c.Choices[0].FinishReason != nil {
			finish = *c.Choices[0].FinishReason
		} else if !strings.Contains(e, `"finish_reason":null`) {
			t.Errorf("finish_reason should be null: %s", e)
		}
		text += c.Choices[0].Delta.Content
		reasoning += c.Choices[0].Delta.Reasoning
	}
	if text != "Hello" || reasoning != "hm" || finish != "stop" {
		t.Errorf("text %q reasoning %q finish %q", text, reasoning, finish)
	}
	var u testChunk
	if err := json.Unmarshal([]byte(evs[4]), &u); err != nil {
		t.Fatal(err)
	}
	if u.Choices == nil || len(u.Choices) != 0 || u.Usage == nil || u.Usage.TotalTokens != 8 ||
		u.Usage.PromptTokensDetails.CachedTokens != 2 || u.Usage.CompletionTokensDetails.ReasoningTokens != 1 {
		t.Errorf("usage chunk %s", evs[4])
	}

	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Path != ChatPath || r.Model != "doubao-test" || r.Thinking != "enabled" || len(r.Messages) != 2 ||
		r.Messages[1].Text != "look" || len(r.Messages[1].Images) != 1 || r.Messages[1].Images[0] != "https://x/a.png" ||
		r.Messages[0].Text != "be nice" || r.Header.Get("Authorization") != "Bearer k" || len(r.Raw) == 0 {
		t.Errorf("recorded %+v", r)
	}
}

func TestEchoWithoutUsage(t *testing.T) {
	s := New()
	defer s.Close()
	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi there you"}]}`)
	evs := events(t, resp.Body)
	var text string
	for _, e := range evs[:len(evs)-1] {
		var c testChunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		if c.Usage != nil || len(c.Choices) != 1 {
			t.Fatalf("unexpected usage or choices without include_usage: %s", e)
		}
		text += c.Choices[0].Delta.Content
	}
	if text != "You said: hi there you" || len(evs) < 4 {
		t.Errorf("echo %q in %d events", text, len(evs))
	}
}

func TestNonStreaming(t *testing.T) {
	s := New()
	defer s.Close()
	s.Enqueue(Response{Content: []string{"a", "b"}, FinishReason: "length"})
	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
	var body struct {
		Object  string
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Object != "chat.completion" || body.Choices[0].Message.Content != "ab" ||
		body.Choices[0].FinishReason != "length" || body.Usage.TotalTokens == 0 {
		t.Errorf("%+v", body)
	}
}

type errBody struct {
	Error ErrorBody `json:"error"`
}

func decodeErr(t *testing.T, resp *http.Response) ErrorBody {
	t.Helper()
	var b errBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Error
}

func TestErrors(t *testing.T) {
	s := New(WithAPIKey("k"))
	defer s.Close()

	resp := post(t, s.URL+"/chat/completions", "wrong", `{}`)
	if e := decodeErr(t, resp); resp.StatusCode != 401 || e.Code != "AuthenticationError" {
		t.Errorf("auth: %d %+v", resp.StatusCode, e)
	}
	resp = post(t, s.URL+"/models", "k", `{}`)
	if e := decodeErr(t, resp); resp.StatusCode != 404 || e.Code != "NotFound" {
		t.Errorf("wrong path: %d %+v", resp.StatusCode, e)
	}
	get, err := http.Get(s.URL + "/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != 404 {
		t.Errorf("GET: %d", get.StatusCode)
	}

	s.Enqueue(Response{Status: 429, ErrorCode: "RateLimitExceeded.EndpointRPMExceeded", RetryAfter: "3"},
		Response{ErrorCode: "OutofContextError"})
	resp = post(t, s.URL+"/chat/completions", "k", `{"model":"m","stream":true}`)
	e := decodeErr(t, resp)
	if resp.StatusCode != 429 || e.Code != "RateLimitExceeded.EndpointRPMExceeded" || resp.Header.Get("Retry-After") != "3" ||
		!strings.Contains(e.Message, "Request id: "+resp.Header.Get("X-Request-Id")) {
		t.Errorf("429: %d %+v %v", resp.StatusCode, e, resp.Header)
	}
	resp = post(t, s.URL+"/chat/completions", "k", `{"model":"m","stream":true}`)
	if e := decodeErr(t, resp); resp.StatusCode != 400 || e.Code != "OutofContextError" {
		t.Errorf("FIFO second: %d %+v", resp.StatusCode, e)
	}
	if n := len(s.Requests()); n != 5 {
		t.Errorf("recorded %d requests, want 5", n)
	}
}

func TestSetHandler(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetHandler(func(r Request) Response { return Response{Content: []string{"model " + r.Model}} })
	s.Enqueue(Response{Content: []string{"queued"}})
	for _, want := range []string{"queued", "model m"} {
		resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","messages":[]}`)
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), want) {
			t.Errorf("want %q in %s", want, b)
		}
	}
}

func TestCutAndStreamError(t *testing.T) {
	s := New()
	defer s.Close()
	s.Enqueue(Response{Content: []string{"a", "b", "c"}, CutAfter: 2},
		Response{Content: []string{"a"}, StreamError: &ErrorBody{Code: "InternalServiceError", Message: "boom"}})

	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true}`)
	b, err := io.ReadAll(resp.Body)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut: err %v, want unexpected EOF", err)
	}
	if strings.Contains(string(b), `"c"`) || strings.Contains(string(b), "[DONE]") || strings.Contains(string(b), `"stop"`) {
		t.Errorf("cut stream went too far: %s", b)
	}

	resp = post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true}`)
	evs := events(t, resp.Body)
	if len(evs) != 2 || !strings.HasPrefix(evs[1], `{"error":{"code":"InternalServiceError","message":"boom"`) {
		t.Errorf("stream error events %q", evs)
	}
}

func TestCloseWithHangingStream(t *testing.T) {
	s := New()
	s.Enqueue(Response{Content: []string{"a"}, Hang: true})
	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true}`)
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close blocked on a hanging stream")
	}
	s.Close() // idempotent
}

func TestTiming(t *testing.T) {
	s := New(WithTiming(50*time.Millisecond, 10*time.Millisecond))
	defer s.Close()
	start := time.Now()
	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b"}]}`)
	evs := events(t, resp.Body)
	if d := time.Since(start); d < 50*time.Millisecond+time.Duration(len(evs)-3)*10*time.Millisecond {
		t.Errorf("%d events took only %v", len(evs), d)
	}
}

func TestFirstChunkHook(t *testing.T) {
	type first struct {
		text string
		at   time.Time
	}
	got := make(chan first, 2)
	s := New(WithTiming(30*time.Millisecond, 0), WithFirstChunkHook(func(r Request, at time.Time) {
		got <- first{r.Messages[0].Text, at}
	}))
	defer s.Close()
	start := time.Now()
	resp := post(t, s.URL+"/chat/completions", "", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b"}]}`)
	events(t, resp.Body)
	post(t, s.URL+"/chat/completions", "", `{"model":"m","messages":[{"role":"user","content":"not streamed"}]}`)
	select {
	case f := <-got:
		if f.text != "a b" || f.at.Sub(start) < 30*time.Millisecond {
			t.Errorf("hook got %q after %v", f.text, f.at.Sub(start))
		}
	default:
		t.Fatal("hook not called")
	}
	if len(got) != 0 {
		t.Error("hook called more than once per streamed answer, or for a non-streamed one")
	}
}

func TestSplitWords(t *testing.T) {
	for _, in := range []string{"", "a", "You said: hello  world ", " lead"} {
		if got := strings.Join(SplitWords(in), ""); got != in {
			t.Errorf("SplitWords(%q) joins to %q", in, got)
		}
	}
	if n := len(SplitWords("You said: hi")); n != 3 {
		t.Errorf("got %d chunks, want 3", n)
	}
}

func TestAppendDeltaMatchesMarshal(t *testing.T) {
	base := chunk{ID: `021-"id"`, Object: "chat.completion.chunk", Created: 1718000000, Model: "doubao-seed-1-6-250615"}
	prefix := deltaPrefix(base)
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		d      delta
		finish *string
	}{
		{delta{Role: "assistant", Content: str("Hel")}, nil},
		{delta{Content: str(" <b>&\"你好\"\n\u2028😀")}, nil},
		{delta{Reasoning: str("hm\\")}, nil},
		{delta{Content: str(" plain ASCII, with 'quotes' {and} [brackets]")}, nil},
		{delta{Content: str("tab\there")}, nil},
		{delta{Role: "assistant", Content: str("")}, str("stop")},
		{delta{}, str("length")},
	} {
		c := base
		c.Choices = []choice{{Delta: tc.d, FinishReason: tc.finish}}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(appendDelta(nil, prefix, tc.d, tc.finish)); got != "data: "+string(want)+"\n\n" {
			t.Errorf("appendDelta\n got %s\nwant data: %s", got, want)
		}
	}
}

package arkclient

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/valyala/fastjson"
)

func respReq(text string) ResponsesRequest {
	return ResponsesRequest{Model: "doubao-seed-1-6-250615", Store: true,
		Input: []Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: text}}}
}

func TestResponsesURL(t *testing.T) {
	for _, tc := range []struct{ address, want string }{
		{"https://ark.cn-beijing.volces.com/api/v3", "https://ark.cn-beijing.volces.com/api/v3/responses"},
		{"https://ark.cn-beijing.volces.com/api/v3/", "https://ark.cn-beijing.volces.com/api/v3/responses"},
		{"https://ark.cn-beijing.volces.com/api/v3/chat/completions#", "https://ark.cn-beijing.volces.com/api/v3/responses"},
		{"https://ark.cn-beijing.volces.com/api/v3/chat/completions", "https://ark.cn-beijing.volces.com/api/v3/responses"},
		{"https://api.example.com", "https://api.example.com/v1/responses"},
		{"https://proxy.example.com/ark/responses#", "https://proxy.example.com/ark/responses"},
		{"https://proxy.example.com/custom#", "https://proxy.example.com/custom/responses"},
	} {
		c, err := New(tc.address, "", WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ResponsesURL(); got != tc.want {
			t.Errorf("%s: ResponsesURL = %s, want %s", tc.address, got, tc.want)
		}
	}
}

func TestResponsesBody(t *testing.T) {
	temp := float32(0)
	req := ResponsesRequest{
		Model: "ep-1", Store: true, ExpireAt: 1700000000, Caching: true, MaxOutputTokens: 4096, Temperature: &temp,
		Thinking: "disabled", ReasoningEffort: "low",
		Input: []Message{{Role: "system", Content: "sys"}, {Role: "user", Content: "q1"}, {Role: "assistant", Content: "a1"},
			{Role: "user", Content: "q2", Images: []string{"https://img/x.png"}}},
	}
	body, err := responsesBody(req)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	_ = json.Unmarshal(body, &got)
	_ = json.Unmarshal([]byte(`{"model":"ep-1","stream":true,"store":true,"expire_at":1700000000,"caching":{"type":"enabled"},
		"max_output_tokens":4096,"temperature":0,"thinking":{"type":"disabled"},"reasoning":{"effort":"low"},
		"input":[
		 {"type":"message","role":"system","content":[{"type":"input_text","text":"sys"}]},
		 {"type":"message","role":"user","content":[{"type":"input_text","text":"q1"}]},
		 {"type":"message","role":"assistant","content":[{"type":"output_text","text":"a1"}]},
		 {"type":"message","role":"user","content":[{"type":"input_text","text":"q2"},{"type":"input_image","image_url":"https://img/x.png"}]}]}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body\n%s\nwant\n%v", body, want)
	}

	// Web search: the tool with its options, and no caching (Ark refuses both).
	req = respReq("news?")
	req.Caching = true
	req.WebSearch = &WebSearch{Limit: 5, Sources: []string{"search_engine", "toutiao"}, MaxToolCalls: 2,
		UserLocation: &Location{Country: "中国", City: "北京"}}
	body, err = responsesBody(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(body, &got)
	m := got.(map[string]any)
	if _, ok := m["caching"]; ok {
		t.Errorf("caching sent with web search: %s", body)
	}
	tools, _ := json.Marshal(m["tools"])
	if want := `[{"limit":5,"sources":["search_engine","toutiao"],"type":"web_search","user_location":{"city":"北京","country":"中国","type":"approximate"}}]`; string(tools) != want {
		t.Errorf("tools = %s, want %s", tools, want)
	}
	if m["max_tool_calls"] != 2.0 {
		t.Errorf("max_tool_calls = %v", m["max_tool_calls"])
	}

	for _, bad := range []ResponsesRequest{{Thinking: "maybe"}, {ReasoningEffort: "extreme"}, {WebSearch: &WebSearch{Sources: []string{"bing"}}}} {
		if _, err := responsesBody(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestResponsesSearchCitationsUsage(t *testing.T) {
	srv := arktest.New()
	defer srv.Close()
	srv.Enqueue(arktest.Response{
		Searches: []arktest.Search{{Query: "ark news", Sources: []arktest.Citation{
			{Title: "Ark  launches", URL: "https://news.example.com/1"}, {Title: "Again", URL: "https://news.example.com/1"},
			{Title: "Bad", URL: "javascript:alert(1)"}, {Title: "Blog", URL: "https://blog.example.com/2"}}}},
		Reasoning: []string{"Let me ", "look."},
		Content:   []string{"Ark ", "shipped ", "it."},
	})
	c := newClient(t, srv, "")
	req := respReq("what's new?")
	req.WebSearch = &WebSearch{Limit: 3}
	s, err := c.StreamResponses(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := recvAll(t, s)
	if err != nil {
		t.Fatal(err)
	}
	content, reasoning := joined(chunks)
	if content != "Ark shipped it." || reasoning != "Let me look." {
		t.Errorf("content %q reasoning %q", content, reasoning)
	}
	var phases []SearchPhase
	var sources []Source
	var last Chunk
	for _, ch := range chunks {
		if ch.Search != SearchNone {
			phases = append(phases, ch.Search)
		}
		sources = append(sources, ch.Sources...)
		last = ch
	}
	if want := []SearchPhase{SearchStarted, SearchStarted, SearchDone}; !reflect.DeepEqual(phases, want) {
		t.Errorf("search phases %v, want %v", phases, want)
	}
	if phases[0] != chunks[0].Search {
		t.Errorf("the search did not come first: %+v", chunks[0])
	}
	want := []Source{{Title: "Ark launches", URL: "https://news.example.com/1"}, {Title: "Blog", URL: "https://blog.example.com/2"}}
	if !reflect.DeepEqual(sources, want) {
		t.Errorf("sources %+v, want %+v", sources, want)
	}
	if !strings.HasPrefix(last.ResponseID, "resp_") || last.FinishReason != "stop" || last.Usage == nil || last.Usage.WebSearches != 1 {
		t.Errorf("last chunk %+v usage %+v", last, last.Usage)
	}
	r := srv.Requests()[0]
	if r.Path != arktest.ResponsesPath || r.Header.Get("Ark-Beta-Web-Search") != "true" || r.WebSearch["limit"] != 3.0 || r.Caching {
		t.Errorf("request %s header %v tool %v caching %v", r.Path, r.Header, r.WebSearch, r.Caching)
	}
}

func TestResponsesChainCarriesContextAndCaches(t *testing.T) {
	srv := arktest.New()
	defer srv.Close()
	c := newClient(t, srv, "")
	first := respReq("my name is Ada")
	first.Caching = true
	chunks, err := recvAllResponses(t, c, first)
	if err != nil {
		t.Fatal(err)
	}
	id := chunks[len(chunks)-1].ResponseID
	next := ResponsesRequest{Model: first.Model, Store: true, Caching: true, PreviousResponseID: id,
		Input: []Message{{Role: "user", Content: "what is my name?"}}}
	chunks, err = recvAllResponses(t, c, next)
	if err != nil {
		t.Fatal(err)
	}
	u := chunks[len(chunks)-1].Usage
	if u == nil || u.CachedTokens == 0 || u.CachedTokens > u.PromptTokens {
		t.Errorf("usage %+v: want cached tokens of the first turn", u)
	}
	r := srv.Requests()[1]
	if len(r.Messages) != 1 || len(r.Context) != 4 || r.Context[1].Text != "my name is Ada" || r.PreviousResponseID != id {
		t.Errorf("second request sent %d messages, context %+v", len(r.Messages), r.Context)
	}
}

func recvAllResponses(t *testing.T, c *Client, req ResponsesRequest) ([]Chunk, error) {
	t.Helper()
	s, err := c.StreamResponses(t.Context(), req)
	if err != nil {
		return nil, err
	}
	return recvAll(t, s)
}

func TestResponsesChainLost(t *testing.T) {
	srv := arktest.New()
	defer srv.Close()
	c := newClient(t, srv, "")
	chunks, err := recvAllResponses(t, c, respReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	srv.ExpireResponses()
	next := ResponsesRequest{Model: "m", PreviousResponseID: chunks[len(chunks)-1].ResponseID, Input: []Message{{Role: "user", Content: "again"}}}
	_, err = recvAllResponses(t, c, next)
	e := asError(t, err)
	if e.Code != CodeChainLost || e.Status != 400 || e.Retryable || len(srv.Requests()) != 2 {
		t.Errorf("error %+v after %d requests: want %s, not retried", e, len(srv.Requests()), CodeChainLost)
	}

	// The same error as an event inside the stream.
	srv.Enqueue(arktest.Response{StreamError: &arktest.ErrorBody{Code: "InvalidParameter", Param: "previous_response_id",
		Message: "The previous response resp_x is not found."}})
	_, err = recvAllResponses(t, c, respReq("x"))
	if e := asError(t, err); e.Code != CodeChainLost {
		t.Errorf("in-stream error %+v, want %s", e, CodeChainLost)
	}
	// Not every InvalidParameter is a lost chain.
	srv.Enqueue(arktest.Response{Status: 400, ErrorCode: "InvalidParameter", ErrorMessage: "The parameter `temperature` is invalid."})
	_, err = recvAllResponses(t, c, respReq("x"))
	if e := asError(t, err); e.Code != "InvalidParameter" {
		t.Errorf("error %+v, want InvalidParameter", e)
	}
}

func TestResponsesErrorsMidStream(t *testing.T) {
	srv := arktest.New()
	defer srv.Close()
	c := newClient(t, srv, "")
	srv.Enqueue(arktest.Response{Content: []string{"partial ", "answer"}, StreamError: &arktest.ErrorBody{Code: "OutputTextSensitiveContentDetected", Message: "blocked"}})
	chunks, err := recvAllResponses(t, c, respReq("x"))
	e := asError(t, err)
	if content, _ := joined(chunks); content != "partial answer" || e.Code != "OutputTextSensitiveContentDetected" || !e.Interrupted {
		t.Errorf("content %q error %+v", content, e)
	}
	srv.Enqueue(arktest.Response{Content: []string{"so "}, Failed: &arktest.ErrorBody{Code: "InternalServiceError", Message: "oops"}})
	_, err = recvAllResponses(t, c, respReq("x"))
	if e := asError(t, err); e.Code != "InternalServiceError" || !e.Interrupted {
		t.Errorf("response.failed gave %+v", e)
	}
	srv.Enqueue(arktest.Response{Content: []string{"cut ", "here ", "never"}, CutAfter: 2})
	_, err = recvAllResponses(t, c, respReq("x"))
	if e := asError(t, err); e.Code != CodeStreamInterrupted {
		t.Errorf("cut stream gave %+v", e)
	}
	srv.Enqueue(arktest.Response{Content: []string{"long"}, FinishReason: "length"})
	chunks, err = recvAllResponses(t, c, respReq("x"))
	if err != nil || chunks[len(chunks)-1].FinishReason != "length" {
		t.Errorf("incomplete response: %v, last %+v", err, chunks[len(chunks)-1])
	}
	// An error response before the stream is retried like chat's.
	srv.Enqueue(arktest.Response{Status: 500}, arktest.Response{Content: []string{"ok"}})
	chunks, err = recvAllResponses(t, c, respReq("x"))
	if content, _ := joined(chunks); err != nil || content != "ok" {
		t.Errorf("after a retry: %q, %v", content, err)
	}
}

func TestDecodeEvent(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Chunk
		code string // of an error
	}{
		{raw: `{"type":"response.output_text.delta","delta":"hi \ud83d\ude00","sequence_number":3}`, want: Chunk{Content: "hi 😀"}},
		{raw: `{"type":"response.reasoning_summary_text.delta","delta":"hmm"}`, want: Chunk{Reasoning: "hmm"}},
		{raw: `{"type":"response.web_search_call.searching","item_id":"ws"}`, want: Chunk{Search: SearchStarted}},
		{raw: `{"type":"response.web_search_call.completed","item_id":"ws"}`, want: Chunk{Search: SearchDone}},
		{raw: `{"type":"response.output_text.annotation.added","annotation":{"type":"url_citation","title":"","site_name":"Site","url":"https://a.example"}}`,
			want: Chunk{Sources: []Source{{Title: "Site", URL: "https://a.example"}}}},
		{raw: `{"type":"response.output_text.annotation.added","annotation":{"type":"file_citation","url":"https://a.example"}}`},
		{raw: `{"type":"response.some_future_event","x":1}`},
		{raw: `{"type":"response.completed","response":{"id":"resp_1","status":"completed","usage":{"input_tokens":10,"output_tokens":5,"total_tokens":15,"input_tokens_details":{"cached_tokens":7},"output_tokens_details":{"reasoning_tokens":2},"tool_usage":{"web_search":2}}}}`,
			want: Chunk{ResponseID: "resp_1", FinishReason: "stop", Usage: &Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 7, ReasoningTokens: 2, WebSearches: 2}}},
		{raw: `{"type":"response.incomplete","response":{"id":"resp_2","incomplete_details":{"reason":"content_filter"}}}`,
			want: Chunk{ResponseID: "resp_2", FinishReason: "content_filter"}},
		{raw: `{"type":"error","code":"InvalidParameter","message":"bad","param":"input"}`, code: "InvalidParameter"},
		{raw: `{"error":{"code":"ServerOverloaded","message":"busy"}}`, code: "ServerOverloaded"},
		{raw: `{"type":"response.failed","response":{"error":{"code":"InternalServiceError","message":"x"}}}`, code: "InternalServiceError"},
	} {
		var d eventDecoder
		var p fastjson.Parser
		got, apiErr, err := d.decode(&p, []byte(tc.raw))
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		if tc.code != "" {
			if apiErr == nil || apiErr.Code != tc.code {
				t.Errorf("%s: error %+v, want code %s", tc.raw, apiErr, tc.code)
			}
			continue
		}
		if apiErr != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v (usage %+v), %v\nwant %+v", tc.raw, got, got.Usage, apiErr, tc.want)
		}
	}
}

// FuzzDecodeEvent: any event data decodes to a chunk, an Ark error or a
// decoding error, without panicking; a text delta gives back its text as
// encoding/json reads it (keys exact, as Ark sends them), and a source is
// cited once, with a web URL.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"response.output_text.delta","delta":"hi"}`,
		`{"type":"response.output_text.delta","delta":"\ud83d"}`,
		`{"type":"response.output_text.annotation.added","annotation":{"type":"url_citation","title":"t","url":"https://x"}}`,
		`{"type":"response.output_item.done","item":{"type":"message","content":[{"type":"output_text","annotations":[{"type":"url_citation","url":"http://y"}]}]}}`,
		`{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":1,"tool_usage":{"web_search":1}}}}`,
		`{"type":"response.failed","response":{"error":null}}`,
		`{"type":"error"}`, `{"error":{}}`, `[]`, `null`, `"x"`, `{"type":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var d eventDecoder
		var p fastjson.Parser
		for round := range 2 { // twice: the second time every source was cited already
			ch, _, err := d.decode(&p, raw)
			if err != nil {
				return
			}
			if round == 1 && len(ch.Sources) > 0 {
				t.Fatalf("sources cited twice: %+v", ch.Sources)
			}
			// A map, not a struct: encoding/json matches a struct's field
			// names in any case ("tYpe"), Ark's keys are exact; and only
			// without repeated keys, of which encoding/json keeps the last.
			var ev map[string]any
			if json.Unmarshal(raw, &ev) == nil && ev["type"] == "response.output_text.delta" && uniqueKeys(raw) {
				if delta, _ := ev["delta"].(string); ch.Content != delta {
					t.Fatalf("content %q, encoding/json reads %q", ch.Content, delta)
				}
			}
			seen := map[string]bool{}
			for _, s := range ch.Sources {
				if seen[s.URL] || !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
					t.Fatalf("source %+v in %+v", s, ch.Sources)
				}
				seen[s.URL] = true
			}
		}
	})
}

func TestChatReasoningEffort(t *testing.T) {
	req := userReq("hi")
	req.ReasoningEffort = "high"
	body, err := requestBody(req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"reasoning_effort":"high"`) {
		t.Errorf("body %s", body)
	}
	req.ReasoningEffort = ""
	if body, _ := requestBody(req); strings.Contains(string(body), "reasoning_effort") {
		t.Errorf("empty effort sent: %s", body)
	}
}

// uniqueKeys reports whether the JSON object raw names no key twice at
// its top level.
func uniqueKeys(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	seen := map[string]bool{}
	depth := 0
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return err == io.EOF
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
			expectKey = depth == 1 // the object began, or a value in it ended
			continue
		case string:
			if depth == 1 && expectKey {
				if seen[v] {
					return false
				}
				seen[v] = true
				expectKey = false
				continue
			}
		}
		if depth == 1 {
			expectKey = true // a scalar value ended
		}
	}
}

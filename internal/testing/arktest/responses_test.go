package arktest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// responseEvents reads Responses SSE events, checking the framing: an
// "event: <type>" line, a "data: <json>" line repeating the type, a blank
// line; then "data: [DONE]".
func responseEvents(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	br := bufio.NewReader(r)
	var out []map[string]any
	for range 1000 {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return out
		}
		if line == "data: [DONE]\n" {
			continue
		}
		if line == "\n" {
			continue
		}
		typ, ok := strings.CutPrefix(line, "event: ")
		if !ok {
			t.Fatalf("line %q is not an event line", line)
		}
		data, _ := br.ReadString('\n')
		raw, ok := strings.CutPrefix(data, "data: ")
		if !ok {
			t.Fatalf("event %q followed by %q", typ, data)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["type"] != strings.TrimSpace(typ) || ev["sequence_number"] != float64(len(out)) {
			t.Fatalf("event %q has data %s", typ, raw)
		}
		if blank, _ := br.ReadString('\n'); blank != "\n" {
			t.Fatalf("event %q not followed by a blank line", typ)
		}
		out = append(out, ev)
	}
	t.Fatal("too many events")
	return nil
}

func TestResponsesEventsAndChain(t *testing.T) {
	s := New()
	defer s.Close()
	s.Enqueue(Response{Searches: []Search{{Query: "q", Sources: []Citation{{Title: "T", URL: "https://x.example"}}}}, Content: []string{"a", "b"}})
	resp := post(t, s.URL+"/responses", "", `{"model":"m","stream":true,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],"tools":[{"type":"web_search"}]}`)
	evs := responseEvents(t, resp.Body)
	var types []string
	for _, ev := range evs {
		types = append(types, ev["type"].(string))
	}
	want := "response.created response.output_item.added response.web_search_call.in_progress response.web_search_call.searching response.web_search_call.completed response.output_item.done " +
		"response.output_item.added response.output_text.delta response.output_text.delta response.output_text.annotation.added response.output_text.done response.output_item.done response.completed"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
	final := evs[len(evs)-1]["response"].(map[string]any)
	id := final["id"].(string)
	usage := final["usage"].(map[string]any)
	if usage["tool_usage"].(map[string]any)["web_search"] != 1.0 {
		t.Errorf("usage %v", usage)
	}

	// A continuation sees the stored context.
	post(t, s.URL+"/responses", "", fmt.Sprintf(`{"model":"m","stream":true,"previous_response_id":%q,"input":[{"role":"user","content":"more"}]}`, id)).Body.Close()
	if r := s.Requests()[1]; len(r.Context) != 3 || r.Context[1].Text != "ab" || r.Context[2].Text != "more" {
		t.Errorf("context %+v", r.Context)
	}

	// Refusals as Ark's: an expired id, caching with tools, an unknown field, chat part shapes.
	for _, tc := range []struct{ body, want string }{
		{`{"model":"m","stream":true,"previous_response_id":"resp_nope","input":"x"}`, `"param":"previous_response_id"`},
		{`{"model":"m","caching":{"type":"enabled"},"tools":[{"type":"web_search"}],"input":"x"}`, "caching"},
		{`{"model":"m","caching":{"type":"enabled"},"instructions":"be nice","input":"x"}`, "caching"},
		{`{"model":"m","messages":[],"input":"x"}`, "messages"},
		{`{"model":"m","input":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, "input.content.type"},
	} {
		r := post(t, s.URL+"/responses", "", tc.body)
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 400 || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s", tc.body, r.StatusCode, b)
		}
	}
}

func TestResponsesExpiry(t *testing.T) {
	s := New()
	defer s.Close()
	past := time.Now().Add(-time.Second).Unix()
	r := post(t, s.URL+"/responses", "", fmt.Sprintf(`{"model":"m","stream":true,"expire_at":%d,"input":"x"}`, past))
	evs := responseEvents(t, r.Body)
	id := evs[len(evs)-1]["response"].(map[string]any)["id"].(string)
	r = post(t, s.URL+"/responses", "", fmt.Sprintf(`{"model":"m","stream":true,"previous_response_id":%q,"input":"y"}`, id))
	if r.StatusCode != 400 || s.StoredResponses() != 0 {
		t.Errorf("expired response: status %d, %d stored", r.StatusCode, s.StoredResponses())
	}
}

package arkclient

import (
	"encoding/json"
	"strings"

	openai "github.com/sashabaranov/go-openai"
	"github.com/valyala/fastjson"
	"github.com/volcengine/volcengine-go-sdk/service/arkruntime/model/responses"
)

// eventDecoder turns the Responses API's stream events into Chunks. It
// remembers the URLs cited so far, so that each source is reported once.
type eventDecoder struct {
	cited map[string]bool
}

// decode decodes one event's data with p: text and reasoning deltas, web
// search progress, citations, and the end (response.completed or
// .incomplete); response.failed, an "error" event and a bare
// {"error":{...}} give Ark's error. Events the bot has no use for (and
// types it does not know) give an empty Chunk.
//
// Fields are read with fastjson rather than into the SDK's event types,
// whose enums refuse any value newer than the SDK; the usage and the
// citations use the SDK's types.
func (d *eventDecoder) decode(p *fastjson.Parser, raw []byte) (Chunk, *openai.APIError, error) {
	v, err := p.ParseBytes(raw)
	if err == nil {
		err = validate(raw)
	}
	if err != nil {
		return Chunk{}, nil, err
	}
	typ := string(v.GetStringBytes("type"))
	if typ == "" && v.Exists("error") && v.Get("error").Type() == fastjson.TypeObject {
		return Chunk{}, eventError(v.Get("error")), nil
	}
	var ch Chunk
	switch typ {
	case "response.output_text.delta":
		ch.Content = delta(v, raw)
	case "response.reasoning_summary_text.delta", "response.reasoning_text.delta":
		ch.Reasoning = delta(v, raw)
	case "response.web_search_call.in_progress", "response.web_search_call.searching":
		ch.Search = SearchStarted
	case "response.web_search_call.completed":
		ch.Search = SearchDone
	case "response.output_text.annotation.added":
		d.cite(&ch, v.Get("annotation"))
	case "response.output_item.done":
		d.citeItem(&ch, v.Get("item"))
	case "response.completed", "response.incomplete":
		return d.end(v.Get("response"), typ == "response.completed")
	case "response.failed":
		e := eventError(v.Get("response", "error"))
		if e.Message == "" {
			e.Message = "the response failed"
		}
		return Chunk{}, e, nil
	case "error":
		return Chunk{}, eventError(v), nil
	}
	return ch, nil, nil
}

// end is the last chunk, from the final response object r: its ID, usage
// and finish reason, and any citation not reported yet.
func (d *eventDecoder) end(r *fastjson.Value, completed bool) (Chunk, *openai.APIError, error) {
	ch := Chunk{ResponseID: str(r, "id"), FinishReason: "stop"}
	if !completed {
		reason := str(r, "incomplete_details", "reason")
		switch {
		case strings.Contains(reason, "filter"):
			ch.FinishReason = "content_filter"
		default: // max_output_tokens, or a reason newer than the bot
			ch.FinishReason = "length"
		}
	}
	for _, item := range r.GetArray("output") {
		d.citeItem(&ch, item)
	}
	if u := r.Get("usage"); u != nil && u.Type() == fastjson.TypeObject {
		var usage responses.Usage
		if err := json.Unmarshal(u.MarshalTo(nil), &usage); err != nil {
			return Chunk{}, nil, err
		}
		ch.Usage = &Usage{
			PromptTokens: int(usage.InputTokens), CompletionTokens: int(usage.OutputTokens), TotalTokens: int(usage.TotalTokens),
			CachedTokens:    int(usage.GetInputTokensDetails().GetCachedTokens()),
			ReasoningTokens: int(usage.GetOutputTokensDetails().GetReasoningTokens()),
			WebSearches:     int(usage.GetToolUsage().GetWebSearch()),
		}
		if ch.Usage.WebSearches == 0 { // older responses put it next to the usage
			ch.Usage.WebSearches = r.GetInt("tool_usage", "web_search")
		}
	}
	return ch, nil, nil
}

// citeItem reports the url_citation annotations of an output message item.
func (d *eventDecoder) citeItem(ch *Chunk, item *fastjson.Value) {
	if str(item, "type") != "message" {
		return
	}
	for _, part := range item.GetArray("content") {
		for _, a := range part.GetArray("annotations") {
			d.cite(ch, a)
		}
	}
}

// cite adds annotation a to ch's sources when it is a url_citation with a
// web URL not cited before.
func (d *eventDecoder) cite(ch *Chunk, a *fastjson.Value) {
	if a == nil || a.Type() != fastjson.TypeObject {
		return
	}
	var ann responses.Annotation
	if json.Unmarshal(a.MarshalTo(nil), &ann) != nil || ann.Type != responses.AnnotationType_url_citation {
		return
	}
	u := strings.TrimSpace(ann.Url)
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") || d.cited[u] {
		return
	}
	if d.cited == nil {
		d.cited = map[string]bool{}
	}
	d.cited[u] = true
	title := strings.Join(strings.Fields(ann.Title), " ")
	if title == "" {
		title = ann.GetSiteName()
	}
	ch.Sources = append(ch.Sources, Source{Title: title, URL: u})
}

// eventError reads an error object ({code, message, param}) as go-openai's
// error type, which the stream's classification reads; a missing code
// stays nil (an interrupted stream).
func eventError(v *fastjson.Value) *openai.APIError {
	e := &openai.APIError{Message: str(v, "message")}
	if c := str(v, "code"); c != "" {
		e.Code = c
	}
	if p := str(v, "param"); p != "" {
		e.Param = &p
	}
	return e
}

// delta is the event's "delta" text, decoded by encoding/json where
// fastjson's unescaping differs from it (see needsExactStrings).
func delta(v *fastjson.Value, raw []byte) string {
	if needsExactStrings(raw) {
		// A map, not a struct, whose fields encoding/json would match in
		// any case ("deltA"): Ark's keys are exact, as fastjson reads them.
		var e map[string]json.RawMessage
		var d string
		if json.Unmarshal(raw, &e) == nil {
			_ = json.Unmarshal(e["delta"], &d)
		}
		return d
	}
	return str(v, "delta")
}

// str is the string at keys in v, "" when absent or not a string.
func str(v *fastjson.Value, keys ...string) string {
	if v == nil {
		return ""
	}
	return string(v.GetStringBytes(keys...))
}

package arktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ResponsesPath is the Responses API route the fake answers.
const ResponsesPath = BasePath + "/responses"

// Search scripts one web search of a Responses answer: its events come
// before the answer's text, and its citations as url_citation annotations
// after it.
type Search struct {
	Query   string
	Sources []Citation
}

// Citation is a web page a searched answer cites.
type Citation struct {
	Title, URL string
}

// defaultExpiry is how long a stored response lives without expire_at, as on Ark.
const defaultExpiry = 72 * time.Hour

// stored is a response the fake keeps for previous_response_id: the whole
// context it saw (carried, input and output; no reasoning), until expiry.
type stored struct {
	context []RequestMessage
	total   int  // its total_tokens
	caching bool // it was made with caching enabled
	expires time.Time
}

// responsesFields are the request fields Ark's Responses API accepts; the
// fake refuses others with 400, as Ark does.
var responsesFields = []string{"model", "input", "instructions", "previous_response_id", "stream", "store", "expire_at",
	"caching", "thinking", "reasoning", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
	"max_tool_calls", "parallel_tool_calls", "text", "include", "service_tier"}

// ExpireResponse makes the stored response id unknown, as once it expired.
func (s *Server) ExpireResponse(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.stored, id)
}

// ExpireResponses forgets every stored response, as a fake Ark in another
// region would.
func (s *Server) ExpireResponses() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.stored)
}

// StoredResponses is how many responses the fake keeps (expired ones included
// until a request finds them).
func (s *Server) StoredResponses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stored)
}

// parseResponsesRequest reads a Responses API body into req: the input
// items as Messages, and the chain and tool fields. It returns Ark's
// message for a body Ark refuses, else "".
func parseResponsesRequest(req *Request) string {
	b := req.Body
	for k := range b {
		if !slices.Contains(responsesFields, k) {
			return fmt.Sprintf("The parameter `%s` specified in the request is not valid.", k)
		}
	}
	req.PreviousResponseID, _ = b["previous_response_id"].(string)
	req.Instructions, _ = b["instructions"].(string)
	req.Store = true
	if st, ok := b["store"].(bool); ok {
		req.Store = st
	}
	if e, ok := b["expire_at"].(float64); ok {
		req.ExpireAt = int64(e)
	}
	if c, ok := b["caching"].(map[string]any); ok {
		req.Caching = c["type"] == "enabled"
	}
	if r, ok := b["reasoning"].(map[string]any); ok {
		req.ReasoningEffort, _ = r["effort"].(string)
	}
	tools, _ := b["tools"].([]any)
	for _, t := range tools {
		tm, _ := t.(map[string]any)
		typ, _ := tm["type"].(string)
		req.Tools = append(req.Tools, typ)
		if typ == "web_search" {
			req.WebSearch = tm
		}
	}
	switch in := b["input"].(type) {
	case string:
		req.Messages = []RequestMessage{{Role: "user", Text: in}}
	case []any:
		for _, item := range in {
			im, _ := item.(map[string]any)
			var rm RequestMessage
			rm.Role, _ = im["role"].(string)
			switch c := im["content"].(type) {
			case string:
				rm.Text = c
			case []any:
				var texts []string
				for _, p := range c {
					part, _ := p.(map[string]any)
					switch part["type"] {
					case "input_text", "output_text":
						t, _ := part["text"].(string)
						texts = append(texts, t)
					case "input_image":
						u, _ := part["image_url"].(string)
						rm.Images = append(rm.Images, u)
					default:
						return fmt.Sprintf("The parameter `input.content.type` %q specified in the request is not valid.", part["type"])
					}
				}
				rm.Text = strings.Join(texts, "\n")
			}
			req.Messages = append(req.Messages, rm)
		}
	default:
		return "The parameter `input` specified in the request is not valid."
	}
	return ""
}

// serveResponses answers POST /responses: it checks the request as Ark
// would (caching with instructions or tools refused; an unknown or expired
// previous_response_id refused), carries a chain's context, streams the
// scripted or echo answer as Responses events, and stores the response.
func (s *Server) serveResponses(w http.ResponseWriter, r *http.Request, req Request, reqID string, index int) {
	refused := parseResponsesRequest(&req)
	s.mu.Lock()
	s.requests[index] = req // with what the parse found
	s.mu.Unlock()
	if refused != "" {
		writeError(w, reqID, Response{Status: http.StatusBadRequest, ErrorCode: "InvalidParameter", ErrorMessage: refused})
		return
	}
	if req.Caching && (req.Instructions != "" || len(req.Tools) > 0) {
		writeError(w, reqID, Response{Status: http.StatusBadRequest, ErrorCode: "InvalidParameter",
			ErrorMessage: "The parameter `caching` can not be used with `instructions` or built-in tools."})
		return
	}
	now := time.Now()
	var prev *stored
	if id := req.PreviousResponseID; id != "" {
		s.mu.Lock()
		p, ok := s.stored[id]
		if ok && now.After(p.expires) {
			delete(s.stored, id)
			ok = false
		}
		s.mu.Unlock()
		if !ok {
			writeError(w, reqID, Response{Status: http.StatusBadRequest, ErrorCode: "InvalidParameter",
				ErrorMessage: fmt.Sprintf("The previous response %s is not found or has expired.", id), ErrorParam: "previous_response_id"})
			return
		}
		prev = &p
		req.Context = slices.Clone(p.context)
	}
	req.Context = append(req.Context, req.Messages...)
	s.mu.Lock()
	s.requests[index].Context = req.Context
	s.mu.Unlock()

	resp := s.next(req)
	if (resp.Status != 0 && resp.Status != http.StatusOK) || resp.ErrorCode != "" {
		writeError(w, reqID, resp)
		return
	}
	if resp.Usage == nil {
		resp.Usage = estimateUsage(Request{Messages: req.Context}, resp)
		if prev != nil && prev.caching && req.Caching {
			resp.Usage.CachedTokens = min(prev.total, resp.Usage.PromptTokens)
		}
	}
	id := fmt.Sprintf("resp_%s", reqID)
	s.streamResponse(w, r, req, id, resp, func() {
		if !req.Store {
			return
		}
		expires := now.Add(defaultExpiry)
		if req.ExpireAt > 0 {
			expires = time.Unix(req.ExpireAt, 0)
		}
		ctx := append(req.Context, RequestMessage{Role: "assistant", Text: strings.Join(resp.Content, "")})
		s.mu.Lock()
		s.stored[id] = stored{context: ctx, total: resp.Usage.TotalTokens, caching: req.Caching, expires: expires}
		s.mu.Unlock()
	})
}

// streamResponse streams resp as Responses events, calling store just
// before the last one (response.completed or .incomplete), so that a
// client that read it finds the response stored.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, req Request, id string, resp Response, store func()) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	seq := 0
	send := func(typ string, fields map[string]any) bool {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		b, err := json.Marshal(fields)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	object := func(status string) map[string]any {
		return map[string]any{"id": id, "object": "response", "created_at": time.Now().Unix(), "model": req.Model,
			"status": status, "store": req.Store, "previous_response_id": req.PreviousResponseID}
	}
	if !send("response.created", map[string]any{"response": object("in_progress")}) {
		return
	}
	p := s.newPace(r, resp)
	defer p.stop()
	pause := p.next
	hooks := func() {
		at := time.Now()
		if p.sent == 1 && s.onFirst != nil {
			s.onFirst(req, at)
		}
		if s.onChunk != nil {
			s.onChunk(req, at)
		}
	}
	var output []any
	var citations []any
	for i, search := range resp.Searches {
		item := fmt.Sprintf("ws_%d", i)
		if !pause() ||
			!send("response.output_item.added", map[string]any{"output_index": len(output), "item": map[string]any{"type": "web_search_call", "id": item, "status": "in_progress"}}) ||
			!send("response.web_search_call.in_progress", map[string]any{"output_index": len(output), "item_id": item}) ||
			!send("response.web_search_call.searching", map[string]any{"output_index": len(output), "item_id": item}) ||
			!pause() ||
			!send("response.web_search_call.completed", map[string]any{"output_index": len(output), "item_id": item}) {
			return
		}
		done := map[string]any{"type": "web_search_call", "id": item, "status": "completed", "action": map[string]any{"type": "search", "query": search.Query}}
		if !send("response.output_item.done", map[string]any{"output_index": len(output), "item": done}) {
			return
		}
		output = append(output, done)
		for _, c := range search.Sources {
			citations = append(citations, map[string]any{"type": "url_citation", "title": c.Title, "url": c.URL, "site_name": "example"})
		}
	}
	if len(resp.Reasoning) > 0 {
		item := "rs_0"
		if !send("response.output_item.added", map[string]any{"output_index": len(output), "item": map[string]any{"type": "reasoning", "id": item, "summary": []any{}}}) {
			return
		}
		for _, text := range resp.Reasoning {
			if !pause() || !send("response.reasoning_summary_text.delta", map[string]any{"output_index": len(output), "item_id": item, "summary_index": 0, "delta": text}) {
				return
			}
			hooks()
		}
		output = append(output, map[string]any{"type": "reasoning", "id": item, "summary": []any{map[string]any{"type": "summary_text", "text": strings.Join(resp.Reasoning, "")}}})
	}
	msg := "msg_0"
	idx := len(output)
	if !send("response.output_item.added", map[string]any{"output_index": idx, "item": map[string]any{"type": "message", "id": msg, "role": "assistant", "status": "in_progress", "content": []any{}}}) {
		return
	}
	for i, text := range resp.Content {
		if !pause() || !send("response.output_text.delta", map[string]any{"output_index": idx, "item_id": msg, "content_index": 0, "delta": text}) {
			return
		}
		hooks()
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
			e := resp.StreamError
			send("error", map[string]any{"code": e.Code, "message": e.Message, "param": e.Param})
		}
		return
	case resp.Failed != nil:
		o := object("failed")
		o["error"] = map[string]any{"code": resp.Failed.Code, "message": resp.Failed.Message}
		send("response.failed", map[string]any{"response": o})
		return
	}
	for i, c := range citations {
		if !send("response.output_text.annotation.added", map[string]any{"output_index": idx, "item_id": msg, "content_index": 0, "annotation_index": i, "annotation": c}) {
			return
		}
	}
	text := strings.Join(resp.Content, "")
	part := map[string]any{"type": "output_text", "text": text, "annotations": append([]any{}, citations...)}
	item := map[string]any{"type": "message", "id": msg, "role": "assistant", "status": "completed", "content": []any{part}}
	if !send("response.output_text.done", map[string]any{"output_index": idx, "item_id": msg, "content_index": 0, "text": text}) ||
		!send("response.output_item.done", map[string]any{"output_index": idx, "item": item}) {
		return
	}
	output = append(output, item)
	final, end := object("completed"), "response.completed"
	switch resp.FinishReason {
	case "length":
		final, end = object("incomplete"), "response.incomplete"
		final["incomplete_details"] = map[string]any{"reason": "max_output_tokens"}
	case "content_filter":
		final, end = object("incomplete"), "response.incomplete"
		final["incomplete_details"] = map[string]any{"reason": "content_filter"}
	}
	u := resp.Usage
	usage := map[string]any{"input_tokens": u.PromptTokens, "output_tokens": u.CompletionTokens, "total_tokens": u.TotalTokens,
		"input_tokens_details":  map[string]any{"cached_tokens": u.CachedTokens},
		"output_tokens_details": map[string]any{"reasoning_tokens": u.ReasoningTokens}}
	if len(resp.Searches) > 0 {
		usage["tool_usage"] = map[string]any{"web_search": len(resp.Searches)}
	}
	final["output"], final["usage"] = output, usage
	store()
	if !send(end, map[string]any{"response": final}) {
		return
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

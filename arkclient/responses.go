package arkclient

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/volcengine/volcengine-go-sdk/service/arkruntime/model/responses"
)

// ResponsesRequest is one request to Ark's Responses API (POST
// {base}/responses). Input holds the turns to send: the whole transcript
// (system prompt first) to start a chain, or only the new user message with
// PreviousResponseID to continue one.
type ResponsesRequest struct {
	Model              string
	Input              []Message
	PreviousResponseID string // continue the stored response with this ID; "" starts a chain
	Store              bool   // Ark keeps the response (and its input) until ExpireAt
	ExpireAt           int64  // Unix seconds; 0: Ark's default (3 days)
	// Caching asks Ark to cache the chain's context. Ark refuses it
	// together with WebSearch; the client then leaves it out.
	Caching         bool
	MaxOutputTokens int      // answer and reasoning, sent when > 0
	Temperature     *float32 // omitted when nil
	Thinking        string   // "enabled" | "disabled" | "auto"; "" omits it
	ReasoningEffort string   // "minimal" | "low" | "medium" | "high"; "" omits it
	WebSearch       *WebSearch
}

// WebSearch turns on Ark's built-in web_search tool.
type WebSearch struct {
	Limit        int      // results per search, 1-50; 0: Ark's default (10)
	Sources      []string // "search_engine", "toutiao", "douyin", "moji"; none: Ark's default
	UserLocation *Location
	MaxToolCalls int // searches per answer, 1-10; 0: Ark's default (3)
}

// Location is an approximate user location for web search.
type Location struct {
	Country, Region, City, Timezone string
}

// Source is a web page an answer cites.
type Source struct {
	Title, URL string
}

// SearchPhase is what a Chunk says of web search.
type SearchPhase int

// Search phases a Chunk reports.
const (
	SearchNone    SearchPhase = iota // no change
	SearchStarted                    // a web search is running
	SearchDone                       // it finished
)

// StreamResponses sends req to the Responses API with stream:true and
// returns its events as Chunks, with the same retries, timeouts and typed
// errors as Stream: text deltas as Content, reasoning summary deltas as
// Reasoning, web search calls as Search, url_citation annotations as
// Sources, and a last chunk with the response's ID, usage and finish reason
// ("stop", "length" or "content_filter"). A previous_response_id Ark no
// longer knows gives Code CodeChainLost.
func (c *Client) StreamResponses(ctx context.Context, req ResponsesRequest) (*Stream, error) {
	body, err := responsesBody(req)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: "building the request: " + err.Error(), cause: err}
	}
	return c.stream(ctx, call{url: c.responsesURL, model: req.Model, body: body, events: true, search: req.WebSearch != nil})
}

// ResponsesURL returns the Responses API URL the client posts to.
func (c *Client) ResponsesURL() string { return c.responsesURL }

// responsesBody encodes req with the official SDK's types.
func responsesBody(req ResponsesRequest) ([]byte, error) {
	items := make([]*responses.InputItem, 0, len(req.Input))
	for _, m := range req.Input {
		items = append(items, inputItem(m))
	}
	r := &responses.ResponsesRequest{
		Model:  req.Model,
		Input:  &responses.ResponsesInput{Union: &responses.ResponsesInput_ListValue{ListValue: &responses.InputItemList{ListValue: items}}},
		Stream: new(true),
		Store:  new(req.Store),
	}
	if req.PreviousResponseID != "" {
		r.PreviousResponseId = new(req.PreviousResponseID)
	}
	if req.ExpireAt > 0 {
		r.ExpireAt = new(req.ExpireAt)
	}
	if req.Caching && req.WebSearch == nil {
		r.Caching = &responses.ResponsesCaching{Type: responses.CacheType_enabled.Enum()}
	}
	if req.MaxOutputTokens > 0 {
		r.MaxOutputTokens = new(int64(req.MaxOutputTokens))
	}
	if req.Temperature != nil {
		r.Temperature = new(float64(*req.Temperature))
	}
	if req.Thinking != "" {
		t, ok := responses.ThinkingType_Enum_value[req.Thinking]
		if !ok || t == 0 {
			return nil, &json.UnsupportedValueError{Str: "thinking " + req.Thinking}
		}
		r.Thinking = &responses.ResponsesThinking{Type: responses.ThinkingType_Enum(t).Enum()}
	}
	if req.ReasoningEffort != "" {
		e, ok := responses.ReasoningEffort_Enum_value[req.ReasoningEffort]
		if !ok || e == 0 {
			return nil, &json.UnsupportedValueError{Str: "reasoning effort " + req.ReasoningEffort}
		}
		r.Reasoning = &responses.ResponsesReasoning{Effort: responses.ReasoningEffort_Enum(e)}
	}
	if ws := req.WebSearch; ws != nil {
		tool, err := webSearchTool(ws)
		if err != nil {
			return nil, err
		}
		r.Tools = []*responses.ResponsesTool{{Union: &responses.ResponsesTool_ToolWebSearch{ToolWebSearch: tool}}}
		if ws.MaxToolCalls > 0 {
			r.MaxToolCalls = new(int64(ws.MaxToolCalls))
		}
	}
	return json.Marshal(r)
}

// inputItem is one message as a Responses input item: text parts
// (input_text, or output_text for the assistant's earlier answers) and,
// on user messages, input_image parts.
func inputItem(m Message) *responses.InputItem {
	role := responses.MessageRole_Enum(responses.MessageRole_Enum_value[m.Role])
	textType := responses.ContentItemType_input_text
	if role == responses.MessageRole_assistant {
		textType = responses.ContentItemType_output_text
	}
	content := []*responses.ContentItem{{Union: &responses.ContentItem_Text{Text: &responses.ContentItemText{Type: textType, Text: m.Content}}}}
	if role == responses.MessageRole_user {
		for _, u := range m.Images {
			content = append(content, &responses.ContentItem{Union: &responses.ContentItem_Image{
				Image: &responses.ContentItemImage{Type: responses.ContentItemType_input_image, ImageUrl: u}}})
		}
	}
	return &responses.InputItem{Union: &responses.InputItem_InputMessage{InputMessage: &responses.ItemInputMessage{
		Type: responses.ItemType_message.Enum(), Role: role, Content: content}}}
}

// webSearchTool is ws as the SDK's web_search tool.
func webSearchTool(ws *WebSearch) (*responses.ToolWebSearch, error) {
	t := &responses.ToolWebSearch{Type: responses.ToolType_web_search}
	if ws.Limit > 0 {
		t.Limit = new(int64(ws.Limit))
	}
	for _, s := range ws.Sources {
		v, ok := responses.SourceType_Enum_value[s]
		if !ok || v == 0 {
			return nil, &json.UnsupportedValueError{Str: "web search source " + s}
		}
		t.Sources = append(t.Sources, responses.SourceType_Enum(v))
	}
	if l := ws.UserLocation; l != nil {
		t.UserLocation = &responses.UserLocation{Type: responses.UserLocationType_approximate,
			Country: optional(l.Country), Region: optional(l.Region), City: optional(l.City), Timezone: optional(l.Timezone)}
	}
	return t, nil
}

// optional is s as an optional field: nil when empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// chainLost reports whether an error Ark returned says the request's
// previous_response_id is unknown or expired. Ark does not document this
// error: match its parameter or its words loosely.
func chainLost(code, param, message string) bool {
	if strings.Contains(strings.ToLower(code), "previousresponse") || param == "previous_response_id" {
		return true
	}
	m := strings.ToLower(message)
	return strings.Contains(m, "previous response") || strings.Contains(m, "previous_response_id")
}

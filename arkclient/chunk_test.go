package arkclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"
	"github.com/valyala/fastjson"
)

// refChunk is the encoding/json decoder decodeChunk replaced: decodeChunk
// must give what it gives.
type refChunk struct {
	Error   *openai.APIError `json:"error"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		TotalTokens         int `json:"total_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails *struct {
			ReasoningTokens int `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	} `json:"usage"`
}

func refDecode(raw []byte) (Chunk, *openai.APIError, error) {
	var w refChunk
	if err := json.Unmarshal(raw, &w); err != nil {
		return Chunk{}, nil, err
	}
	if w.Error != nil {
		return Chunk{}, w.Error, nil
	}
	var ch Chunk
	for _, c := range w.Choices {
		if c.Index != 0 {
			continue
		}
		ch.Content += c.Delta.Content
		ch.Reasoning += c.Delta.ReasoningContent
		if c.FinishReason != "" {
			ch.FinishReason = c.FinishReason
		}
	}
	if u := w.Usage; u != nil {
		ch.Usage = &Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
		if u.PromptTokensDetails != nil {
			ch.Usage.CachedTokens = u.PromptTokensDetails.CachedTokens
		}
		if u.CompletionTokensDetails != nil {
			ch.Usage.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
		}
	}
	return ch, nil, nil
}

// arkChunk is a chunk as Ark streams it, with choices and usage as given.
func arkChunk(choices, usage string) string {
	return `{"id":"021718000000000000000000000000000000000000000000000000","object":"chat.completion.chunk","created":1718000000,"model":"doubao-seed-1-6-250615","choices":` + choices + `,"usage":` + usage + `}`
}

// arkChoice is a choice with index 0, the given delta fields and finish_reason.
func arkChoice(delta, finish string) string {
	return `[{"index":0,"delta":{` + delta + `,"role":"assistant"},"finish_reason":` + finish + `}]`
}

var decodeCases = []struct {
	name string
	raw  string
	want Chunk
	api  *openai.APIError
	err  bool
}{
	{name: "content", raw: arkChunk(arkChoice(`"content":"Hello"`, "null"), "null"), want: Chunk{Content: "Hello"}},
	{name: "reasoning", raw: arkChunk(arkChoice(`"content":"","reasoning_content":"Let me think"`, "null"), "null"), want: Chunk{Reasoning: "Let me think"}},
	{name: "content and reasoning", raw: arkChunk(arkChoice(`"reasoning_content":"r","content":"c"`, "null"), "null"), want: Chunk{Content: "c", Reasoning: "r"}},
	{name: "finish stop", raw: arkChunk(arkChoice(`"content":""`, `"stop"`), "null"), want: Chunk{FinishReason: "stop"}},
	{name: "finish length", raw: arkChunk(arkChoice(`"content":"end"`, `"length"`), "null"), want: Chunk{Content: "end", FinishReason: "length"}},
	{name: "usage with details", raw: arkChunk(`[]`, `{"prompt_tokens":11,"completion_tokens":20,"total_tokens":31,"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":6}}`),
		want: Chunk{Usage: &Usage{PromptTokens: 11, CompletionTokens: 20, TotalTokens: 31, CachedTokens: 8, ReasoningTokens: 6}}},
	{name: "usage without details", raw: arkChunk(`[]`, `{"prompt_tokens":10,"completion_tokens":200,"total_tokens":210}`),
		want: Chunk{Usage: &Usage{PromptTokens: 10, CompletionTokens: 200, TotalTokens: 210}}},
	{name: "usage with null details", raw: arkChunk(`[]`, `{"prompt_tokens":1,"prompt_tokens_details":null,"completion_tokens_details":{}}`), want: Chunk{Usage: &Usage{PromptTokens: 1}}},
	{name: "empty usage", raw: arkChunk(`null`, `{}`), want: Chunk{Usage: &Usage{}}},
	{name: "null usage, empty choices", raw: arkChunk(`[]`, "null")},
	{name: "no fields", raw: `{}`},
	{name: "top-level null", raw: `null`},
	{name: "index 1 ignored", raw: arkChunk(`[{"index":1,"delta":{"content":"other"},"finish_reason":"stop"}]`, "null")},
	{name: "index 0 and 1", raw: arkChunk(`[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}},{"delta":{"content":"c"},"index":0}]`, "null"), want: Chunk{Content: "ac"}},
	{name: "unicode", raw: arkChunk(arkChoice(`"content":"你好, 😀 ü"`, "null"), "null"), want: Chunk{Content: "你好, 😀 ü"}},
	{name: "escapes", raw: arkChunk(arkChoice(`"content":"a\nb\"c\\d\/e\t\u4f60\u00e9\u0000"`, "null"), "null"), want: Chunk{Content: "a\nb\"c\\d/e\t你é\x00"}},
	{name: "surrogate pair", raw: arkChunk(arkChoice(`"content":"\ud83d\ude00!","reasoning_content":"\uD83D\uDE00"`, "null"), "null"), want: Chunk{Content: "😀!", Reasoning: "😀"}},
	{name: "lone surrogate", raw: arkChunk(arkChoice(`"content":"\ud800x"`, "null"), "null"), want: Chunk{Content: "\ufffdx"}},
	{name: "upper-case lone surrogate", raw: `{"choices":[{"delta":{"content":"\uDE00"}}]}`, want: Chunk{Content: "\ufffd"}},
	{name: "broken pair", raw: arkChunk(arkChoice(`"content":"\ud83d\u0041\ude00"`, "null"), "null"), want: Chunk{Content: "\ufffdA\ufffd"}},
	{name: "escaped backslash before u", raw: arkChunk(arkChoice(`"content":"\\ud83d"`, "null"), "null"), want: Chunk{Content: `\ud83d`}},
	{name: "invalid UTF-8", raw: arkChunk(arkChoice("\"content\":\"a\xffb\xe4\xbd\"", "null"), "null"), want: Chunk{Content: "a\ufffdb\ufffd\ufffd"}},
	{name: "keys case-insensitive", raw: `{"CHOICES":[{"Index":0,"Delta":{"Content":"x","reasoning_CONTENT":"y"},"Finish_Reason":"stop"}],"Usage":{"prompt_tokenſ":3}}`,
		want: Chunk{Content: "x", Reasoning: "y", FinishReason: "stop", Usage: &Usage{PromptTokens: 3}}},
	{name: "escaped key", raw: `{"ch\u006fices":[{"delta":{"content":"x"}}]}`, want: Chunk{Content: "x"}},
	{name: "nulls", raw: `{"choices":[null,{"index":null,"delta":{"content":null,"reasoning_content":null},"finish_reason":null},{"delta":null}],"usage":null,"error":null}`},
	{name: "null choices", raw: `{"choices":null}`},
	{name: "repeated keys", raw: `{"choices":[{"index":0,"delta":{"content":"a","content":"b","reasoning_content":"r"},"delta":{"content":null},"finish_reason":"stop","finish_reason":null}],` +
		`"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":2}},"usage":{"total_tokens":3,"prompt_tokens_details":{}}}`,
		want: Chunk{Content: "b", Reasoning: "r", FinishReason: "stop", Usage: &Usage{PromptTokens: 1, TotalTokens: 3, CachedTokens: 2}}},
	{name: "repeated usage, null between", raw: `{"usage":{"prompt_tokens":1},"usage":null,"usage":{"total_tokens":3}}`, want: Chunk{Usage: &Usage{TotalTokens: 3}}},
	{name: "usage then null", raw: `{"usage":{"prompt_tokens":1},"usage":null}`},
	{name: "details then null", raw: `{"usage":{"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":null}}`, want: Chunk{Usage: &Usage{}}},
	{name: "choices then empty", raw: `{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}],"choices":[]}`},
	{name: "choices then null", raw: `{"choices":[{"delta":{"reasoning_content":"a"}}],"choices":null}`},
	{name: "repeated index", raw: `{"choices":[{"index":0,"delta":{"content":"x"},"index":1}]}`},
	{name: "negative zero index", raw: `{"choices":[{"index":-0,"delta":{"content":"x"}}]}`, want: Chunk{Content: "x"}},
	{name: "big numbers elsewhere", raw: `{"created":1e999,"choices":[],"usage":{"prompt_tokens":9223372036854775807}}`, want: Chunk{Usage: &Usage{PromptTokens: 9223372036854775807}}},
	{name: "whitespace", raw: " \t{ \"choices\" : [ { \"delta\" : { \"content\" : \"x\" } } ] }\r\n", want: Chunk{Content: "x"}},

	{name: "error event", raw: `{"error":{"code":"InternalServiceError","message":"The service encountered an unexpected internal error. Request id: 0217zz","param":"","type":"InternalServerError"}}`,
		api: &openai.APIError{Code: "InternalServiceError", Message: "The service encountered an unexpected internal error. Request id: 0217zz", Param: new(""), Type: "InternalServerError"}},
	{name: "error with a numeric code", raw: `{"Error":{"code":429,"message":"slow down"},"choices":[{"delta":{"content":"x"}}]}`, api: &openai.APIError{Code: 429, Message: "slow down"}},
	{name: "error then null", raw: `{"error":{"message":"m"},"error":null,"choices":[{"delta":{"content":"x"}}]}`, want: Chunk{Content: "x"}},
	{name: "error without message", raw: `{"error":{"code":"X"}}`, err: true},
	{name: "error not an object", raw: `{"error":"boom"}`, err: true},
	{name: "bad error then null", raw: `{"error":"boom","error":null}`, err: true},
	{name: "error with a bad choice", raw: `{"error":{"message":"m"},"choices":"x"}`, err: true},

	{name: "empty", raw: ``, err: true},
	{name: "truncated", raw: `{"choices":[{"index":0,"delta":{"content":"Hel`, err: true},
	{name: "unclosed", raw: `{"choices":[]`, err: true},
	{name: "trailing data", raw: `{"choices":[]}x`, err: true},
	{name: "two values", raw: `{} {}`, err: true},
	{name: "bad escape", raw: `{"choices":[{"delta":{"content":"\x"}}]}`, err: true},
	{name: "short escape", raw: `{"choices":[{"delta":{"content":"\u12"}}]}`, err: true},
	{name: "control character", raw: "{\"choices\":[{\"delta\":{\"content\":\"a\nb\"}}]}", err: true},
	{name: "control character before an escape", raw: "{\"choices\":[{\"delta\":{\"content\":\"a\x07\\\\n\"}}]}", err: true},
	{name: "control character in a key before an escape", raw: "{\"\a\\b\":[]}", err: true},
	{name: "control character in an ignored field", raw: "{\"id\":\"a\tb\",\"choices\":[]}", err: true},
	{name: "NaN", raw: `{"created":NaN,"choices":[]}`, err: true},
	{name: "bad number", raw: `{"created":1.2.3,"choices":[]}`, err: true},
	{name: "leading zero", raw: `{"created":01,"choices":[]}`, err: true},
	{name: "single quotes", raw: `{'choices':[]}`, err: true},
	{name: "trailing comma", raw: `{"choices":[],}`, err: true},

	{name: "content number", raw: arkChunk(arkChoice(`"content":5`, "null"), "null"), err: true},
	{name: "reasoning object", raw: arkChunk(arkChoice(`"reasoning_content":{}`, "null"), "null"), err: true},
	{name: "choices string", raw: arkChunk(`"x"`, "null"), err: true},
	{name: "choices object", raw: arkChunk(`{}`, "null"), err: true},
	{name: "choice number", raw: arkChunk(`[5]`, "null"), err: true},
	{name: "index string", raw: `{"choices":[{"index":"0","delta":{"content":"x"}}]}`, err: true},
	{name: "index fraction", raw: `{"choices":[{"index":0.0}]}`, err: true},
	{name: "index exponent", raw: `{"choices":[{"index":0e1}]}`, err: true},
	{name: "index too big", raw: `{"choices":[{"index":9223372036854775808}]}`, err: true},
	{name: "index bool", raw: `{"choices":[{"index":false}]}`, err: true},
	{name: "delta array", raw: `{"choices":[{"delta":[]}]}`, err: true},
	{name: "finish number", raw: arkChunk(arkChoice(`"content":""`, "1"), "null"), err: true},
	{name: "finish true", raw: arkChunk(arkChoice(`"content":""`, "true"), "null"), err: true},
	{name: "usage string", raw: arkChunk(`[]`, `"x"`), err: true},
	{name: "tokens string", raw: arkChunk(`[]`, `{"prompt_tokens":"1"}`), err: true},
	{name: "details number", raw: arkChunk(`[]`, `{"prompt_tokens_details":5}`), err: true},
	{name: "cached tokens fraction", raw: arkChunk(`[]`, `{"completion_tokens_details":{"reasoning_tokens":1.5}}`), err: true},
	{name: "top-level array", raw: `[]`, err: true},
	{name: "top-level number", raw: `5`, err: true},
	{name: "top-level string", raw: `"x"`, err: true},
	{name: "wrong type in a later choice", raw: `{"choices":[{"delta":{"content":"x"}},{"index":1,"delta":{"content":7}}]}`, err: true},
	{name: "wrong type with surrogates", raw: `{"choices":[{"delta":{"content":["\ud83d\ude00"]}}]}`, err: true},
}

func TestDecodeChunk(t *testing.T) {
	var p fastjson.Parser // reused, as by a Stream
	for _, c := range decodeCases {
		raw := []byte(c.raw)
		got, api, err := decodeChunk(&p, raw)
		if (err != nil) != c.err || !reflect.DeepEqual(got, c.want) || !reflect.DeepEqual(api, c.api) {
			t.Errorf("%s: got %s, %+v, %v; want %s, %+v, error %t", c.name, show(got), api, err, show(c.want), c.api, c.err)
		}
		// The cases are right about encoding/json, too.
		ref, refAPI, refErr := refDecode(raw)
		if (refErr != nil) != c.err || !reflect.DeepEqual(ref, c.want) || !reflect.DeepEqual(refAPI, c.api) {
			t.Errorf("%s: encoding/json gives %s, %+v, %v", c.name, show(ref), refAPI, refErr)
		}
	}
}

// TestDecodeChunkDepth: nesting deeper than fastjson.MaxDepth, which
// encoding/json accepted up to 10000 levels, fails rather than overflows.
func TestDecodeChunkDepth(t *testing.T) {
	var p fastjson.Parser
	deep := `{"x":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `,"choices":[]}`
	if _, _, err := decodeChunk(&p, []byte(deep)); err == nil {
		t.Error("1000 levels accepted")
	}
	ok := `{"x":` + strings.Repeat("[", 250) + strings.Repeat("]", 250) + `,"choices":[{"delta":{"content":"y"}}]}`
	if ch, _, err := decodeChunk(&p, []byte(ok)); err != nil || ch.Content != "y" {
		t.Errorf("250 levels: %+v, %v", ch, err)
	}
}

func show(c Chunk) string {
	if c.Usage == nil {
		return fmt.Sprintf("%+v", c)
	}
	return fmt.Sprintf("%+v (usage %+v)", c, *c.Usage)
}

// FuzzDecodeChunk compares decodeChunk with encoding/json on an Ark-shaped
// chunk made from the arguments, sent as is and with non-ASCII escaped
// (surrogate pairs), and on raw bytes.
func FuzzDecodeChunk(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c.raw), "Hello", "", "", 0, 0, 0)
	}
	f.Add([]byte(nil), "你好\n\"😀\\ \u2028<&>", "think…", "stop", 0, 11, 20)
	f.Add([]byte(`{}`), "a\xffb", "\x00", "length", 1, -1, 1<<40)
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, raw []byte, content, reasoning, finish string, index, prompt, completion int) {
		var fin, usage any
		if finish != "" {
			fin = finish
		}
		if prompt != 0 || completion != 0 {
			usage = map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
				"prompt_tokens_details": map[string]any{"cached_tokens": prompt / 2}, "completion_tokens_details": map[string]any{"reasoning_tokens": completion / 3}}
		}
		shaped, err := json.Marshal(map[string]any{
			"id": "021718000000000000000000000000000000000000000000000000", "object": "chat.completion.chunk", "created": 1718000000, "model": "doubao-seed-1-6-250615",
			"choices": []any{map[string]any{"index": index, "delta": map[string]any{"content": content, "reasoning_content": reasoning, "role": "assistant"}, "finish_reason": fin}},
			"usage":   usage,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range [][]byte{shaped, asciiJSON(shaped)} {
			got, api, err := decodeChunk(&p, in)
			want, _, _ := refDecode(in)
			if err != nil || api != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s:\ngot  %s, %v, %v\nwant %s", in, show(got), api, err, show(want))
			}
			if index == 0 && utf8.ValidString(content) && got.Content != content {
				t.Fatalf("%s: content %q, want %q", in, got.Content, content)
			}
		}

		got, api, err := decodeChunk(&p, raw)
		if err == nil && !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		want, wantAPI, wantErr := refDecode(raw)
		switch {
		case err != nil && wantErr == nil && strings.Contains(err.Error(), "too big depth"):
			// Deeper than fastjson.MaxDepth: see TestDecodeChunkDepth.
		case (err != nil) != (wantErr != nil):
			t.Fatalf("%q: error %v, encoding/json: %v", raw, err, wantErr)
		case repeatedChoices(raw):
			// encoding/json merges the elements of a repeated "choices"
			// array into the previous one's; decodeChunk takes the last.
		case !reflect.DeepEqual(got, want) || !reflect.DeepEqual(api, wantAPI):
			t.Fatalf("%q:\ngot  %s, %+v\nwant %s, %+v", raw, show(got), api, show(want), wantAPI)
		}
	})
}

// asciiJSON escapes the non-ASCII characters of valid JSON as \u escapes,
// those outside the BMP as surrogate pairs.
func asciiJSON(b []byte) []byte {
	var out []byte
	for _, r := range string(b) {
		switch {
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04X`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// repeatedChoices reports whether raw is an object with "choices" (matched
// as encoding/json matches keys) more than once.
func repeatedChoices(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	n := 0
	for dec.More() {
		k, err := dec.Token()
		var v json.RawMessage
		if err != nil || dec.Decode(&v) != nil {
			return false
		}
		if s, _ := k.(string); strings.EqualFold(s, "choices") {
			n++
		}
	}
	return n > 1
}

// TestDecodeChunkAllocs: a content chunk allocates its content string only.
func TestDecodeChunkAllocs(t *testing.T) {
	var p fastjson.Parser
	for _, content := range []string{`"Hello"`, `"line\n\"quoted\" \u4f60"`} {
		raw := []byte(arkChunk(arkChoice(`"content":`+content, "null"), "null"))
		if _, _, err := decodeChunk(&p, raw); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _, _ = decodeChunk(&p, raw) }); n > 1 {
			t.Errorf("%s: %v allocations", content, n)
		}
	}
}

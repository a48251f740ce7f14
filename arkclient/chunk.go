package arkclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	openai "github.com/sashabaranov/go-openai"
	"github.com/valyala/fastjson"
)

// decodeChunk decodes one streamed chunk, or an error event
// ({"error":{...}}, as Ark sends one mid-stream), with p.
//
// It decodes a chunk (one per token) in place, allocating only the content
// string, where json.Unmarshal allocates for every field (see
// BenchmarkDecodeChunk and docs/decisions.md). It gives what json.Unmarshal
// into the fields the client reads gave: keys match case-insensitively, a repeated key
// overrides, null leaves a field alone, a value of the wrong type is an
// error; only choices with index 0 count. The rare error event goes through
// encoding/json.
func decodeChunk(p *fastjson.Parser, raw []byte) (Chunk, *openai.APIError, error) {
	v, err := p.ParseBytes(raw) // first: its depth limit bounds Validate's recursion, which has none
	if err == nil {
		err = validate(raw) // Parse accepts bad escapes, control characters, NaN, 1.2.3
	}
	if err != nil {
		return Chunk{}, nil, err
	}
	d := chunkDecoder{exact: needsExactStrings(raw)}
	if v.Type() == fastjson.TypeNull || !d.object("chunk", v) {
		return Chunk{}, nil, d.err
	}
	apiErr := false
	d.fields(v, func(k []byte, v *fastjson.Value) {
		switch {
		case is(k, "choices"):
			// A repeated "choices" overrides; encoding/json merged its
			// elements into the previous array's, which Ark never needs.
			d.ch.Content, d.ch.Reasoning, d.ch.FinishReason = "", "", ""
			if v.Type() != fastjson.TypeNull && v.Type() != fastjson.TypeArray {
				d.fail("choices", v)
			}
			for _, c := range v.GetArray() {
				d.choice(c)
			}
		case is(k, "usage"):
			d.usage(v)
		case is(k, "error"):
			apiErr = apiErr || v.Type() != fastjson.TypeNull
		}
	})
	if d.err != nil {
		return Chunk{}, nil, d.err
	}
	if apiErr {
		var e struct {
			Error *openai.APIError `json:"error"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return Chunk{}, nil, err
		}
		if e.Error != nil {
			return Chunk{}, e.Error, nil
		}
	}
	return d.ch, nil, nil
}

// validate is json.Valid, faster: fastjson.ValidateBytes, which misses a
// control character in a string before an escape ("\a\\n"), then, if raw
// has an escape and a byte below 0x20 (compact JSON has none), json.Valid.
func validate(raw []byte) error {
	if err := fastjson.ValidateBytes(raw); err != nil || bytes.IndexByte(raw, '\\') < 0 {
		return err
	}
	for _, c := range raw {
		if c < ' ' {
			if !json.Valid(raw) {
				return errors.New("chunk: control character in a string")
			}
			break
		}
	}
	return nil
}

// chunkDecoder holds what decodeChunk has read so far.
type chunkDecoder struct {
	exact bool  // decode strings with encoding/json: see needsExactStrings
	err   error // the first value of the wrong type
	ch    Chunk
}

func (d *chunkDecoder) choice(v *fastjson.Value) {
	if !d.object("choice", v) {
		return
	}
	var index int
	var content, reasoning, finish string
	d.fields(v, func(k []byte, v *fastjson.Value) {
		switch {
		case is(k, "index"):
			d.int("index", v, &index)
		case is(k, "delta") && d.object("delta", v):
			d.fields(v, func(k []byte, v *fastjson.Value) {
				switch {
				case is(k, "content"):
					d.str("content", v, &content)
				case is(k, "reasoning_content"):
					d.str("reasoning_content", v, &reasoning)
				}
			})
		case is(k, "finish_reason"):
			d.str("finish_reason", v, &finish)
		}
	})
	if index == 0 {
		d.ch.Content += content
		d.ch.Reasoning += reasoning
		if finish != "" {
			d.ch.FinishReason = finish
		}
	}
}

func (d *chunkDecoder) usage(v *fastjson.Value) {
	if v.Type() == fastjson.TypeNull {
		d.ch.Usage = nil
	}
	if !d.object("usage", v) {
		return
	}
	if d.ch.Usage == nil {
		d.ch.Usage = new(Usage)
	}
	u := d.ch.Usage
	d.fields(v, func(k []byte, v *fastjson.Value) {
		switch {
		case is(k, "prompt_tokens"):
			d.int("prompt_tokens", v, &u.PromptTokens)
		case is(k, "completion_tokens"):
			d.int("completion_tokens", v, &u.CompletionTokens)
		case is(k, "total_tokens"):
			d.int("total_tokens", v, &u.TotalTokens)
		case is(k, "prompt_tokens_details"):
			d.details(v, "cached_tokens", &u.CachedTokens)
		case is(k, "completion_tokens_details"):
			d.details(v, "reasoning_tokens", &u.ReasoningTokens)
		}
	})
}

// details reads {name: n} into dst; null zeroes it (it was a pointer).
func (d *chunkDecoder) details(v *fastjson.Value, name string, dst *int) {
	if v.Type() == fastjson.TypeNull {
		*dst = 0
	}
	if d.object(name, v) {
		d.fields(v, func(k []byte, v *fastjson.Value) {
			if is(k, name) {
				d.int(name, v, dst)
			}
		})
	}
}

// object reports whether v is an object to read; null is not, and any other
// type is an error.
func (d *chunkDecoder) object(name string, v *fastjson.Value) bool {
	if t := v.Type(); t != fastjson.TypeObject && t != fastjson.TypeNull {
		d.fail(name, v)
	}
	return d.err == nil && v.Type() == fastjson.TypeObject
}

// fields calls f for each member of object v in order, while d has no error.
func (d *chunkDecoder) fields(v *fastjson.Value, f func(k []byte, v *fastjson.Value)) {
	v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
		if d.err == nil {
			f(k, v)
		}
	})
}

// int reads a number into dst; null leaves it alone.
func (d *chunkDecoder) int(name string, v *fastjson.Value, dst *int) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeNumber:
		n, err := v.Int() // as strconv.ParseInt: no fraction or exponent
		if err != nil {
			d.err = fmt.Errorf("chunk: %s: %w", name, err)
			return
		}
		*dst = n
	default:
		d.fail(name, v)
	}
}

// str reads a string into dst; null leaves it alone.
func (d *chunkDecoder) str(name string, v *fastjson.Value, dst *string) {
	if d.exact {
		// Before v.Type(), which unescapes v in place, MarshalTo gives it as sent.
		s := *dst // not dst itself, which would then escape
		if err := json.Unmarshal(v.MarshalTo(nil), &s); err != nil {
			d.err = err
		}
		*dst = s
		return
	}
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		*dst = string(b)
	default:
		d.fail(name, v)
	}
}

func (d *chunkDecoder) fail(name string, v *fastjson.Value) {
	if d.err == nil {
		d.err = fmt.Errorf("chunk: %s is %s", name, v.Type())
	}
}

// is reports whether key k names field as encoding/json matches them:
// exactly, or else case-insensitively.
func is(k []byte, field string) bool {
	return string(k) == field || bytes.EqualFold(k, []byte(field))
}

// needsExactStrings reports whether raw has invalid UTF-8 or a \u escape of
// a UTF-16 surrogate (an emoji, or a broken one), where fastjson's
// unescaping differs from encoding/json's, which puts U+FFFD for what is
// invalid.
func needsExactStrings(raw []byte) bool {
	if !utf8.Valid(raw) {
		return true
	}
	for {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 || i+3 >= len(raw) {
			return false
		}
		if raw[i+1] == 'u' && raw[i+2]|0x20 == 'd' && raw[i+3] >= '8' {
			return true
		}
		raw = raw[i+2:] // past the escaped character
	}
}

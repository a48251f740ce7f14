package arkclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/valyala/fastjson"
)

// cannedSSE answers every request with the same SSE body from memory.
type cannedSSE []byte

func (c cannedSSE) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(bytes.NewReader(c)), Request: r}, nil
}

// BenchmarkStreamRecv is the client's per-token cost: one op reads a
// 200-chunk answer, shaped like Ark's, from memory (no network), through
// the SSE reader, the chunk decoder, the idle watchdog and Recv. Divide by
// 200 for a per-token figure.
func BenchmarkStreamRecv(b *testing.B) {
	const tokens = 200
	var body bytes.Buffer
	for i := range tokens {
		fmt.Fprintf(&body, `data: {"id":"021718000000000000000000000000000000000000000000000000","object":"chat.completion.chunk","created":1718000000,"model":"doubao-seed-1-6-250615","choices":[{"index":0,"delta":{"content":" word%d","role":"assistant"},"finish_reason":null}],"usage":null}`+"\n\n", i)
	}
	body.WriteString(`data: {"id":"x","object":"chat.completion.chunk","created":1718000000,"model":"m","choices":[{"index":0,"delta":{"content":"","role":"assistant"},"finish_reason":"stop"}],"usage":null}` + "\n\n")
	body.WriteString(`data: {"id":"x","object":"chat.completion.chunk","created":1718000000,"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":200,"total_tokens":210}}` + "\n\ndata: [DONE]\n\n")
	c, err := New("http://ark.invalid/api/v3", "k", WithHTTPClient(&http.Client{Transport: cannedSSE(body.Bytes())}), WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	req := userReq("hello")
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Stream(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, err := s.Recv(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
			n++
		}
		s.Close()
		if n != tokens+2 {
			b.Fatalf("%d chunks", n)
		}
	}
}

// BenchmarkDecodeChunk is the cost of decoding one content chunk, by
// decodeChunk and by the encoding/json decoder it replaced.
func BenchmarkDecodeChunk(b *testing.B) {
	raw := []byte(arkChunk(arkChoice(`"content":" word17"`, "null"), "null"))
	b.Run("fastjson", func(b *testing.B) {
		var p fastjson.Parser
		b.ReportAllocs()
		for b.Loop() {
			if ch, _, err := decodeChunk(&p, raw); err != nil || ch.Content != " word17" {
				b.Fatal(ch, err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ch, _, err := refDecode(raw); err != nil || ch.Content != " word17" {
				b.Fatal(ch, err)
			}
		}
	})
}

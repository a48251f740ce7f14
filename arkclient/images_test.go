package arkclient

import (
	"bytes"
	"context"
	"errors"
	"image/color"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

func newImages(t *testing.T, srv *arktest.Server, opts ...ImageOption) *Images {
	t.Helper()
	c, err := NewImages(srv.URL, testKey, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const seedream = "doubao-seedream-4-0-250828"

func TestImagesURLResult(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	red := arktest.PNG(4, 4, color.RGBA{R: 255, A: 255})
	srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{{Data: red}}})
	res, err := newImages(t, srv).Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "a red square", Size: "2K"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pictures) != 1 || res.Failed != 0 {
		t.Fatalf("got %d pictures, %d failed", len(res.Pictures), res.Failed)
	}
	p := res.Pictures[0]
	if !bytes.Equal(p.Data, red) || p.ContentType != "image/png" || p.Size != "2048x2048" || !strings.Contains(p.URL, arktest.FilesPath) {
		t.Fatalf("picture: %d bytes, %q, %q, %q", len(p.Data), p.ContentType, p.Size, p.URL)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Path != arktest.ImagesPath {
		t.Fatalf("requests: %+v", reqs)
	}
	b := reqs[0].Body
	for k, want := range map[string]any{"model": seedream, "prompt": "a red square", "size": "2K", "watermark": false,
		"response_format": "url", "sequential_image_generation": "disabled"} {
		if b[k] != want {
			t.Errorf("body %s = %v, want %v", k, b[k], want)
		}
	}
	if _, ok := b["image"]; ok {
		t.Error("a new picture sent an input image")
	}
}

func TestImagesBase64AndEdit(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newImages(t, srv, WithBase64(true))
	res, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "make it blue",
		Images: []string{"data:image/png;base64,AAAA"}, Watermark: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pictures) != 1 || !bytes.Equal(res.Pictures[0].Data, arktest.DefaultPicture) || res.Pictures[0].URL != "" {
		t.Fatalf("pictures: %+v", res.Pictures)
	}
	b := srv.Requests()[0].Body
	if b["image"] != "data:image/png;base64,AAAA" || b["response_format"] != "b64_json" || b["watermark"] != true {
		t.Fatalf("body: image %v, format %v, watermark %v", b["image"], b["response_format"], b["watermark"])
	}
	if _, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "merge", Images: []string{"https://a/1.png", "https://a/2.png"}}); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := srv.Requests()[1].Body["image"].([]any); len(imgs) != 2 {
		t.Fatalf("two input pictures sent as %v", srv.Requests()[1].Body["image"])
	}
}

func TestImagesSequential(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newImages(t, srv)
	res, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "four seasons", MaxImages: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pictures) != 3 {
		t.Fatalf("got %d pictures, want 3", len(res.Pictures))
	}
	b := srv.Requests()[0].Body
	opts, _ := b["sequential_image_generation_options"].(map[string]any)
	if b["sequential_image_generation"] != "auto" || opts["max_images"] != float64(3) {
		t.Fatalf("body: %v %v", b["sequential_image_generation"], opts)
	}

	srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{{},
		{Error: &arktest.ErrorBody{Code: "OutputImageSensitiveContentDetected", Message: "blocked"}}}})
	res, err = c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "two", MaxImages: 2})
	if err != nil || len(res.Pictures) != 1 || res.Failed != 1 {
		t.Fatalf("one of two failed: %+v, %v", res, err)
	}
}

func TestImagesErrors(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newImages(t, srv)
	for _, tc := range []struct {
		resp      arktest.ImageResponse
		code      string
		moderated bool
		words     string
	}{
		{arktest.ImageResponse{ErrorCode: "InputTextSensitiveContentDetected"}, "InputTextSensitiveContentDetected", true, "blocked this prompt"},
		{arktest.ImageResponse{ErrorCode: "InputImageSensitiveContentDetected"}, "InputImageSensitiveContentDetected", true, "picture given to edit"},
		{arktest.ImageResponse{ErrorCode: "OutputImageSensitiveContentDetected"}, "OutputImageSensitiveContentDetected", true, "picture it made"},
		{arktest.ImageResponse{Status: 404, ErrorCode: "ModelNotOpen"}, "ModelNotOpen", false, "开通管理"},
		{arktest.ImageResponse{Status: 429, ErrorCode: "QuotaExceeded"}, "QuotaExceeded", false, "quota"},
		{arktest.ImageResponse{Status: 500}, "InternalServiceError", false, "temporary error"},
		{arktest.ImageResponse{Images: []arktest.FakeImage{{Error: &arktest.ErrorBody{Code: "OutputImageSensitiveContentDetected"}}}}, CodeNoImage, false, "no picture"},
	} {
		before := len(srv.Requests())
		srv.EnqueueImages(tc.resp)
		_, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: got %v", tc.code, err)
		}
		if e.Code != tc.code || e.Moderated() != tc.moderated || !strings.Contains(e.UserMessage(), tc.words) {
			t.Errorf("%s: code %s, moderated %v, says %q", tc.code, e.Code, e.Moderated(), e.UserMessage())
		}
		if e.RequestID == "" && tc.code != CodeNoImage {
			t.Errorf("%s: no request id", tc.code)
		}
		if strings.Contains(e.Error(), testKey) || strings.Contains(e.UserMessage(), testKey) {
			t.Errorf("%s: the key leaked", tc.code)
		}
		if n := len(srv.Requests()) - before; n != 1 {
			t.Errorf("%s: %d requests, want 1 (pictures are not retried)", tc.code, n)
		}
	}

	bad, err := NewImages(srv.URL, "wrong-key")
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != "AuthenticationError" {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestImagesDownloadBounds(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	big := arktest.PNG(256, 256, color.White)
	c := newImages(t, srv, WithMaxImageBytes(int64(len(big)-1)), WithDownloadTimeout(300*time.Millisecond))
	for name, img := range map[string]arktest.FakeImage{
		"HTTP 403":            {FileStatus: 403},
		"larger than":         {Data: big},
		"no complete picture": {FileHang: true, Data: arktest.DefaultPicture},
		"not a picture":       {Data: []byte("<html>an error page</html>")},
	} {
		srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{img}})
		_, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
		e, ok := errors.AsType[*Error](err)
		if !ok || e.Code != CodeDownloadFailed || !strings.Contains(e.UserMessage(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}

	inline := newImages(t, srv, WithBase64(true), WithMaxImageBytes(int64(len(big)-1)))
	srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{{Data: big}}})
	_, err := inline.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
	if e, ok := errors.AsType[*Error](err); !ok || !strings.Contains(e.UserMessage(), "larger than") {
		t.Fatalf("inline too large: %v", err)
	}

	// An answer far beyond the cap is not read whole.
	tiny := newImages(t, srv, WithBase64(true), WithMaxImageBytes(1000))
	srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{{Data: append(bytes.Clone(big), make([]byte, 2<<20)...)}}})
	_, err = tiny.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
	if e, ok := errors.AsType[*Error](err); !ok || !errors.Is(err, errBodyTooLarge) || !strings.Contains(e.UserMessage(), "larger than pictures of 1 KiB") {
		t.Fatalf("answer too large: %v", err)
	}
}

func TestImagesTimeoutAndCancel(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	c := newImages(t, srv, WithImageTimeout(300*time.Millisecond))
	srv.EnqueueImages(arktest.ImageResponse{Hang: true})
	_, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeTimeout {
		t.Fatalf("hang: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	srv.EnqueueImages(arktest.ImageResponse{Hang: true})
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = newImages(t, srv).Generate(ctx, ImageRequest{Model: seedream, Prompt: "p"})
	if e, ok := errors.AsType[*Error](err); !ok || e.Code != CodeCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
}

func TestNewImagesAddress(t *testing.T) {
	for addr, want := range map[string]string{
		"https://ark.example.com/api/v3":                   "https://ark.example.com/api/v3/images/generations",
		"https://ark.example.com/api/v3/chat/completions#": "https://ark.example.com/api/v3/images/generations",
		"https://proxy.example.com":                        "https://proxy.example.com/v1/images/generations",
	} {
		c, err := NewImages(addr, testKey)
		if err != nil || c.URL() != want {
			t.Errorf("%s: %v, %v", addr, c, err)
		}
	}
	if _, err := NewImages("https://ark.example.com/api/v3", ""); err == nil {
		t.Error("no key: want an error")
	}
}

// Making an images client leaves http.DefaultClient alone: requests on it
// run while clients are made, without a race (under -race).
func TestNewImagesLeavesTheDefaultClientAlone(t *testing.T) {
	srv := arktest.New()
	defer srv.Close()
	before := http.DefaultClient.Transport
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if resp, err := http.Get(srv.URL + "/models"); err == nil {
				resp.Body.Close()
			}
		}
	}()
	for range 20 {
		newImages(t, srv)
	}
	<-done
	if http.DefaultClient.Transport != before {
		t.Fatal("http.DefaultClient's transport changed")
	}
}

// BenchmarkImagesGenerate is the client's cost for one 1 MiB picture
// from the fake Ark, fetched from its URL or decoded inline.
func BenchmarkImagesGenerate(b *testing.B) {
	pic := append(bytes.Clone(arktest.DefaultPicture), make([]byte, 1<<20)...)
	for _, b64 := range []bool{false, true} {
		name := "url"
		if b64 {
			name = "b64_json"
		}
		b.Run(name, func(b *testing.B) {
			srv := arktest.New(arktest.WithAPIKey(testKey))
			defer srv.Close()
			c, err := NewImages(srv.URL, testKey, WithBase64(b64))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(pic)))
			b.ReportAllocs()
			for b.Loop() {
				srv.EnqueueImages(arktest.ImageResponse{Images: []arktest.FakeImage{{Data: pic}}})
				if _, err := c.Generate(context.Background(), ImageRequest{Model: seedream, Prompt: "p"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

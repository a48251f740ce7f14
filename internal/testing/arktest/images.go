package arktest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strings"
	"time"
)

// ImagesPath is Seedream's image generation route.
const ImagesPath = BasePath + "/images/generations"

// FilesPath prefixes the result URLs the fake hands out (like Ark's
// temporary object storage links); GETs there are not recorded.
const FilesPath = "/files/"

// ImageResponse scripts one answer to an image generation request.
type ImageResponse struct {
	// Status, when neither 0 nor 200, or a non-empty ErrorCode makes an
	// error response in Ark's shape, as Response does.
	Status       int
	ErrorCode    string
	ErrorMessage string

	// Images are the pictures made; nil makes one small PNG per picture
	// asked for (sequential_image_generation_options.max_images when
	// sequential generation is "auto", else one).
	Images []FakeImage
	// Delay is waited before answering; Hang answers never.
	Delay time.Duration
	Hang  bool
}

// FakeImage is one picture of an answer.
type FakeImage struct {
	Data []byte // the picture; nil: a small PNG
	// Error makes this picture a failed one: an entry with an "error"
	// object and no result.
	Error *ErrorBody
	// FileStatus is what its URL answers (default 200); FileHang makes the
	// URL send headers and the start of the body, then nothing.
	FileStatus int
	FileHang   bool
}

// imageState is the fake's image queue and the files it serves.
type imageState struct {
	queue []ImageResponse
	files map[string]FakeImage
	seq   int
}

// EnqueueImages adds scripted answers for the next image requests.
func (s *Server) EnqueueImages(r ...ImageResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images.queue = append(s.images.queue, r...)
}

// PNG is a valid w×h PNG of one colour.
func PNG(w, h int, c color.Color) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// DefaultPicture is the picture the fake makes when none is scripted.
var DefaultPicture = PNG(8, 8, color.RGBA{R: 0x33, G: 0x66, B: 0xcc, A: 0xff})

func (s *Server) serveImages(w http.ResponseWriter, r *http.Request, req Request, reqID string) {
	s.mu.Lock()
	var resp ImageResponse
	if len(s.images.queue) > 0 {
		resp = s.images.queue[0]
		s.images.queue = s.images.queue[1:]
	}
	s.mu.Unlock()
	if resp.Hang {
		s.wait(r, 24*time.Hour)
		return
	}
	if !s.wait(r, resp.Delay) {
		return
	}
	if (resp.Status != 0 && resp.Status != http.StatusOK) || resp.ErrorCode != "" {
		writeError(w, reqID, Response{Status: resp.Status, ErrorCode: resp.ErrorCode, ErrorMessage: resp.ErrorMessage})
		return
	}
	if prompt, _ := req.Body["prompt"].(string); strings.TrimSpace(prompt) == "" {
		writeError(w, reqID, Response{ErrorCode: "MissingParameter", ErrorMessage: "The request failed because it is missing one or multiple required parameters: prompt."})
		return
	}
	imgs := resp.Images
	if imgs == nil {
		n := 1
		if seq, _ := req.Body["sequential_image_generation"].(string); seq == "auto" {
			opts, _ := req.Body["sequential_image_generation_options"].(map[string]any)
			if m, ok := opts["max_images"].(float64); ok && m > 1 {
				n = int(m)
			}
		}
		imgs = make([]FakeImage, n)
	}
	b64 := req.Body["response_format"] == "b64_json"
	size, _ := req.Body["size"].(string)
	if size == "" || size == "adaptive" || strings.HasSuffix(size, "K") {
		size = "2048x2048"
	}
	data := make([]map[string]any, 0, len(imgs))
	made := 0
	for _, img := range imgs {
		if img.Error != nil {
			data = append(data, map[string]any{"error": img.Error})
			continue
		}
		if img.Data == nil {
			img.Data = DefaultPicture
		}
		made++
		if b64 {
			data = append(data, map[string]any{"b64_json": base64.StdEncoding.EncodeToString(img.Data), "size": size})
			continue
		}
		s.mu.Lock()
		s.images.seq++
		name := fmt.Sprintf("%s-%d.png", reqID, s.images.seq)
		if s.images.files == nil {
			s.images.files = map[string]FakeImage{}
		}
		s.images.files[name] = img
		s.mu.Unlock()
		data = append(data, map[string]any{"url": s.ts.URL + FilesPath + name + "?X-Tos-Expires=86400", "size": size})
	}
	model, _ := req.Body["model"].(string)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"model": model, "created": time.Now().Unix(), "data": data,
		"usage": map[string]int{"generated_images": made, "output_tokens": made * 16384, "total_tokens": made * 16384},
	})
}

// serveFile serves a result URL.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	img, ok := s.images.files[strings.TrimPrefix(r.URL.Path, FilesPath)]
	s.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, "NoSuchKey", http.StatusNotFound)
		return
	case img.FileStatus != 0 && img.FileStatus != http.StatusOK:
		http.Error(w, http.StatusText(img.FileStatus), img.FileStatus)
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(img.Data))
	if img.FileHang {
		w.Header().Set("Content-Length", fmt.Sprint(len(img.Data)))
		_, _ = w.Write(img.Data[:len(img.Data)/2])
		_ = http.NewResponseController(w).Flush()
		s.wait(r, 24*time.Hour)
		return
	}
	_, _ = w.Write(img.Data)
}

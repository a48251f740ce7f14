package attach

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		f    File
		want Kind
	}{
		{File{Name: "cat.png", ContentType: "image/png"}, Image},
		{File{Name: "photo", ContentType: "IMAGE/JPEG; q=1"}, Image},
		{File{Name: "a.webp"}, Image},
		{File{Name: "a.GIF", ContentType: "application/octet-stream"}, Image},
		{File{Name: "shot", Type: "png"}, Image},
		{File{Name: "pic.heic", ContentType: "image/heic"}, Other},
		{File{Name: "scan.png", ContentType: "image/tiff"}, Other},
		{File{Name: "logo.svg", ContentType: "image/svg+xml"}, Text},
		{File{Name: "notes.md", ContentType: "text/markdown"}, Text},
		{File{Name: "main.go", ContentType: "application/octet-stream"}, Text},
		{File{Name: "main.go"}, Text},
		{File{Name: "data", ContentType: "application/json; charset=utf-8"}, Text},
		{File{Name: "snippet", Type: "python"}, Text},
		{File{Name: "Dockerfile"}, Text},
		{File{Name: "Makefile", ContentType: "application/octet-stream"}, Text},
		{File{Name: ".env"}, Text},
		{File{Name: "report.pdf", ContentType: "application/pdf"}, Other},
		{File{Name: "stuff.zip", ContentType: "application/zip"}, Other},
		{File{Name: "x.png", ContentType: "application/zip"}, Other}, // a label that says something else wins
		{File{Name: ""}, Other},
		{File{Name: "bad", ContentType: ";;;="}, Other},
	} {
		if got := Classify(c.f); got != c.want {
			t.Errorf("Classify(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 100: "100 bytes", 1 << 10: "1 KB", 64 << 10: "64 KB", 1536: "1.5 KB", 8 << 20: "8 MB", 3 << 19: "1.5 MB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// files serves paths of a map at 127.0.0.1, recording each request.
func files(t *testing.T, content map[string]string) (*httptest.Server, chan *http.Request) {
	t.Helper()
	seen := make(chan *http.Request, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r
		switch r.URL.Path {
		case "/limited":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		case "/chunked":
			// No Content-Length: the cap must hold while reading.
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte(strings.Repeat("y", 4096)))
			return
		}
		body, ok := content[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestDownload(t *testing.T) {
	srv, seen := files(t, map[string]string{"/a.txt": "hello", "/big.txt": strings.Repeat("x", 101)})
	ctx := context.Background()

	data, err := Download(ctx, srv.Client(), srv.URL+"/a.txt", 5)
	if err != nil || string(data) != "hello" {
		t.Fatalf("within the limit: %q, %v", data, err)
	}
	if _, err := Download(ctx, srv.Client(), srv.URL+"/a.txt", 4); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := Download(ctx, srv.Client(), srv.URL+"/big.txt", 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("big: %v, want ErrTooLarge", err)
	}
	if _, err := Download(ctx, srv.Client(), srv.URL+"/chunked", 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("chunked: %v, want ErrTooLarge", err)
	}
	var se *StatusError
	if _, err := Download(ctx, srv.Client(), srv.URL+"/missing", 100); !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Fatalf("missing: %v, want a 404 StatusError", err)
	}
	if _, err := Download(ctx, srv.Client(), srv.URL+"/limited", 100); !errors.As(err, &se) || se.Code != http.StatusTooManyRequests || se.RetryAfter != 7*time.Second {
		t.Fatalf("limited: %+v, want a 429 StatusError with Retry-After 7 s", err)
	}
	for len(seen) > 0 {
		<-seen
	}

	// Non-http(s) URLs are refused without a request.
	for _, u := range []string{"file:///etc/passwd", "ftp://127.0.0.1/x", "javascript:alert(1)", "", "http://", "::"} {
		if _, err := Download(ctx, srv.Client(), u, 100); err == nil {
			t.Errorf("%q: downloaded", u)
		}
	}
	if len(seen) != 0 {
		t.Fatalf("%d requests for refused URLs", len(seen))
	}

	// The request decorator adds a header, or refuses.
	data, err = Download(ctx, srv.Client(), srv.URL+"/a.txt", 100, WithRequest(func(r *http.Request) error {
		r.Header.Set("Authorization", "Bearer tok")
		return nil
	}))
	if r := <-seen; err != nil || string(data) != "hello" || r.Header.Get("Authorization") != "Bearer tok" {
		t.Fatalf("decorated: %q, %v, header %q", data, err, r.Header.Get("Authorization"))
	}
	refuse := errors.New("not for this host")
	if _, err := Download(ctx, srv.Client(), srv.URL+"/a.txt", 100, WithRequest(func(*http.Request) error { return refuse })); !errors.Is(err, refuse) {
		t.Fatalf("refused by the decorator: %v", err)
	}
	if _, err := Download(ctx, srv.Client(), srv.URL+"/a.txt", 100, WithResponse(func(*http.Response) error { return refuse })); !errors.Is(err, refuse) {
		t.Fatalf("refused by the response check: %v", err)
	}
}

func TestDownloadTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := Download(context.Background(), srv.Client(), srv.URL, 10, WithTimeout(50*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hanging server: %v, want the deadline", err)
	}
}

var png = "\x89PNG\r\n\x1a\n" + strings.Repeat("\x01", 20)

func TestRead(t *testing.T) {
	srv, _ := files(t, map[string]string{
		"/cat.png": png, "/fake.png": "<html>sign in</html>", "/a.go": "package a\n", "/latin1.txt": "caf\xe9",
		"/big.txt": strings.Repeat("x", 200),
	})
	fetch := func(ctx context.Context, u string, limit int64) ([]byte, error) {
		return Download(ctx, srv.Client(), u, limit)
	}
	file := func(name, ct string, size int64) File {
		return File{Name: name, ContentType: ct, Size: size, URL: srv.URL + "/" + name}
	}
	r := Reader{Limits: Limits{Image: 1000, Text: 100}, Fetch: fetch}
	var m conversation.Message
	for _, f := range []File{
		file("cat.png", "image/png", int64(len(png))),
		file("fake.png", "image/png", 0),
		file("a.go", "", 10),
		file("latin1.txt", "text/plain", 4),
		file("big.txt", "text/plain", 0),    // size unknown: the download finds out
		file("huge.txt", "text/plain", 101), // announced too large: not fetched
		file("gone.txt", "text/plain", 3),
		file("report.pdf", "application/pdf", 3),
	} {
		err := r.Read(context.Background(), &m, f)
		if (err != nil) != (f.Name == "gone.txt") {
			t.Errorf("%s: error %v", f.Name, err)
		}
	}
	if len(m.Images) != 1 || m.Images[0].URL != "data:image/png;base64,iVBORw0KGgoBAQEBAQEBAQEBAQEBAQEBAQEBAQ==" {
		t.Errorf("images = %+v", m.Images)
	}
	if len(m.Files) != 1 || m.Files[0] != (conversation.File{Name: "a.go", Text: "package a\n"}) {
		t.Errorf("files = %+v", m.Files)
	}
	want := "fake.png (unsupported image format)|latin1.txt (not UTF-8 text)|big.txt (larger than 100 bytes)|huge.txt (larger than 100 bytes)|gone.txt (download failed)|report.pdf"
	if got := strings.Join(m.Ignored, "|"); got != want {
		t.Errorf("ignored =\n%s\nwant\n%s", got, want)
	}

	// Public URLs: an image that is not downloaded, or fails to, goes by URL.
	pub := Reader{Limits: r.Limits, Fetch: fetch, Public: true}
	var p conversation.Message
	if err := pub.Read(context.Background(), &p, file("gone.png", "image/png", 3)); err == nil {
		t.Error("no error for a failed download")
	}
	pub.LinkImages = true
	pub.Fetch = func(context.Context, string, int64) ([]byte, error) {
		t.Error("fetched a linked image")
		return nil, nil
	}
	_ = pub.Read(context.Background(), &p, file("cat.png", "image/png", 3))
	if len(p.Images) != 2 || p.Images[0].URL != srv.URL+"/gone.png" || p.Images[1].URL != srv.URL+"/cat.png" || len(p.Ignored) != 0 {
		t.Errorf("public = %+v", p)
	}
}

// FuzzClassify: content types and names come from other users' uploads.
func FuzzClassify(f *testing.F) {
	for _, s := range [][3]string{{"a.png", "image/png", ""}, {"Dockerfile", "", ""}, {"x", "text/plain; charset=\"utf-8\"", "text"}, {"..", ";=;", "PNG"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, name, ct, typ string) {
		k := Classify(File{Name: name, ContentType: ct, Type: typ})
		if k != Other && k != Image && k != Text {
			t.Fatalf("kind %d", k)
		}
		if k == Image && !imageTypes[mediaType(ct)] && mediaType(ct) != "" && mediaType(ct) != "application/octet-stream" {
			t.Fatalf("%q labelled %q classified as an image", name, ct)
		}
	})
}

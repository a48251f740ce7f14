package conversation

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

const testImageModel = "doubao-seedream-4-0-250828"

// newImageRig is a rig whose engine draws with the rig's fake Ark.
func newImageRig(t *testing.T, rdb redis.UniversalClient, prefix string, s ImageSettings, opts ...Option) *rig {
	t.Helper()
	rg := newRig(t, rdb, prefix)
	painter, err := arkclient.NewImages(rg.ark.URL, "k", arkclient.WithImageTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	chat, err := arkclient.New(rg.ark.URL, "k")
	if err != nil {
		t.Fatal(err)
	}
	if s.Model == "" {
		s.Model = testImageModel
	}
	opts = append(append(testOptions(), WithRenderInterval("test", 0), WithImages(painter, s)), opts...)
	rg.engine = NewEngine(testModels(), rg.store, chat, opts...)
	return rg
}

// painting is a recorder that can post pictures.
type painting struct {
	*recorder
	mu       sync.Mutex
	captions []string
	pics     [][]Picture
	fail     error
}

func (p *painting) SendPictures(_ context.Context, caption string, pics []Picture) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return nil, p.fail
	}
	p.captions = append(p.captions, caption)
	p.pics = append(p.pics, pics)
	refs := make([]string, len(pics))
	for i, pic := range pics {
		refs[i] = "https://files.example/" + pic.Name
	}
	return refs, nil
}

func (rg *rig) draw(t *testing.T, m Message) *painting {
	t.Helper()
	p := &painting{recorder: &recorder{t: t}}
	if err := rg.engine.Handle(context.Background(), m, p); err != nil {
		t.Logf("Handle: %v", err)
	}
	return p
}

// imageRequests are the fake's image generation requests.
func (rg *rig) imageRequests() []arktest.Request {
	var out []arktest.Request
	for _, r := range rg.ark.Requests() {
		if r.Path == arktest.ImagesPath {
			out = append(out, r)
		}
	}
	return out
}

func TestImageDrawsPostsAndRemembers(t *testing.T) {
	backends(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		rg := newImageRig(t, rdb, prefix, ImageSettings{Size: "2K", Watermark: true, Edit: true})
		p := rg.draw(t, msg("/image a lighthouse at dawn"))
		f := p.final()
		if f.Outcome != OutcomeDone || f.Text != drawnText || f.Note != "" {
			t.Fatalf("final frame: %+v", f)
		}
		if p.begun != 1 || len(p.frames) != 2 || p.frames[0].Text != drawingText || p.frames[0].Final {
			t.Fatalf("sign of life: begun %d, frames %+v", p.begun, p.frames)
		}
		if len(p.pics) != 1 || len(p.pics[0]) != 1 || p.captions[0] != "a lighthouse at dawn" {
			t.Fatalf("posted: %v %v", p.captions, p.pics)
		}
		if pic := p.pics[0][0]; !bytes.Equal(pic.Data, arktest.DefaultPicture) || pic.ContentType != "image/png" || !strings.HasSuffix(pic.Name, ".png") {
			t.Fatalf("picture: %s %s %d bytes", pic.Name, pic.ContentType, len(pic.Data))
		}
		reqs := rg.imageRequests()
		if len(reqs) != 1 || reqs[0].Body["model"] != testImageModel || reqs[0].Body["size"] != "2K" || reqs[0].Body["watermark"] != true {
			t.Fatalf("requests: %+v", reqs)
		}
		if _, ok := reqs[0].Body["image"]; ok {
			t.Fatal("a new picture sent an input picture")
		}

		th, err := rg.store.Lock(context.Background(), msg("").ThreadKey(), "test")
		if err != nil {
			t.Fatal(err)
		}
		defer th.Release(context.Background())
		if len(th.Turns) != 2 || th.Turns[0].Text != "/image a lighthouse at dawn" ||
			!strings.Contains(th.Turns[1].Text, "https://files.example/") || !strings.Contains(th.Turns[1].Picture, arktest.FilesPath) {
			t.Fatalf("memory: %+v", th.Turns)
		}
	})
}

func TestImageEditsThreadsLatestPictureOrAttached(t *testing.T) {
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{Edit: true})
	rg.draw(t, msg("/image a red fox"))
	if f := rg.draw(t, msg("/image make it blue")).final(); f.Outcome != OutcomeDone {
		t.Fatalf("edit: %+v", f)
	}
	reqs := rg.imageRequests()
	img, _ := reqs[1].Body["image"].(string)
	if !strings.Contains(img, arktest.FilesPath) || reqs[1].Body["size"] != "adaptive" {
		t.Fatalf("the edit sent image %q, size %v", img, reqs[1].Body["size"])
	}

	m := msg("/image add a hat")
	m.Thread = "t2"
	m.Images = []Image{{URL: "data:image/png;base64,iVBORw0KGgo="}}
	rg.draw(t, m)
	if got := rg.imageRequests()[2].Body["image"]; got != m.Images[0].URL {
		t.Fatalf("attached picture sent as %v", got)
	}

	// A thread whose latest turn is not a picture draws anew.
	rg.ask(t, msg("thanks!"))
	rg.draw(t, msg("/image a whale"))
	if _, ok := rg.imageRequests()[3].Body["image"]; ok {
		t.Fatal("edited a picture that is no longer the thread's latest")
	}
}

func TestImageDailyLimits(t *testing.T) {
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{DailyImages: 3}, WithLimits(Limits{DailyImages: 2}))
	for i := range 2 {
		if f := rg.draw(t, msg(fmt.Sprintf("/image cat %d", i))).final(); f.Outcome != OutcomeDone {
			t.Fatalf("picture %d: %+v", i, f)
		}
	}
	f := rg.draw(t, msg("/image one more")).final()
	if f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "2 pictures for today") {
		t.Fatalf("over the limit: %+v", f)
	}
	if n := len(rg.imageRequests()); n != 2 {
		t.Fatalf("%d requests to Ark, want 2", n)
	}
	if u := rg.ask(t, msg("/usage")).notice(); !strings.Contains(u, "Pictures today: **2** of 2 ("+testImageModel+": 2 of 3)") {
		t.Fatalf("usage: %s", u)
	}
	admin := msg("/image admins draw freely")
	admin.User.Admin = true
	if f := rg.draw(t, admin).final(); f.Outcome != OutcomeDone {
		t.Fatalf("admin: %+v", f)
	}

	// The model's own limit.
	rg2 := newImageRig(t, rs.Client(), rs.Prefix+"b", ImageSettings{DailyImages: 1})
	rg2.draw(t, msg("/image a"))
	if f := rg2.draw(t, msg("/image b")).final(); !strings.Contains(f.Note, "1 pictures for today with this model") {
		t.Fatalf("model limit: %+v", f)
	}
}

func TestImageErrorsReadPlainlyAndAreRefunded(t *testing.T) {
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{}, WithLimits(Limits{DailyImages: 1}))
	for _, tc := range []struct {
		code    string
		outcome Outcome
		words   string
	}{
		{"InputTextSensitiveContentDetected", OutcomeFiltered, "blocked this prompt"},
		{"OutputImageSensitiveContentDetected", OutcomeFiltered, "blocked the picture it made"},
		{"ModelNotOpen", OutcomeFailed, "开通管理"},
		{"QuotaExceeded", OutcomeFailed, "quota"},
	} {
		rg.ark.EnqueueImages(arktest.ImageResponse{ErrorCode: tc.code})
		p := rg.draw(t, msg("/image something"))
		f := p.final()
		if f.Outcome != tc.outcome || !strings.Contains(f.Note, tc.words) || len(p.pics) != 0 {
			t.Errorf("%s: %+v", tc.code, f)
		}
	}
	// Failures cost nothing: the one picture allowed is still there.
	if f := rg.draw(t, msg("/image at last")).final(); f.Outcome != OutcomeDone {
		t.Fatalf("after failures: %+v", f)
	}

	p := &painting{recorder: &recorder{t: t}, fail: fmt.Errorf("upload refused")}
	admin := msg("/image lost in the post")
	admin.User.Admin = true
	if err := rg.engine.Handle(context.Background(), admin, p); err != nil {
		t.Log(err)
	}
	if f := p.final(); f.Outcome != OutcomeFailed || !strings.Contains(f.Note, "couldn't post it here") {
		t.Fatalf("upload failure: %+v", f)
	}

	p = &painting{recorder: &recorder{t: t}, fail: fmt.Errorf("upload: %w", wordedError{})}
	admin = msg("/image lost again")
	admin.User.Admin = true
	_ = rg.engine.Handle(context.Background(), admin, p)
	if f := p.final(); f.Note != "I made the picture but couldn't post it: invite me first." {
		t.Fatalf("worded upload failure: %+v", f)
	}
}

// wordedError is an adapter's error with words for the user.
type wordedError struct{}

func (wordedError) Error() string       { return "not_in_channel" }
func (wordedError) UserMessage() string { return "invite me first." }

func TestImageRefusals(t *testing.T) {
	rs := redistest.New(t)
	rg := newRig(t, rs.Client(), rs.Prefix)
	if n := rg.ask(t, msg("/image a cat")).notice(); n != msgNoImages {
		t.Fatalf("not enabled: %q", n)
	}
	if h := rg.ask(t, msg("/help")).notice(); strings.Contains(h, "/image") {
		t.Fatal("help offers /image when it is off")
	}
	rg = newImageRig(t, rs.Client(), rs.Prefix+"b", ImageSettings{})
	if n := rg.ask(t, msg("/image a cat")).notice(); n != msgNoImagesHere {
		t.Fatalf("a reply without pictures: %q", n)
	}
	if n := rg.draw(t, msg("/image   ")).notice(); n != msgImageUsage {
		t.Fatalf("no prompt: %q", n)
	}
	if h := rg.ask(t, msg("/help")).notice(); !strings.Contains(h, "/image <prompt>") {
		t.Fatalf("help: %s", h)
	}
	if n := len(rg.imageRequests()); n != 0 {
		t.Fatalf("%d requests to Ark", n)
	}
}

func TestImageStop(t *testing.T) {
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{})
	rg.ark.EnqueueImages(arktest.ImageResponse{Hang: true})
	m := msg("/image slowly")
	done := make(chan *painting)
	go func() { done <- rg.draw(t, m) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(rg.imageRequests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if res := rg.engine.Stop(m.DedupeKey(), m.User); !res.Stopped {
		t.Fatalf("stop: %+v", res)
	}
	select {
	case p := <-done:
		if f := p.final(); f.Outcome != OutcomeStopped {
			t.Fatalf("stopped: %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stopped /image did not end")
	}
}

func TestImageSizeArgument(t *testing.T) {
	for arg, want := range map[string][2]string{
		"size:2560x1440 a harbour": {"2560x1440", "a harbour"},
		"size:4k  a harbour ":      {"4K", "a harbour"},
		"size:huge a harbour":      {"", "size:huge a harbour"},
		"a size:1K harbour":        {"", "a size:1K harbour"},
		"size:1K":                  {"1K", ""},
	} {
		if size, prompt := imageSize(arg); size != want[0] || prompt != want[1] {
			t.Errorf("%q: %q, %q", arg, size, prompt)
		}
	}
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{Size: "2K"})
	rg.draw(t, msg("/image size:1440x2560 a tall tower"))
	if b := rg.imageRequests()[0].Body; b["size"] != "1440x2560" || b["prompt"] != "a tall tower" {
		t.Fatalf("sent size %v, prompt %v", b["size"], b["prompt"])
	}
	if n := rg.draw(t, msg("/image size:2K")).notice(); n != msgImageUsage {
		t.Fatalf("a size alone: %q", n)
	}
}

// /retry does not answer a picture's prompt with the chat model.
func TestImageRetryRefused(t *testing.T) {
	rs := redistest.New(t)
	rg := newImageRig(t, rs.Client(), rs.Prefix, ImageSettings{})
	rg.draw(t, msg("/image a cat"))
	chats := len(rg.ark.Requests())
	if n := rg.ask(t, msg("/retry")).notice(); n != msgRetryPicture {
		t.Fatalf("retry: %q", n)
	}
	if len(rg.ark.Requests()) != chats {
		t.Fatal("the retry asked Ark")
	}
}

func FuzzImageSize(f *testing.F) {
	for _, s := range []string{"size:2K a cat", "size:2048x2048", "a cat", "size: x", "size:9999x1 y", " size:4k\tz "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		size, prompt := imageSize(arg)
		if size != "" && !sizeArg.MatchString(size) {
			t.Fatalf("%q: size %q", arg, size)
		}
		if size == "" && prompt != strings.TrimSpace(arg) {
			t.Fatalf("%q: prompt %q without a size", arg, prompt)
		}
		if !strings.Contains(arg, prompt) || prompt != strings.TrimSpace(prompt) {
			t.Fatalf("%q: prompt %q", arg, prompt)
		}
	})
}

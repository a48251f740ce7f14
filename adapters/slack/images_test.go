package slack

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// painter is a conversation.Handler that answers every message with a
// picture posted through conversation.ImageReply, as the engine's /image
// does, then a final frame saying how the upload went.
type painter struct {
	pic    []byte
	mu     sync.Mutex
	out    []string // per message: the references, or the error
	worded *conversation.UserError
}

func (p *painter) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	_ = r.Begin(ctx)
	_ = r.Render(ctx, conversation.Frame{Text: "🎨 Drawing…"})
	ir, ok := r.(conversation.ImageReply)
	if !ok {
		p.record("no ImageReply")
		return r.Render(ctx, conversation.Frame{Text: "🎨 Drawing…", Final: true, Outcome: conversation.OutcomeFailed})
	}
	refs, err := ir.SendPictures(ctx, "a lighthouse *at dawn*", []conversation.Picture{
		{Name: "a.png", ContentType: "image/png", Data: p.pic}, {Name: "b.png", ContentType: "image/png", Data: p.pic}})
	if err != nil {
		p.setErr(err)
		p.record("error: " + err.Error())
		return r.Render(ctx, conversation.Frame{Text: "🎨 Drawing…", Final: true, Outcome: conversation.OutcomeFailed, Note: "upload failed"})
	}
	p.record(strings.Join(refs, ","))
	p.setErr(nil)
	return r.Render(ctx, conversation.Frame{Text: "🎨 Drawing… done.", Final: true, Outcome: conversation.OutcomeDone})
}

func (p *painter) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out = append(p.out, s)
}

// setErr keeps the latest upload error's words for the user, if any.
func (p *painter) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.worded = nil
	if um, ok := errors.AsType[*conversation.UserError](err); ok {
		p.worded = um
	}
}

func (p *painter) lastErr() *conversation.UserError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.worded
}

func (p *painter) results() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

func (p *painter) Stop(string, conversation.User) conversation.StopResult {
	return conversation.StopResult{}
}

func (p *painter) ModelChoices(context.Context, conversation.Message) []conversation.ModelChoice {
	return nil
}

func TestSendPicturesUploadsIntoTheThread(t *testing.T) {
	pic := bytes.Repeat([]byte("\x89PNG\r\n\x1a\n"), 100)
	h := &painter{pic: pic}
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs.Close)
	fs.SetRateLimits(&slacktest.RateLimits{Scale: fastScale})
	e := &env{t: t, fs: fs}
	start(t, fs, h, nil)

	ts := fs.NextTS()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> /image a lighthouse", ts, ""))
	e.waitFor("the upload", 10*time.Second, func() bool { return len(h.results()) == 1 })
	ups := fs.Uploads()
	if res := h.results()[0]; len(ups) != 2 || res != "Slack file "+ups[0].FileID+",Slack file "+ups[1].FileID {
		t.Fatalf("result %q, uploads %+v", res, ups)
	}
	for _, u := range ups {
		if !bytes.Equal(u.Data, pic) || u.Channel != "C1" || u.ThreadTS != ts || u.Comment != "a lighthouse _at dawn_" ||
			u.Title != "a lighthouse *at dawn*" || u.AltText != "a lighthouse *at dawn*" {
			t.Errorf("upload: %+v", u)
		}
	}
	if n := fs.CallCount("files.completeUploadExternal"); n != 1 {
		t.Errorf("%d files.completeUploadExternal calls, want one for both pictures", n)
	}

	// A slash command's pictures go to the channel itself.
	if _, err := fs.SendSlashCommand(fs.NewSlashCommand("/image", "a cat", "C2", "U1")); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the slash command's upload", 10*time.Second, func() bool { return len(h.results()) == 2 })
	if ups := fs.Uploads(); len(ups) != 4 || ups[3].Channel != "C2" || ups[3].ThreadTS != "" {
		t.Fatalf("slash uploads: %+v", ups[2:])
	}
}

func TestSendPicturesFailsPlainly(t *testing.T) {
	h := &painter{pic: []byte("\x89PNG\r\n\x1a\nxxxx")}
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second, Scopes: without(slacktest.DefaultScopes, "files:write")})
	t.Cleanup(fs.Close)
	e := &env{t: t, fs: fs}
	start(t, fs, h, nil)
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> /image x", fs.NextTS(), ""))
	e.waitFor("the refusal", 10*time.Second, func() bool { return len(h.results()) == 1 })
	if res := h.results()[0]; !strings.Contains(res, "missing_scope") {
		t.Fatalf("without files:write: %q", res)
	}
	if um := h.lastErr(); um == nil || !strings.Contains(um.UserMessage(), "files:write scope") {
		t.Fatalf("without files:write, the user reads %v", um)
	}

	fs2 := slacktest.New(slacktest.Options{PingInterval: time.Second})
	t.Cleanup(fs2.Close)
	e2 := &env{t: t, fs: fs2}
	start(t, fs2, h, nil)
	fs2.FailNext("files.completeUploadExternal", slacktest.Failure{Error: "not_in_channel"})
	e2.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> /image y", fs2.NextTS(), ""))
	e2.waitFor("the failure", 10*time.Second, func() bool { return len(h.results()) == 2 })
	if res := h.results()[1]; !strings.Contains(res, "not_in_channel") || len(fs2.Uploads()) != 0 {
		t.Fatalf("a failed completion: %q", res)
	}
}

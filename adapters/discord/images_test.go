package discord

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

// painter stands in for the engine's /image: Begin, the pictures through
// conversation.ImageReply, a final frame.
type painter struct {
	pic  []byte
	mu   sync.Mutex
	msgs []conversation.Message
	refs [][]string
	errs []error
}

func (p *painter) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	_ = r.Begin(ctx)
	p.mu.Lock()
	pic := p.pic
	p.mu.Unlock()
	refs, err := r.(conversation.ImageReply).SendPictures(ctx, "a *green* owl @everyone", []conversation.Picture{
		{Name: "owl-1.png", ContentType: "image/png", Data: pic}, {Name: "owl-2.png", ContentType: "image/png", Data: pic}})
	p.mu.Lock()
	p.msgs, p.refs, p.errs = append(p.msgs, m), append(p.refs, refs), append(p.errs, err)
	p.mu.Unlock()
	return r.Render(ctx, conversation.Frame{Text: "🎨 Drawing… done.", Final: true, Outcome: conversation.OutcomeDone})
}

func (p *painter) Stop(string, conversation.User) conversation.StopResult {
	return conversation.StopResult{}
}

func (p *painter) ModelChoices(context.Context, conversation.Message) []conversation.ModelChoice {
	return nil
}

// wait waits for the n-th Handle call and returns its message, references
// and error.
func (p *painter) wait(t *testing.T, n int) (conversation.Message, []string, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		if len(p.msgs) >= n {
			defer p.mu.Unlock()
			return p.msgs[n-1], p.refs[n-1], p.errs[n-1]
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no picture %d", n)
	return conversation.Message{}, nil, nil
}

// pictures are the bot's messages in channel carrying attachments.
func pictures(hs *harness, channel string) []discordtest.Message {
	var out []discordtest.Message
	for _, m := range hs.fake.Messages(channel) {
		if m.Author.ID == hs.fake.Bot().ID && len(m.Attachments) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func TestDiscordPictures(t *testing.T) {
	pic := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 3000)...)
	p := &painter{pic: pic}
	hs := start(t, setup{engine: p, opts: []Option{WithPictures(true)}})

	// /image is registered, with its size choices and a picture to edit.
	var image struct {
		Options []struct {
			Name     string
			Required bool
			Choices  []struct{ Value string }
		}
	}
	for _, raw := range hs.fake.Commands()[guildID] {
		if strings.Contains(string(raw), `"name":"image"`) {
			_ = json.Unmarshal(raw, &image)
		}
	}
	if len(image.Options) != 3 || image.Options[0].Name != "prompt" || !image.Options[0].Required ||
		image.Options[1].Name != "size" || len(image.Options[1].Choices) != len(imageSizes) || image.Options[2].Name != "picture" {
		t.Fatalf("/image = %+v", image)
	}

	// A mention: the pictures reply to it, the prompt their text, no pings.
	q := hs.mention(alice, channelID, "/image a green owl")
	_, refs, err := p.wait(t, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := pictures(hs, channelID)
	if len(got) != 1 || got[0].ReferenceID != q.ID || got[0].Content != "🎨 a *green* owl @everyone" || len(got[0].Attachments) != 2 {
		t.Fatalf("pictures = %+v", got)
	}
	for i, a := range got[0].Attachments {
		data, ok := hs.fake.AttachmentData(a.URL)
		if !ok || !bytes.Equal(data, pic) || refs[i] != a.URL || a.Filename != []string{"owl-1.png", "owl-2.png"}[i] {
			t.Errorf("attachment %d: %+v, ref %q", i, a, refs[i])
		}
	}

	// /image with a size and a picture to change.
	in := hs.fake.AddAttachment("cat.png", "image/png", pic)
	hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice,
		Command: "image", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "make it blue"},
			{Name: "size", Type: 3, Value: "2560x1440"}, {Name: "picture", Type: 11, Value: in.ID}},
		Attachments: []discordtest.Attachment{in}})
	m, _, err := p.wait(t, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "/image size:2560x1440 make it blue" || len(m.Images) != 1 ||
		m.Images[0].URL != "data:image/png;base64,"+base64.StdEncoding.EncodeToString(pic) {
		t.Fatalf("/image gave the engine %q with %d pictures", m.Text, len(m.Images))
	}
	if n := len(pictures(hs, channelID)); n != 2 {
		t.Fatalf("%d picture messages", n)
	}

	// Where the bot may not post, the pictures come as a followup.
	hs.fake.AddChannel(discordtest.Channel{ID: "410", GuildID: guildID, Type: discordtest.ChannelText, Forbidden: true})
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: "410", User: alice,
		Command: "image", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "a fox"}}})
	if _, _, err := p.wait(t, 3); err != nil {
		t.Fatal(err)
	}
	got = pictures(hs, "410")
	if len(got) != 1 || got[0].InteractionID != ref.ID || got[0].Ephemeral() || len(got[0].Attachments) != 2 {
		t.Fatalf("followup pictures = %+v", got)
	}

	// Larger than Discord takes: refused with words for the user.
	p.mu.Lock()
	p.pic = make([]byte, 11<<20)
	p.mu.Unlock()
	hs.mention(alice, channelID, "/image a huge owl")
	_, _, err = p.wait(t, 4)
	if um, ok := errors.AsType[*conversation.UserError](err); !ok || !strings.Contains(um.UserMessage(), "larger than Discord accepts") {
		t.Fatalf("too large: %v", err)
	}
}

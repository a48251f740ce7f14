package discord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/render"
)

// pictureSink is a sink that can post a message with files.
type pictureSink interface {
	postFiles(ctx context.Context, content string, files []*discordgo.File) (*discordgo.Message, error)
}

// postFiles posts content with files into the channel, replying to
// replyTo, under the channel's budget.
func (c *channelSink) postFiles(ctx context.Context, content string, files []*discordgo.File) (*discordgo.Message, error) {
	data := &discordgo.MessageSend{Content: content, Files: files, AllowedMentions: noMentions()}
	if c.replyTo != "" {
		no := false
		data.Reference = &discordgo.MessageReference{MessageID: c.replyTo, ChannelID: c.channelID, FailIfNotExists: &no}
	}
	var m *discordgo.Message
	err := c.a.call(ctx, ratelimit.MustDeliver, "messages.create", c.budgetKey(), false, func(ctx context.Context) (err error) {
		m, err = c.a.sess.ChannelMessageSendComplex(c.channelID, data, reqOpts(ctx)...)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.a.joined.Add(c.channelID, true)
	return m, nil
}

// postFiles posts content with files as a followup of the interaction.
func (s *interactionSink) postFiles(ctx context.Context, content string, files []*discordgo.File) (*discordgo.Message, error) {
	params := &discordgo.WebhookParams{Content: content, Files: files, AllowedMentions: noMentions()}
	if s.ephemeral {
		params.Flags = discordgo.MessageFlagsEphemeral
	}
	var m *discordgo.Message
	err := s.a.call(ctx, ratelimit.MustDeliver, "webhooks.execute", s.budgetKey(), false, func(ctx context.Context) (err error) {
		m, err = s.a.sess.FollowupMessageCreate(s.in, true, params, reqOpts(ctx)...)
		return err
	})
	return m, err
}

// SendPictures implements conversation.ImageReply: one message with the
// pictures attached and the prompt as its text, replying where the answer
// goes (through the interaction where the bot may not post). The
// references returned are the attachments' URLs.
func (r *reply) SendPictures(ctx context.Context, caption string, pics []conversation.Picture) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	files := make([]*discordgo.File, len(pics))
	for i, p := range pics {
		files[i] = &discordgo.File{Name: p.Name, ContentType: p.ContentType, Reader: bytes.NewReader(p.Data)}
	}
	content := render.Truncate("🎨 "+caption, maxContent-markerRoom)
	ps, ok := r.sink.(pictureSink)
	if !ok {
		return nil, fmt.Errorf("discord: this answer can't carry files")
	}
	m, err := ps.postFiles(ctx, content, files)
	if err != nil && isForbidden(err) && r.fallback != nil {
		if fb, ok := r.fallback.(pictureSink); ok {
			r.a.log.Info("may not post files in this channel; posting through the interaction", "key", r.key, "err", err)
			for _, f := range files {
				_, _ = f.Reader.(*bytes.Reader).Seek(0, 0)
			}
			m, err = fb.postFiles(ctx, content, files)
		}
	}
	if err != nil {
		return nil, uploadError(err)
	}
	if r.chainRoot != "" {
		r.a.chains.Add(m.ID, r.chainRoot)
	}
	refs := make([]string, len(m.Attachments))
	for i, a := range m.Attachments {
		refs[i] = a.URL
	}
	return refs, nil
}

// uploadError says what to do about Discord's refusals of a picture.
func uploadError(err error) error {
	var re *discordgo.RESTError
	if !errors.As(err, &re) || re.Response == nil {
		return err
	}
	switch re.Response.StatusCode {
	case http.StatusRequestEntityTooLarge:
		return &conversation.UserError{Err: err, Message: "it is larger than Discord accepts from the bot; a smaller images.size would fit."}
	case http.StatusForbidden:
		return &conversation.UserError{Err: err, Message: "I may not attach files here (Discord's Attach Files permission)."}
	}
	return err
}

// imageSizes are /image's size choices: Seedream's recommended sizes.
var imageSizes = []*discordgo.ApplicationCommandOptionChoice{
	{Name: "Square 2K (2048×2048)", Value: "2048x2048"},
	{Name: "Landscape 16:9 (2560×1440)", Value: "2560x1440"},
	{Name: "Portrait 9:16 (1440×2560)", Value: "1440x2560"},
	{Name: "Landscape 4:3 (2304×1728)", Value: "2304x1728"},
	{Name: "Portrait 3:4 (1728×2304)", Value: "1728x2304"},
	{Name: "Square 1K (1024×1024)", Value: "1K"},
	{Name: "Square 4K (4096×4096)", Value: "4K"},
}

// imageCommand is /image prompt:<text> size:<choice> picture:<attachment>.
func imageCommand() *discordgo.ApplicationCommand {
	return &discordgo.ApplicationCommand{Name: "image", Description: "Draw a picture, or change the one you attach",
		Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "prompt", Description: "What to draw, or how to change the picture", Required: true, MaxLength: 2000},
			{Type: discordgo.ApplicationCommandOptionString, Name: "size", Description: "The picture's size (default: the bot's)", Choices: imageSizes},
			{Type: discordgo.ApplicationCommandOptionAttachment, Name: "picture", Description: "A picture to change"},
		}}
}

// imageText is the engine's /image command for a prompt and a size
// choice ("" for the default).
func imageText(prompt, size string) string {
	if size != "" {
		return "/" + conversation.CmdImage + " size:" + size + " " + prompt
	}
	return "/" + conversation.CmdImage + " " + prompt
}

// WithPictures registers /image (when the engine has images enabled).
func WithPictures(on bool) Option { return func(o *options) { o.pictures = on } }

package discord

import (
	"context"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/attach"
)

// attachments reads a message's attachments into m (see attach.Reader):
// images for vision models, downloaded into data: URLs within
// Limits.MaxImageBytes so the model needn't reach Discord's CDN (when
// download is false, or the download fails, the CDN URL is passed
// instead); text and code files within Limits.MaxFileBytes; the names of
// everything else.
func (a *Adapter) attachments(ctx context.Context, m *conversation.Message, atts []*discordgo.MessageAttachment, download bool) {
	ctx, cancel := context.WithTimeout(ctx, attach.DefaultTimeout) // for all of them
	defer cancel()
	r := attach.Reader{
		Limits: attach.Limits{Image: a.limits.MaxImageBytes, Text: a.limits.MaxFileBytes},
		Fetch: func(ctx context.Context, url string, limit int64) ([]byte, error) {
			return attach.Download(ctx, a.client, url, limit)
		},
		Public:     true,
		LinkImages: !download,
	}
	for _, att := range atts {
		if att == nil {
			continue
		}
		f := attach.File{Name: att.Filename, ContentType: att.ContentType, Size: int64(att.Size), URL: att.URL}
		if err := r.Read(ctx, m, f); err != nil {
			a.log.Debug("attachment download failed", "file", att.Filename, "err", err)
		}
	}
}

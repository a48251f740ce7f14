package slack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
)

// uploadTimeout bounds sending one picture's bytes to its upload URL.
const uploadTimeout = 60 * time.Second

// maxAltText is the most alt text Slack keeps for a file.
const maxAltText = 1000

// SendPictures implements conversation.ImageReply with Slack's external
// upload flow: files.getUploadURLExternal for each picture, its bytes
// POSTed to the URL Slack gave, then one files.completeUploadExternal
// sharing them all in the answer's channel and thread with the prompt as
// the message. The two methods go through their budgets (Tier 4); the
// references returned are the Slack file IDs.
func (r *reply) SendPictures(ctx context.Context, caption string, pics []conversation.Picture) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	files := make([]slack.FileSummary, 0, len(pics))
	for _, p := range pics {
		var up *slack.GetUploadURLExternalResponse
		err := r.a.call(ctx, ratelimit.MustDeliver, r.t.team, r.t.channel, "files.getUploadURLExternal", func(ctx context.Context) (err error) {
			up, err = r.a.api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{
				FileName: p.Name, FileSize: len(p.Data), AltTxt: cut(caption, maxAltText)})
			return err
		})
		if err != nil {
			return nil, uploadError("files.getUploadURLExternal", err)
		}
		uctx, cancel := context.WithTimeout(ctx, uploadTimeout)
		err = r.a.api.UploadToURL(uctx, slack.UploadToURLParameters{UploadURL: up.UploadURL, Reader: bytes.NewReader(p.Data), Filename: p.Name})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("uploading %s: %w", p.Name, err)
		}
		files = append(files, slack.FileSummary{ID: up.FileID, Title: cut(caption, 250)})
	}
	var done *slack.CompleteUploadExternalResponse
	err := r.a.call(ctx, ratelimit.MustDeliver, r.t.team, r.t.channel, "files.completeUploadExternal", func(ctx context.Context) (err error) {
		done, err = r.a.api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{
			Files: files, Channel: r.t.channel, ThreadTimestamp: r.t.thread, InitialComment: MarkdownToMrkdwn(caption)})
		return err
	})
	if err != nil {
		return nil, uploadError("files.completeUploadExternal", err)
	}
	refs := make([]string, len(done.Files))
	for i, f := range done.Files {
		refs[i] = "Slack file " + f.ID
	}
	return refs, nil
}

// uploadError names the method that failed and, for Slack's refusals an
// operator must fix, says what to do.
func uploadError(method string, err error) error {
	err = fmt.Errorf("%s: %w", method, err)
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) {
		return err
	}
	switch se.Err {
	case "missing_scope":
		return &conversation.UserError{Err: err, Message: "the Slack app lacks the files:write scope; an operator must add it and reinstall the app."}
	case "not_in_channel", "channel_not_found":
		return &conversation.UserError{Err: err, Message: "I'm not a member of this channel; invite me with /invite."}
	}
	return err
}

// cut is s cut to at most n runes.
func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

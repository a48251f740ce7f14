package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// /image in the console: the picture is saved under console.pictures_dir
// and its path printed; /usage counts it; an error reads plainly.
func TestConsoleImage(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, ark.URL, "", `
images:
  model: doubao-seedream-4-0-250828
console:
  pictures_dir: `+dir+`
`)
	ark.EnqueueImages(arktest.ImageResponse{}, arktest.ImageResponse{ErrorCode: "InputTextSensitiveContentDetected"})
	out, errs, code := runBot(t, cfg, "/image a lighthouse at dawn\n/image something rude\n/usage\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(files) != 1 {
		t.Fatalf("saved %v\n%s", files, out)
	}
	data, err := os.ReadFile(files[0])
	if err != nil || !bytes.Equal(data, arktest.DefaultPicture) {
		t.Fatalf("saved picture: %d bytes, %v", len(data), err)
	}
	for _, want := range []string{"🎨 Drawing…", "🖼  a lighthouse at dawn", "saved to " + files[0],
		"⚠ Ark's content moderation blocked this prompt", "Pictures today: **1**"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// /image end to end on Slack and Discord: the fake Ark's picture lands in
// the conversation (a Slack upload into the thread or the slash
// command's channel; a Discord attachment replying to the question), and
// a follow-up /image in the same conversation edits it.
func TestServeImages(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	defer fs.Close()
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	fd := discordtest.New()
	defer fd.Close()
	const guild, channel = "700000000000000001", "700000000000000002"
	fd.AddGuild(guild, "Test guild")
	fd.AddChannel(discordtest.Channel{ID: channel, GuildID: guild, Name: "general", Type: discordtest.ChannelText})

	addr := freeAddr(t)
	t.Setenv("T_SLACK_BOT", fs.BotToken())
	t.Setenv("T_SLACK_APP", fs.AppToken())
	t.Setenv("T_DISCORD", fd.Token())
	cfg := writeConfig(t, ark.URL, rs.URL, fmt.Sprintf(`
server:
  addr: %s
images:
  model: doubao-seedream-4-0-250828
slack:
  bot_token: ${T_SLACK_BOT}
  app_token: ${T_SLACK_APP}
  api_url: %s
  edit_interval: 50ms
discord:
  token: ${T_DISCORD}
  api_url: %s
  guild_ids: [%s]
  edit_interval: 50ms
`, addr, fs.APIURL(), fd.APIURL(), guild))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", cfg}, strings.NewReader(""), &stdout, &stderr) }()
	defer func() {
		stop()
		select {
		case <-exit:
		case <-time.After(20 * time.Second):
			t.Error("the bot did not stop")
		}
	}()
	base := "http://" + addr
	waitUntil(t, "/readyz", 15*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	// Slack: @bot /image in a thread, then a follow-up that edits it.
	ts := fs.NextTS()
	if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@"+fs.BotUserID()+"> /image a red fox", ts, "")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the Slack upload", 10*time.Second, func() bool { return len(fs.Uploads()) == 1 })
	up := fs.Uploads()[0]
	if up.Channel != "C1" || up.ThreadTS != ts || up.Comment != "a red fox" || !bytes.Equal(up.Data, arktest.DefaultPicture) {
		t.Fatalf("upload: %+v", up)
	}
	waitUntil(t, "the Slack answer to finish", 10*time.Second, func() bool {
		for _, m := range fs.Replies("C1", ts) {
			if strings.Contains(m.Visible(), "Drawing… done.") && !m.Streaming {
				return true
			}
		}
		return false
	})
	if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.UserMessage("C1", "channel", "U1", "!image make it blue", fs.NextTS(), ts)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the edited picture", 10*time.Second, func() bool { return len(fs.Uploads()) == 2 })
	var imgReqs []arktest.Request
	for _, r := range ark.Requests() {
		if r.Path == arktest.ImagesPath {
			imgReqs = append(imgReqs, r)
		}
	}
	if img, _ := imgReqs[1].Body["image"].(string); len(imgReqs) != 2 || !strings.Contains(img, arktest.FilesPath) {
		t.Fatalf("the follow-up did not edit the picture: %v", imgReqs[1].Body["image"])
	}

	// Slack's /image slash command posts in the channel.
	if _, err := fs.SendSlashCommand(fs.NewSlashCommand("/image", "a lighthouse", "C2", "U1")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the slash command's upload", 10*time.Second, func() bool { return len(fs.Uploads()) == 3 })
	if up := fs.Uploads()[2]; up.Channel != "C2" || up.ThreadTS != "" {
		t.Fatalf("slash upload: %+v", up)
	}

	// Discord: a mention, answered with the picture attached to a reply.
	bot := fd.Bot()
	q, err := fd.PostUserMessage(discordtest.MessageSpec{ChannelID: channel, GuildID: guild,
		Author: discordtest.User{ID: "600000000000000001", Username: "alice"}, Content: "<@" + bot.ID + "> /image a green owl",
		Mentions: []discordtest.User{bot}})
	if err != nil {
		t.Fatal(err)
	}
	var pic discordtest.Message
	waitUntil(t, "the Discord picture", 10*time.Second, func() bool {
		for _, m := range fd.Messages(channel) {
			if m.Author.ID == bot.ID && len(m.Attachments) == 1 {
				pic = m
				return true
			}
		}
		return false
	})
	data, ok := fd.AttachmentData(pic.Attachments[0].URL)
	if pic.ReferenceID != q.ID || pic.Content != "🎨 a green owl" || !ok || !bytes.Equal(data, arktest.DefaultPicture) {
		t.Fatalf("Discord picture: %+v", pic)
	}

	// Discord's /image with a size.
	if _, err := fd.Interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, GuildID: guild, ChannelID: channel,
		User: discordtest.User{ID: "600000000000000001", Username: "alice"}, Command: "image",
		Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "a wide valley"}, {Name: "size", Type: 3, Value: "2560x1440"}}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the /image picture", 10*time.Second, func() bool {
		n := 0
		for _, m := range fd.Messages(channel) {
			if m.Author.ID == bot.ID && len(m.Attachments) == 1 {
				n++
			}
		}
		return n == 2
	})
	last := ark.Requests()[len(ark.Requests())-1]
	if last.Path != arktest.ImagesPath || last.Body["size"] != "2560x1440" || last.Body["prompt"] != "a wide valley" {
		t.Fatalf("/image sent %v", last.Body)
	}

	// Counted once each answer ends, just after its picture is posted.
	for _, want := range []string{
		`arkbot_images_total{model="doubao-seedream-4-0-250828",outcome="done",platform="slack"} 3`,
		`arkbot_images_total{model="doubao-seedream-4-0-250828",outcome="done",platform="discord"} 2`,
	} {
		waitUntil(t, want, 10*time.Second, func() bool { _, text := get(t, base+"/metrics"); return strings.Contains(text, want) })
	}
}

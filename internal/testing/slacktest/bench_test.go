package slacktest

import (
	"context"
	"strconv"
	"testing"

	"github.com/slack-go/slack"
)

// BenchmarkStreamedAnswer drives, over loopback, the traffic of one answer
// in the load test: an app_mention delivered over Socket Mode and acked,
// assistant.threads.setStatus, chat.startStream, four chat.appendStream and
// chat.stopStream, with an OnCall hook as the load test sets.
func BenchmarkStreamedAnswer(b *testing.B) {
	s := New(Options{OnCall: func(Call) {}})
	defer s.Close()
	api := client(s)
	ctx := context.Background()
	conn := socketConn(b, ctx, s)
	var hello struct{ Type string }
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		b.Fatalf("hello = %+v, %v", hello, err)
	}
	// The bot's side of Socket Mode: read each envelope, ack it.
	delivered := make(chan error, 1)
	go func() {
		for {
			var env struct {
				EnvelopeID string `json:"envelope_id"`
			}
			if err := conn.ReadJSON(&env); err != nil {
				return
			}
			delivered <- conn.WriteJSON(map[string]string{"envelope_id": env.EnvelopeID})
		}
	}()
	const chunk = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
	for i := 0; b.Loop(); i++ {
		ch := "C" + strconv.Itoa(i%1000)
		ts := s.NextTS()
		if _, err := s.SendEvent(EventOptions{}, AppMention(ch, "U1", "<@UBOT> question "+ts, ts, "")); err != nil {
			b.Fatal(err)
		}
		if err := <-delivered; err != nil {
			b.Fatal(err)
		}
		if err := api.SetAssistantThreadsStatusContext(ctx, slack.AssistantThreadsSetStatusParameters{ChannelID: ch, ThreadTS: ts, Status: "is thinking…"}); err != nil {
			b.Fatal(err)
		}
		_, sts, err := api.StartStreamContext(ctx, ch, slack.MsgOptionTS(ts), slack.MsgOptionRecipientUserID("U1"),
			slack.MsgOptionRecipientTeamID(DefaultTeamID), slack.MsgOptionMarkdownText(chunk))
		if err != nil {
			b.Fatal(err)
		}
		for range 4 {
			if _, _, err := api.AppendStreamContext(ctx, ch, sts, slack.MsgOptionMarkdownText(chunk)); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := api.StopStreamContext(ctx, ch, sts); err != nil {
			b.Fatal(err)
		}
	}
}

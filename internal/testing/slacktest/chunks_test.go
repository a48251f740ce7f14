package slacktest

import (
	"context"
	"errors"
	"testing"

	"github.com/slack-go/slack"
)

// rawChunk is a chunk as any JSON object, for chunks slack-go cannot build.
type rawChunk map[string]any

func (c rawChunk) ChunkType() slack.StreamChunkType { return slack.StreamChunkType(c["type"].(string)) }

func TestStreamChunks(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	api := client(s)
	ctx := context.Background()
	rcpt := []slack.MsgOption{slack.MsgOptionTS("1.1"), slack.MsgOptionRecipientUserID("U1"), slack.MsgOptionRecipientTeamID(DefaultTeamID)}
	task := func(status slack.TaskCardStatus, sources ...slack.TaskCardSource) slack.TaskUpdateChunk {
		c := slack.NewTaskUpdateChunk("search", "Searching the web")
		c.Status, c.Sources = status, sources
		return c
	}

	_, ts, err := api.StartStreamContext(ctx, "C1", append(rcpt, slack.MsgOptionTaskDisplayMode(slack.TaskDisplayModeTimeline),
		slack.MsgOptionChunks(task(slack.TaskCardStatusInProgress)))...)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.Message("C1", ts)
	if got, ok := m.Task("search"); !ok || got.Status != "in_progress" || m.Visible() != "" || m.TaskDisplayMode != "timeline" {
		t.Fatalf("started: %+v", m)
	}
	if _, _, err := api.AppendStreamContext(ctx, "C1", ts, slack.MsgOptionChunks(task(slack.TaskCardStatusComplete), slack.NewMarkdownTextChunk("Fresh "))); err != nil {
		t.Fatal(err)
	}
	src := slack.NewTaskCardSource("https://news.example.com/a", "Ark news")
	if _, _, err := api.StopStreamContext(ctx, "C1", ts, slack.MsgOptionChunks(task(slack.TaskCardStatusComplete, src), slack.NewMarkdownTextChunk("facts."))); err != nil {
		t.Fatal(err)
	}
	done, _ := s.Message("C1", ts)
	got, _ := done.Task("search")
	if done.Visible() != "Fresh facts." || len(done.Tasks) != 1 || got.Status != "complete" || len(got.Sources) != 1 || got.Sources[0] != (TaskSource{URL: src.URL, Text: src.Text}) {
		t.Fatalf("stopped: %+v", done)
	}
	if len(m.Tasks) != 1 || m.Tasks[0].Status != "in_progress" {
		t.Errorf("an earlier copy changed: %+v", m.Tasks)
	}

	_, ts, err = api.StartStreamContext(ctx, "C1", append(rcpt, slack.MsgOptionMarkdownText("x"))...)
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]slack.MsgOption{
		"unknown type":       slack.MsgOptionChunks(rawChunk{"type": "tool_call", "text": "x"}),
		"bad status":         slack.MsgOptionChunks(rawChunk{"type": "task_update", "id": "a", "title": "A", "status": "done"}),
		"no title":           slack.MsgOptionChunks(rawChunk{"type": "task_update", "id": "a", "status": "complete"}),
		"source without url": slack.MsgOptionChunks(task(slack.TaskCardStatusComplete, slack.NewTaskCardSource("", "x"))),
		"empty text":         slack.MsgOptionChunks(slack.NewMarkdownTextChunk("")),
	} {
		_, _, err := api.AppendStreamContext(ctx, "C1", ts, opt)
		if se := (slack.SlackErrorResponse{}); !errors.As(err, &se) || se.Err != "invalid_chunks" {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, _, err = api.AppendStreamContext(ctx, "C1", ts, slack.MsgOptionMarkdownText("y"), slack.MsgOptionChunks(slack.NewMarkdownTextChunk("z")))
	if se := (slack.SlackErrorResponse{}); !errors.As(err, &se) || se.Err != "invalid_arguments" {
		t.Errorf("markdown_text with chunks: %v", err)
	}
	_, _, err = api.StartStreamContext(ctx, "C1", append(rcpt, slack.MsgOptionTaskDisplayMode("list"), slack.MsgOptionMarkdownText("x"))...)
	if se := (slack.SlackErrorResponse{}); !errors.As(err, &se) || se.Err != "invalid_arguments" {
		t.Errorf("task_display_mode list: %v", err)
	}
	if m, _ := s.Message("C1", ts); m.Visible() != "x" || len(m.Tasks) != 0 {
		t.Errorf("refused chunks changed the message: %+v", m)
	}
}

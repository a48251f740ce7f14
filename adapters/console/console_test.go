package console

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/arkbot/arkbot/conversation"
)

// scripted answers every message with reasoning, then text in two frames,
// and commands with a notice.
type scripted struct {
	mu   sync.Mutex
	msgs []conversation.Message
}

func (s *scripted) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	if strings.HasPrefix(m.Text, "/") {
		return r.Notice(ctx, "notice for "+m.Text)
	}
	r.Begin(ctx)
	r.Render(ctx, conversation.Frame{Reasoning: "pondering", Model: "doubao"})
	r.Render(ctx, conversation.Frame{Reasoning: "pondering", Text: "Hello, ", Model: "doubao"})
	note := ""
	if m.Text == "fail" {
		note = "Ark is busy"
	}
	return r.Render(ctx, conversation.Frame{Reasoning: "pondering", Text: "Hello, " + m.Text, Model: "doubao", Final: true, Note: note})
}
func (s *scripted) Stop(string) bool { return false }
func (s *scripted) ModelChoices(context.Context, conversation.Message) []conversation.ModelChoice {
	return nil
}

func TestScriptedModeIsPlainText(t *testing.T) {
	h := &scripted{}
	var out bytes.Buffer
	if err := New(h, strings.NewReader("world\n\n/model x\nfail\n"), &out).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "> world\ndoubao: Hello, world\n> /model x\nnotice for /model x\n> fail\ndoubao: Hello, fail\n⚠ Ark is busy\n"
	if out.String() != want {
		t.Fatalf("output:\n%q\nwant\n%q", out.String(), want)
	}
	if len(h.msgs) != 3 || h.msgs[0].Thread != h.msgs[2].Thread || h.msgs[0].ID == h.msgs[2].ID || !h.msgs[0].Mentioned {
		t.Errorf("messages: %+v", h.msgs)
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Error("ANSI codes in scripted output")
	}
}

func TestShowThinkingPrintsReasoning(t *testing.T) {
	var out bytes.Buffer
	New(&scripted{}, strings.NewReader("hi\n"), &out, ShowThinking(true)).Run(context.Background())
	if !strings.Contains(out.String(), "(thinking) pondering") || !strings.Contains(out.String(), "Hello, hi") {
		t.Fatalf("output %q", out.String())
	}
}

func TestInteractiveModePromptsDimsAndQuits(t *testing.T) {
	h := &scripted{}
	var out bytes.Buffer
	New(h, strings.NewReader("hi\n/quit\nnever\n"), &out, Interactive(true), User("ada")).Run(context.Background())
	s := out.String()
	for _, want := range []string{"ada>", dim + "(thinking) pondering", "Hello, hi", "/quit or Ctrl-D leaves"} {
		if !strings.Contains(s, want) {
			t.Errorf("interactive output lacks %q:\n%q", want, s)
		}
	}
	if len(h.msgs) != 1 || h.msgs[0].User.Name != "ada" {
		t.Errorf("/quit did not stop the chat: %+v", h.msgs)
	}
}

func TestSessionsGetDistinctMessageIDs(t *testing.T) {
	a, b := &scripted{}, &scripted{}
	New(a, strings.NewReader("x\n"), &bytes.Buffer{}).Run(context.Background())
	New(b, strings.NewReader("x\n"), &bytes.Buffer{}).Run(context.Background())
	if a.msgs[0].ID == b.msgs[0].ID {
		t.Fatal("two runs reuse a message ID: the second would be dropped as a duplicate")
	}
	if a.msgs[0].ThreadKey() != b.msgs[0].ThreadKey() {
		t.Fatal("two runs are different conversations: history would not survive a restart")
	}
}

func TestFinalLineClosesACodeBlockAndSaysWhy(t *testing.T) {
	var out bytes.Buffer
	r := &reply{c: New(&scripted{}, strings.NewReader(""), &out)}
	text := "Run:\n```sh\nmake"
	r.Render(t.Context(), conversation.Frame{Text: text, Model: "m"})
	r.Render(t.Context(), conversation.Frame{Text: text, Model: "m", Final: true, Outcome: conversation.OutcomeStopped})
	if want := "m: " + text + "\n```\n⚠ Stopped.\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	out.Reset()
	r = &reply{c: New(&scripted{}, strings.NewReader(""), &out)}
	r.Render(t.Context(), conversation.Frame{Final: true, Outcome: conversation.OutcomeFailed, Note: "Ark is unreachable."})
	if want := "⚠ Ark is unreachable.\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}

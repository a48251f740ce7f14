package console

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

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
func (s *scripted) Stop(string, conversation.User) conversation.StopResult {
	return conversation.StopResult{}
}
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

// blocking streams one frame per message and then waits until Stop is
// called with the message's key, as a slow answer does.
type blocking struct {
	mu      sync.Mutex
	msgs    []conversation.Message
	stopped []string
	stop    chan string
}

func (b *blocking) Handle(ctx context.Context, m conversation.Message, r conversation.Reply) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	r.Render(ctx, conversation.Frame{Text: "partial " + m.Text, Model: "m"})
	select {
	case key := <-b.stop:
		if key != m.DedupeKey() {
			return r.Render(ctx, conversation.Frame{Text: "partial " + m.Text, Model: "m", Final: true, Note: "wrong key"})
		}
	case <-ctx.Done():
	}
	return r.Render(ctx, conversation.Frame{Text: "partial " + m.Text, Model: "m", Final: true, Outcome: conversation.OutcomeStopped})
}

func (b *blocking) Stop(key string, _ conversation.User) conversation.StopResult {
	b.mu.Lock()
	b.stopped = append(b.stopped, key)
	b.mu.Unlock()
	b.stop <- key
	return conversation.StopResult{Running: true, Stopped: true}
}

func (b *blocking) ModelChoices(context.Context, conversation.Message) []conversation.ModelChoice {
	return nil
}

// Typed during an answer: /stop ends it at once, other lines wait their
// turn, Ctrl-C ends the answer and drops what waits; at the prompt Ctrl-C
// with an empty line leaves.
func TestInteractiveStopsAndQueues(t *testing.T) {
	h := &blocking{stop: make(chan string, 1)}
	in, w := io.Pipe()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- New(h, in, &out, Interactive(true)).Run(t.Context()) }()
	// "first" blocks; "second" waits its turn; /stop ends "first".
	io.WriteString(w, "first\rsecond\r/stop\r")
	waitFor(t, &out, "partial second", 1)
	// Ctrl-C ends "second" and drops "third"; Ctrl-C at the prompt leaves.
	io.WriteString(w, "third\r\x03")
	waitFor(t, &out, "Stopped.\n"+bold+"you>", 2)
	io.WriteString(w, "\x03")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.msgs) != 2 || h.msgs[0].Text != "first" || h.msgs[1].Text != "second" {
		t.Fatalf("messages %+v", h.msgs)
	}
	if len(h.stopped) != 2 || h.stopped[0] != h.msgs[0].DedupeKey() || h.stopped[1] != h.msgs[1].DedupeKey() {
		t.Fatalf("stopped %q", h.stopped)
	}
	if s := out.String(); strings.Count(s, "Stopped.") != 2 || strings.Contains(s, "wrong key") || strings.Contains(s, "third") {
		t.Fatalf("output %q", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until want is n times in out.
func waitFor(t *testing.T, out *syncBuffer, want string, n int) {
	t.Helper()
	for range 1000 {
		if strings.Count(out.String(), want) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in %q", want, out.String())
}

func TestScriptedModeRefusesOverLongLinesAndGoesOn(t *testing.T) {
	h := &scripted{}
	var out bytes.Buffer
	in := "a\n" + strings.Repeat("x", MaxMessage+1) + "\nb\n"
	if err := New(h, strings.NewReader(in), &out).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(h.msgs) != 2 || h.msgs[0].Text != "a" || h.msgs[1].Text != "b" || !strings.Contains(out.String(), msgTooLong) {
		t.Fatalf("messages %d; output %q", len(h.msgs), out.String())
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// With no messenger and no terminal the bot would chat with nobody: it
// says what to set and fails, rather than exiting 0 in a restart loop.
func TestNoMessengerNoTerminalRefusesToStart(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	cfg := writeConfig(t, ark.URL, "", "")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-config", cfg}, strings.NewReader("hello\n"), &out, &errb)
	if code == 0 {
		t.Fatalf("exit 0 with nobody to chat with\nstdout:\n%s", out.String())
	}
	for _, want := range []string{"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_BOT_TOKEN", "-console", "terminal"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the error does not name %s:\n%s", want, errb.String())
		}
	}
	if len(ark.Requests()) != 0 {
		t.Error("the bot answered")
	}
}

// terminal is the bot run on a pseudo-terminal, as a person runs it.
type terminal struct {
	t    *testing.T
	pty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	from int           // start of the output not yet waited for
	done chan struct{} // closed when run returned
	code int           // run's exit code, once done
}

func startTerminal(t *testing.T, cfg string) *terminal {
	t.Helper()
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", cache)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, pty: ptmx, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	var stderr bytes.Buffer
	go func() {
		defer close(term.done)
		term.code = run(context.Background(), []string{"-config", cfg}, tty, tty, &stderr)
	}()
	t.Cleanup(func() {
		select {
		case <-term.done:
		default:
			term.write("\x03\x03\x04")
			select {
			case <-term.done:
			case <-time.After(10 * time.Second):
				t.Error("the console did not exit")
			}
		}
		tty.Close()
		ptmx.Close()
	})
	return term
}

func (term *terminal) write(s string) {
	term.t.Helper()
	if _, err := io.WriteString(term.pty, s); err != nil {
		term.t.Fatal(err)
	}
}

// wait waits for want in the output written since the last wait, and
// returns that output up to and including want.
func (term *terminal) wait(want string) string {
	term.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		term.mu.Lock()
		s := term.out.String()[term.from:]
		if i := strings.Index(s, want); i >= 0 {
			term.from += i + len(want)
			term.mu.Unlock()
			return s[:i+len(want)]
		}
		term.mu.Unlock()
		if time.Now().After(deadline) {
			term.t.Fatalf("no %q in the output:\n%q", want, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func words(n int) []string {
	w := make([]string, n)
	for i := range w {
		w[i] = "word "
	}
	return w
}

// A person at a terminal: Markdown answers, /stop and Ctrl-C ending a slow
// answer at once and keeping its start, a paste as one message, an
// over-long line refused, logs kept out of the chat, Ctrl-D to leave.
func TestConsoleOnATerminal(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	cfg := writeConfig(t, ark.URL, "", "log:\n  level: info\n")
	term := startTerminal(t, cfg)
	logPath := strings.TrimSpace(strings.TrimPrefix(term.wait("console.log"), "\x1b[2mLogs: "))
	// Start-up warnings show, briefly, before the prompt.
	term.wait("NOT persisted")
	term.wait("you>")

	// Markdown is rendered: no ** left around the bold words.
	ark.Enqueue(arktest.Response{Content: []string{"# Title\n\nSome **bold** words.\n"}})
	term.write("hi\r")
	if out := term.wait("you>"); !strings.Contains(out, "bold") || strings.Contains(out[strings.LastIndex(out, "Title"):], "**bold**") {
		t.Errorf("the answer is not rendered as Markdown:\n%q", out)
	}

	// /stop typed during a slow answer ends it and keeps what it said; a
	// log line written meanwhile goes to the log file, not into the answer,
	// and a warning shows after it.
	ark.Enqueue(arktest.Response{Content: words(50), PerChunk: 100 * time.Millisecond})
	term.write("long story\r")
	term.wait("word")
	slog.Info("a log line during an answer")
	slog.Warn("a warning during an answer")
	term.write("/stop\r")
	out := term.wait("you>")
	if stopped, warned := strings.Index(out, "Stopped."), strings.Index(out, "a warning during an answer"); stopped < 0 || warned < stopped || strings.Contains(out, "log line") {
		t.Errorf("after /stop:\n%q", out)
	}

	// Ctrl-C during an answer stops only the answer.
	ark.Enqueue(arktest.Response{Content: words(50), PerChunk: 100 * time.Millisecond})
	term.write("another story\r")
	term.wait("word")
	term.write("\x03")
	if out := term.wait("you>"); !strings.Contains(out, "Stopped.") {
		t.Errorf("after Ctrl-C:\n%q", out)
	}

	// A bracketed paste of three lines is one message.
	term.write("\x1b[200~line one\rline two\rline three\x1b[201~\r")
	term.wait("You said: line one")
	term.wait("you>")

	// An over-long line is refused and the chat goes on.
	term.write(strings.Repeat("x", 1<<20+1) + "\r")
	term.wait("over 1 MiB")
	term.write("still there?\r")
	term.wait("You said: still there?")
	term.wait("you>")

	// Ctrl-D on the empty prompt leaves, on a line of its own.
	term.write("\x04")
	select {
	case <-term.done:
		if term.code != 0 {
			t.Errorf("exit %d after Ctrl-D", term.code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ctrl-D did not end the chat")
	}
	if tail := term.wait("\x1b[?2004l"); !strings.HasSuffix(strings.TrimSuffix(tail, "\x1b[?2004l"), "\r\n") {
		t.Errorf("the shell prompt would land on the bot's line: %q", tail)
	}

	reqs := ark.Requests()
	if len(reqs) != 5 {
		t.Fatalf("want 5 Ark requests (the over-long line sends none), got %d", len(reqs))
	}
	msgs := reqs[3].Messages
	if q := msgs[len(msgs)-1].Text; q != "line one\nline two\nline three" {
		t.Errorf("the paste was sent as %q", q)
	}
	// The history kept what the stopped answers said, and only that.
	for _, m := range msgs {
		if m.Role == "assistant" && strings.Contains(m.Text, "word") && strings.Count(m.Text, "word") >= 50 {
			t.Errorf("a stopped answer ran to its end: %q", m.Text)
		}
	}
	if n := strings.Count(strings.Join(assistantTexts(msgs), ""), "word"); n == 0 {
		t.Errorf("the stopped answers were not kept: %+v", msgs)
	}
	logs, err := os.ReadFile(filepath.Clean(logPath))
	if err != nil {
		t.Fatalf("log file %q: %v", logPath, err)
	}
	if !strings.Contains(string(logs), "a log line during an answer") {
		t.Errorf("the log line is not in the log file:\n%s", logs)
	}
}

func assistantTexts(msgs []arktest.RequestMessage) []string {
	var s []string
	for _, m := range msgs {
		if m.Role == "assistant" {
			s = append(s, m.Text)
		}
	}
	return s
}

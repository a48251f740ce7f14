// Package console is a terminal chat with the bot, for trying it with no
// messenger (like Hubot's shell adapter).
//
// Interactive on a terminal: the terminal is put in raw mode, input is read
// all the time, answers stream and are then shown as rendered Markdown. While
// an answer streams, /stop or Ctrl-C ends it (keeping what it said); other
// lines typed wait their turn, sent in order when it ends (Ctrl-C drops
// them). Typing is not echoed until then. A paste is one message. Ctrl-C or Ctrl-D on an empty prompt, or /quit,
// leaves.
//
// Scriptable otherwise: each input line is one message of one conversation,
// output is plain text, and at end of input the last answer finishes before
// Run returns.
package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arkbot/arkbot/conversation"
)

// Console reads messages from in and writes answers to out.
type Console struct {
	h           conversation.Handler
	in          io.Reader
	out         io.Writer
	mu          sync.Mutex // serializes writes to out
	interactive bool
	thinking    bool
	size        func() (w, h int, err error) // of the terminal on out, if any: answers are then re-rendered as Markdown
	interrupts  <-chan os.Signal
	warnings    <-chan string
	user        string
	session     string
	n           int    // messages sent
	pictures    string // where /image saves pictures ("": the default)
}

// Option configures a Console.
type Option func(*Console)

// Interactive turns on the prompt, line editing and ANSI styling (for a
// terminal). When in is a terminal it is put in raw mode while Run runs.
func Interactive(on bool) Option { return func(c *Console) { c.interactive = on } }

// ShowThinking prints the model's reasoning before its answer.
func ShowThinking(on bool) Option { return func(c *Console) { c.thinking = on } }

// Interrupts delivers signals (SIGINT) that act as Ctrl-C: ending the
// answer in progress, else leaving.
func Interrupts(ch <-chan os.Signal) Option { return func(c *Console) { c.interrupts = ch } }

// Warnings delivers warnings to show, dimmed, between answers (in
// interactive mode, where logs do not go to the terminal).
func Warnings(ch <-chan string) Option { return func(c *Console) { c.warnings = ch } }

// User sets the name the bot knows you by; each user has a conversation of
// their own, even when several share one Redis.
func User(name string) Option { return func(c *Console) { c.user = name } }

// New returns a console chatting with h.
func New(h conversation.Handler, in io.Reader, out io.Writer, opts ...Option) *Console {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	c := &Console{h: h, in: in, out: out, user: "you", session: hex.EncodeToString(b)}
	for _, o := range opts {
		o(c)
	}
	return c
}

const (
	dim   = "\x1b[2m"
	bold  = "\x1b[1m"
	reset = "\x1b[0m"
)

const msgTooLong = "That message is over 1 MiB: not sent."

// Run chats until end of input, /quit, or ctx is done. It returns nil at
// the end of input, after the last answer finished.
func (c *Console) Run(ctx context.Context) error {
	if c.interactive {
		return c.runInteractive(ctx)
	}
	return c.runScripted(ctx)
}

// runScripted answers each input line in turn.
func (c *Console) runScripted(ctx context.Context) error {
	type line struct {
		text    string
		tooLong bool
	}
	lines := make(chan line)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		lr := newLineReader(c.in)
		for {
			text, tooLong, err := lr.next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
			select {
			case lines <- line{text, tooLong}:
			case <-ctx.Done():
				readErr <- nil
				return
			}
		}
	}()
	for {
		var l line
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case l, ok = <-lines:
		}
		if !ok {
			return <-readErr
		}
		if l.tooLong {
			c.printf("%s\n", msgTooLong)
			continue
		}
		text := strings.TrimSpace(l.text)
		if text == "" {
			continue
		}
		if text == "/quit" || text == "/exit" {
			return nil
		}
		c.printf("> %s\n", text)
		m := c.message(text)
		r := &reply{c: c}
		// The engine tells the user what went wrong and logs it; nothing to add.
		_ = c.h.Handle(ctx, m, r)
		r.end()
	}
}

// message is text as the next message of this user's conversation.
func (c *Console) message(text string) conversation.Message {
	c.n++
	return conversation.Message{
		Platform: conversation.PlatformConsole, Workspace: "local", Channel: c.user,
		ID:   c.session + "-" + strconv.Itoa(c.n),
		User: c.asker(),
		Text: text, Mentioned: true, Time: time.Now(),
	}
}

// asker is the person at the terminal, in every message and /stop.
func (c *Console) asker() conversation.User {
	return conversation.User{ID: c.user, Name: c.user, Admin: true, CanSwitchModel: true}
}

func (c *Console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.out, format, args...)
}

// Package console is a terminal chat with the bot, for trying it with no
// messenger (like Hubot's shell adapter).
//
// Interactive on a terminal: a prompt, tokens printed as they arrive, the
// model's reasoning dimmed. Scriptable otherwise: each input line is one
// message of one conversation, output is plain text, and at end of input the
// last answer finishes before Run returns.
package console

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/render"
)

// Console reads messages from in and writes answers to out.
type Console struct {
	h           conversation.Handler
	in          io.Reader
	out         io.Writer
	interactive bool
	thinking    bool
	user        string
	session     string
}

// Option configures a Console.
type Option func(*Console)

// Interactive turns on the prompt and ANSI styling (for a terminal).
func Interactive(on bool) Option { return func(c *Console) { c.interactive = on } }

// ShowThinking prints the model's reasoning before its answer.
func ShowThinking(on bool) Option { return func(c *Console) { c.thinking = on } }

// User sets the name the bot knows you by.
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

// Run chats until end of input, /quit, or ctx is done. It returns nil at
// the end of input, after the last answer finished.
func (c *Console) Run(ctx context.Context) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(c.in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()
	if c.interactive {
		fmt.Fprintf(c.out, "%sChatting with the bot. /help lists commands, /quit leaves.%s\n", dim, reset)
	}
	for n := 1; ; n++ {
		c.prompt()
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case line, ok = <-lines:
		}
		if !ok {
			if c.interactive {
				fmt.Fprintln(c.out)
			}
			return <-readErr
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if line == "/quit" || line == "/exit" {
			return nil
		}
		if !c.interactive {
			fmt.Fprintf(c.out, "> %s\n", line)
		}
		m := conversation.Message{
			Platform: conversation.PlatformConsole, Workspace: "local", Channel: "console",
			ID:   c.session + "-" + strconv.Itoa(n),
			User: conversation.User{ID: c.user, Name: c.user, Admin: true, CanSwitchModel: true},
			Text: line, Mentioned: true, Time: time.Now(),
		}
		r := &reply{c: c}
		// The engine tells the user what went wrong and logs it; nothing to add.
		_ = c.h.Handle(ctx, m, r)
		r.end()
	}
}

func (c *Console) prompt() {
	if c.interactive {
		fmt.Fprintf(c.out, "%s%s>%s ", bold, c.user, reset)
	}
}

// reply prints one answer as it streams.
type reply struct {
	c         *Console
	mu        sync.Mutex
	printed   int // bytes of Frame.Text printed
	reasoning int // bytes of Frame.Reasoning printed
	started   bool
	open      bool // a line is being printed
}

func (r *reply) Begin(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c.interactive {
		fmt.Fprintf(r.c.out, "%sthinking…%s\r", dim, reset)
	}
	return nil
}

func (r *reply) Render(_ context.Context, f conversation.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.c.out
	if r.c.thinking || r.c.interactive {
		if len(f.Reasoning) > r.reasoning {
			if r.reasoning == 0 {
				r.header(f.Model)
				fmt.Fprint(out, dim+"(thinking) ")
			} else if r.c.interactive {
				fmt.Fprint(out, dim)
			}
			fmt.Fprint(out, f.Reasoning[r.reasoning:])
			if r.c.interactive {
				fmt.Fprint(out, reset)
			}
			r.reasoning = len(f.Reasoning)
			r.open = true
		}
	}
	if len(f.Text) > r.printed {
		if r.printed == 0 {
			if r.reasoning > 0 {
				fmt.Fprint(out, reset+"\n")
			}
			r.header(f.Model)
		}
		fmt.Fprint(out, f.Text[r.printed:])
		r.printed = len(f.Text)
		r.open = true
	}
	if f.Final {
		// What the chat platforms show under the answer (render.Style.Tail),
		// or instead of it when there was none.
		end := style.Tail(f)
		if r.printed == 0 {
			end = strings.Join(render.Layout(style, f), "\n")
			if r.open && end != "" {
				end = "\n" + end
			}
		}
		if r.open || end != "" {
			fmt.Fprintln(out, end)
		}
		r.open = false
	}
	return nil
}

// style is how the console ends an answer: its note on a line of its own.
// A terminal has no message limit.
var style = render.Style{
	Limit:   math.MaxInt,
	NoteSep: "\n",
	Note:    func(_ conversation.Outcome, note string, _ bool) string { return "⚠ " + note },
}

// header names the model once, before the answer's first characters.
func (r *reply) header(model string) {
	if r.started {
		return
	}
	r.started = true
	if r.c.interactive {
		fmt.Fprintf(r.c.out, "\x1b[2K%s%s>%s ", bold, model, reset)
	} else {
		fmt.Fprintf(r.c.out, "%s: ", model)
	}
}

func (r *reply) Notice(_ context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c.interactive {
		fmt.Fprint(r.c.out, "\x1b[2K")
	}
	fmt.Fprintln(r.c.out, text)
	return nil
}

func (r *reply) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open {
		fmt.Fprintln(r.c.out)
	}
}

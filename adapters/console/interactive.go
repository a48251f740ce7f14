package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/mattn/go-runewidth"
	"golang.org/x/term"
)

// session is the state of an interactive Run, owned by its loop.
type session struct {
	c       *Console
	ctx     context.Context
	line    string // being typed
	tooLong bool   // the line went over MaxMessage
	queue   []string
	busy    *answer
	warned  []string // warnings to show when the answer ends
	eof     bool     // no more input
}

// answer is a message being answered.
type answer struct {
	key    string // the message's DedupeKey, for Engine.Stop
	cancel context.CancelFunc
	done   chan struct{}
}

// runInteractive chats on a terminal: a key reader feeds the loop, which
// echoes at the prompt, buffers what is typed during an answer, and starts
// answers in goroutines of their own.
func (c *Console) runInteractive(ctx context.Context) error {
	if f, ok := c.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.size = func() (int, int, error) { return term.GetSize(int(f.Fd())) }
	}
	if f, ok := c.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		st, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("console: raw mode: %w", err)
		}
		defer func() { _ = term.Restore(int(f.Fd()), st) }()
		c.out = crlf{c.out}
	}
	keys := make(chan key)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(keys)
		kr := newKeyReader(c.in)
		for {
			k, err := kr.next()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case keys <- k:
			case <-quit:
				return
			}
		}
	}()

	c.printf("%s%sChatting with the bot. /help lists commands; Ctrl-C stops an answer; /quit or Ctrl-D leaves.%s\n", pasteOn, dim, reset)
	defer c.printf("%s", pasteOff)
	s := &session{c: c, ctx: ctx}
	s.prompt()
	for {
		var done chan struct{}
		if s.busy != nil {
			done = s.busy.done
		}
		select {
		case <-ctx.Done():
			if s.busy != nil {
				<-s.busy.done // the answer ends with ctx
			} else {
				c.printf("\n")
			}
			return nil
		case text := <-c.warnings:
			if s.busy != nil {
				s.warned = append(s.warned, text)
			} else {
				s.c.printf("\r\x1b[2K")
				s.warn(text)
				s.prompt()
				s.c.printf("%s", s.line)
			}
		case <-c.interrupts:
			if s.interrupt() {
				return nil
			}
		case k, ok := <-keys:
			if !ok {
				keys, s.eof = nil, true
				if s.busy == nil {
					c.printf("\n")
					if err := <-readErr; !errors.Is(err, io.EOF) {
						return err
					}
					return nil
				}
				continue
			}
			if s.key(k) {
				return nil
			}
		case <-done:
			s.busy = nil
			if s.next() {
				return nil
			}
		}
	}
}

// key applies one key; it reports whether the chat is over.
func (s *session) key(k key) bool {
	c := s.c
	idle := s.busy == nil
	switch k.kind {
	case keyText, keyPaste:
		if s.tooLong || len(s.line)+len(k.text) > MaxMessage {
			s.tooLong = true
			return false
		}
		s.line += k.text
		if idle {
			c.printf("%s", k.text)
		}
	case keyBackspace:
		r, n := utf8.DecodeLastRuneInString(s.line)
		if n == 0 {
			return false
		}
		s.line = s.line[:len(s.line)-n]
		if w := runewidth.RuneWidth(r); idle && r != '\n' && w > 0 {
			c.printf("%s%s%s", strings.Repeat("\b", w), strings.Repeat(" ", w), strings.Repeat("\b", w))
		}
	case keyKill:
		s.line, s.tooLong = "", false
		if idle {
			c.printf("\r\x1b[J")
			s.prompt()
		}
	case keyInterrupt:
		return s.interrupt()
	case keyEOF:
		if idle && s.line == "" {
			c.printf("\n")
			return true
		}
	case keyEnter:
		text, tooLong := strings.TrimSpace(s.line), s.tooLong
		s.line, s.tooLong = "", false
		switch {
		case !idle && text == "/stop":
			s.stop()
		case !idle && tooLong:
			c.printf("%s%s%s\n", dim, msgTooLong, reset)
		case !idle:
			if text != "" {
				s.queue = append(s.queue, text)
			}
		case tooLong:
			c.printf("\n%s\n", msgTooLong)
			s.prompt()
		case text == "":
			c.printf("\n")
			s.prompt()
		default:
			c.printf("\n")
			return s.send(text)
		}
	}
	return false
}

// interrupt is Ctrl-C: it stops the answer and drops the lines waiting,
// else clears the line being typed, else ends the chat (reporting true).
func (s *session) interrupt() bool {
	switch {
	case s.busy != nil:
		s.queue, s.line, s.tooLong = nil, "", false
		s.stop()
	case s.line != "" || s.tooLong:
		s.line, s.tooLong = "", false
		s.c.printf("^C\n")
		s.prompt()
	default:
		s.c.printf("\n")
		return true
	}
	return false
}

// stop ends the answer in progress, keeping what it said; before the
// answer has started streaming, it cancels the message instead.
func (s *session) stop() {
	if !s.c.h.Stop(s.busy.key, s.c.asker()).Stopped {
		s.busy.cancel()
	}
}

// next sends the first line typed during the answer that just ended, or
// shows the prompt; it reports whether the chat is over.
func (s *session) next() bool {
	for _, text := range s.warned {
		s.warn(text)
	}
	s.warned = nil
	if len(s.queue) > 0 {
		text := s.queue[0]
		s.queue = s.queue[1:]
		s.prompt()
		s.c.printf("%s\n", text)
		return s.send(text)
	}
	if s.eof {
		return true
	}
	s.prompt()
	s.c.printf("%s", s.line)
	return false
}

// send starts answering text, or reports true for /quit.
func (s *session) send(text string) bool {
	if text == "/quit" || text == "/exit" {
		return true
	}
	c := s.c
	m := c.message(text)
	ctx, cancel := context.WithCancel(s.ctx)
	a := &answer{key: m.DedupeKey(), cancel: cancel, done: make(chan struct{})}
	s.busy = a
	go func() {
		defer close(a.done)
		defer cancel()
		r := &reply{c: c}
		// The engine tells the user what went wrong and logs it; nothing to add.
		_ = c.h.Handle(ctx, m, r)
		r.end()
	}()
	return false
}

// warn shows a warning on a line of its own.
func (s *session) warn(text string) {
	s.c.printf("%s⚠ %s%s\n", dim, text, reset)
}

func (s *session) prompt() {
	s.c.printf("%s%s>%s ", bold, s.c.user, reset)
}

// crlf writes "\r\n" for "\n", for a terminal in raw mode (no output
// processing).
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

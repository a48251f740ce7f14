package console

import (
	"bufio"
	"bytes"
	"io"
	"unicode/utf8"
)

// MaxMessage is the longest message the console sends, in bytes; a longer
// line or paste is refused and the chat goes on.
const MaxMessage = 1 << 20

// keyKind is what a key (or a paste) typed on a raw terminal asks for.
type keyKind int

const (
	keyText      keyKind = iota // printable text, in key.text
	keyPaste                    // a bracketed paste, in key.text (capped at MaxMessage+1 bytes)
	keyEnter                    // send the line
	keyBackspace                // erase the last character
	keyKill                     // Ctrl-U: erase the line
	keyInterrupt                // Ctrl-C
	keyEOF                      // Ctrl-D
)

type key struct {
	kind keyKind
	text string
}

const (
	pasteOn   = "\x1b[?2004h"
	pasteOff  = "\x1b[?2004l"
	pasteEnd  = "\x1b[201~"
	pasteOpen = "200~"
)

// keyReader decodes the bytes a terminal in raw mode sends: UTF-8 text,
// control keys, and bracketed pastes. Other escape sequences (arrows,
// function keys) are skipped.
type keyReader struct {
	r *bufio.Reader
}

func newKeyReader(r io.Reader) *keyReader { return &keyReader{r: bufio.NewReader(r)} }

// next returns the next key, or the read error (io.EOF at end of input).
func (k *keyReader) next() (key, error) {
	for {
		b, err := k.r.ReadByte()
		if err != nil {
			return key{}, err
		}
		switch b {
		case '\r', '\n':
			return key{kind: keyEnter}, nil
		case 0x7f, 0x08:
			return key{kind: keyBackspace}, nil
		case 0x15:
			return key{kind: keyKill}, nil
		case 0x03:
			return key{kind: keyInterrupt}, nil
		case 0x04:
			return key{kind: keyEOF}, nil
		case 0x1b:
			paste, err := k.escape()
			if err != nil {
				return key{}, err
			}
			if paste {
				text, err := k.paste()
				return key{kind: keyPaste, text: text}, err
			}
			continue
		}
		if b < 0x20 {
			continue // other control keys: ignored
		}
		if err := k.r.UnreadByte(); err != nil {
			return key{}, err
		}
		return key{kind: keyText, text: k.text()}, nil
	}
}

// text reads printable characters up to the next control byte.
func (k *keyReader) text() string {
	var b []byte
	for {
		c, err := k.r.ReadByte()
		if err != nil {
			break
		}
		if c < 0x20 || c == 0x7f {
			_ = k.r.UnreadByte()
			break
		}
		b = append(b, c)
		if k.r.Buffered() == 0 && utf8.FullRune(lastRuneStart(b)) {
			break
		}
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// lastRuneStart is b from the start of its last (maybe partial) rune.
func lastRuneStart(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return b[i:]
		}
	}
	return b
}

// escape reads an escape sequence after ESC and reports whether it opens a
// bracketed paste.
func (k *keyReader) escape() (bool, error) {
	b, err := k.r.ReadByte()
	if err != nil {
		return false, err
	}
	switch b {
	case '[':
	case 'O':
		_, err := k.r.ReadByte() // SS3: one more byte (F1-F4, keypad)
		return false, err
	default:
		return false, k.r.UnreadByte() // ESC pressed alone
	}
	var params []byte
	for {
		c, err := k.r.ReadByte()
		if err != nil {
			return false, err
		}
		if c >= 0x40 && c <= 0x7e {
			return string(append(params, c)) == pasteOpen, nil
		}
		if len(params) < 16 {
			params = append(params, c)
		}
	}
}

// paste reads a bracketed paste up to its end marker. Carriage returns
// become newlines; past MaxMessage+1 bytes the rest is read and dropped.
func (k *keyReader) paste() (string, error) {
	var b []byte
	for {
		c, err := k.r.ReadByte()
		if err != nil {
			return string(b), err
		}
		if c == 0x1b {
			if p, _ := k.r.Peek(len(pasteEnd) - 1); string(p) == pasteEnd[1:] {
				_, _ = k.r.Discard(len(p))
				return string(bytes.ToValidUTF8(b, []byte("\uFFFD"))), nil
			}
		}
		if c == '\r' {
			if p, _ := k.r.Peek(1); len(p) == 1 && p[0] == '\n' {
				continue // CRLF: the LF makes the newline
			}
			c = '\n'
		}
		if len(b) <= MaxMessage {
			b = append(b, c)
		}
	}
}

// lineReader reads input lines for scripted mode, refusing (rather than
// failing on) lines over MaxMessage bytes.
type lineReader struct {
	r *bufio.Reader
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: bufio.NewReaderSize(r, 64<<10)} }

// next returns the next line without its line ending, whether it was too
// long (then line is empty), and the read error (io.EOF after the last line).
func (l *lineReader) next() (line string, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > MaxMessage+2 { // room for "\r\n"
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && (len(buf) > 0 || tooLong):
			err = nil
		case err != nil:
			return "", false, err
		}
		if tooLong {
			return "", true, nil
		}
		line = string(bytes.TrimRight(buf, "\r\n"))
		if len(line) > MaxMessage {
			return "", true, nil
		}
		return line, false, nil
	}
}

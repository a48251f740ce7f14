package arkclient

import (
	"bufio"
	"bytes"
	"io"
)

// sseFilter passes only "data:" lines and blank lines of an SSE body.
//
// go-openai writes every other line (comments such as ": keep-alive",
// "event:" or "id:" fields) into an error accumulator that it never resets,
// so one such line before a `data: {"error":...}` event would garble Ark's
// error. Dropping them keeps the error's code and message intact.
type sseFilter struct {
	body      io.ReadCloser
	br        *bufio.Reader
	pend      []byte // part of the current line still to hand out
	lineStart bool
	drop      bool // dropping the current line
	err       error
}

func newSSEFilter(body io.ReadCloser) *sseFilter {
	return &sseFilter{body: body, br: bufio.NewReader(body), lineStart: true}
}

// Read implements io.Reader.
func (f *sseFilter) Read(p []byte) (int, error) {
	for len(f.pend) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		frag, err := f.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil // a long line: hand it out in pieces
		}
		f.err = err
		if len(frag) == 0 {
			continue
		}
		if f.lineStart {
			blank := len(bytes.TrimSpace(frag)) == 0
			f.drop = !blank && !bytes.HasPrefix(frag, []byte("data:"))
		}
		f.lineStart = frag[len(frag)-1] == '\n'
		if !f.drop {
			f.pend = frag // valid until the next ReadSlice, which waits until pend is drained
		}
	}
	n := copy(p, f.pend)
	f.pend = f.pend[n:]
	return n, nil
}

// Close implements io.Closer.
func (f *sseFilter) Close() error { return f.body.Close() }

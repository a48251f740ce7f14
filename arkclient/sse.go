package arkclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// sseData reads the data lines of a server-sent event stream: each
// "data:" line is one message, as Ark sends them; other lines (comments
// such as ": keep-alive", "event:", "id:") and blank lines are skipped.
//
// The client reads Ark's chunks with it instead of with go-openai's stream
// reader, which copies every line twice and runs two regular expressions on
// it, and which garbles an error event that follows a comment line (it
// accumulates such lines into the error). Receiving a token was mostly that.
type sseData struct {
	br   *bufio.Reader
	long []byte // a line longer than br's buffer, put together
}

// Bounds on what one call of next reads.
const (
	maxSSELine    = 4 << 20 // bytes in a line
	maxSSESkipped = 10000   // lines without data
)

// sseReaders pools the sseData buffers: every answer needs one for as long
// as it streams.
var sseReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

func newSSEData(body io.Reader) *sseData {
	br := sseReaders.Get().(*bufio.Reader)
	br.Reset(body)
	return &sseData{br: br}
}

// release returns d's buffer to the pool. d must not be used again.
func (d *sseData) release() {
	d.br.Reset(nil)
	sseReaders.Put(d.br)
	d.br, d.long = nil, nil
}

// next returns the payload of the next data line, trimmed of blanks. It is
// valid until the next call. A line cut off by the end of the stream is
// dropped, and the read error returned.
func (d *sseData) next() ([]byte, error) {
	for range maxSSESkipped {
		line, err := d.line()
		if err != nil {
			return nil, err
		}
		if data, ok := bytes.CutPrefix(bytes.TrimLeft(line, " \t"), []byte("data:")); ok {
			return bytes.TrimSpace(data), nil
		}
	}
	return nil, errors.New("no data line among the last 10000 lines of the stream")
}

// line returns the next whole line, its line ending included.
func (d *sseData) line() ([]byte, error) {
	line, err := d.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		d.long = append(d.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(d.long) <= maxSSELine {
			line, err = d.br.ReadSlice('\n')
			d.long = append(d.long, line...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("a line of the stream is longer than 4 MiB")
		}
		line = d.long
	}
	return line, err
}

package arkclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arkbot/arkbot/internal/transport"
	"github.com/arkbot/arkbot/metrics"
	openai "github.com/sashabaranov/go-openai"
	"github.com/valyala/fastjson"
)

// Stream is a streamed answer. Call Recv until it returns an error, then (or
// any time, from any goroutine, to stop early) Close.
type Stream struct {
	c      *Client
	parent context.Context
	cancel context.CancelFunc
	wd     *watchdog
	sent   bool             // the request went out (or was tried)
	status int              // the response's status, 0 before one
	header http.Header      // the response's headers, nil before one
	body   io.ReadCloser    // a success's body: Close closes it
	data   *sseData         // reads the body; nil once the stream ended
	parser *fastjson.Parser // decodes its chunks; nil once the stream ended
	events *eventDecoder    // decodes Responses API events; nil for chat completions

	pending  []Chunk // read by Client.Stream, not yet returned
	started  bool    // returned to the caller: later errors are Interrupted
	finished bool    // a finish_reason arrived
	err      error   // sticky final result: io.EOF or *Error
	closed   atomic.Bool
}

// Recv returns the next chunk. It returns io.EOF only after a complete
// answer: a finish_reason arrived, then the usage chunk (if any) and [DONE]
// or the end of the response. A connection that ends before any
// finish_reason gives *Error{Code: "StreamInterrupted"}; an error event
// inside the stream gives *Error with Ark's code; silence longer than the
// idle timeout gives *Error{Code: "Timeout"}; all with Interrupted set.
func (s *Stream) Recv() (Chunk, error) {
	if len(s.pending) > 0 {
		ch := s.pending[0]
		s.pending = s.pending[1:]
		return ch, nil
	}
	if s.err != nil {
		return Chunk{}, s.err
	}
	return s.read()
}

// Close stops the stream and releases its connection. It is safe to call
// more than once and concurrently with Recv, which then fails with Code
// "Canceled".
func (s *Stream) Close() error {
	s.closed.Store(true)
	s.wd.stop()
	s.cancel()
	if s.body != nil {
		return s.body.Close()
	}
	return nil
}

// read returns the next chunk with something in it, or the final result.
// Chunks with nothing in them do not reset the timeouts, so the loop is
// bounded in time by the watchdog.
func (s *Stream) read() (Chunk, error) {
	for {
		raw, err := s.data.next()
		if err != nil {
			return Chunk{}, s.fail(err)
		}
		if string(raw) == "[DONE]" {
			return Chunk{}, s.fail(io.EOF)
		}
		var ch Chunk
		var apiErr *openai.APIError
		if s.events != nil {
			ch, apiErr, err = s.events.decode(s.parser, raw)
		} else {
			ch, apiErr, err = decodeChunk(s.parser, raw)
		}
		if err != nil {
			return Chunk{}, s.fail(err)
		}
		if apiErr != nil {
			return Chunk{}, s.fail(apiErr)
		}
		if ch.empty() {
			continue
		}
		if ch.FinishReason != "" {
			s.finished = true
		}
		s.wd.reset(s.c.idle)
		return ch, nil
	}
}

// fail ends the stream: it releases the connection and turns err into the
// sticky final result, io.EOF or an *Error.
func (s *Stream) fail(err error) error {
	s.wd.stop()
	s.cancel()
	if s.body != nil {
		_ = s.body.Close()
	}
	s.err = s.classify(err)
	// Recv reads no more (s.err is sticky), and fail runs on its goroutine:
	// the reader's buffer and the parser can serve another answer.
	if s.data != nil {
		s.data.release()
		s.data = nil
	}
	if s.parser != nil {
		parsers.Put(s.parser)
		s.parser = nil
	}
	return s.err
}

// parsers pools the chunk parsers, whose caches grow to a chunk's size once
// instead of once per answer.
var parsers fastjson.ParserPool

func (s *Stream) classify(err error) error {
	sent, status, header := s.sent, s.status, s.header
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	switch {
	case errors.As(err, &apiErr):
		code := fmt.Sprint(apiErr.Code)
		if apiErr.Code == nil || code == "" {
			code = CodeStreamInterrupted
			if apiErr.HTTPStatusCode != 0 {
				code = fmt.Sprintf("HTTP%d", apiErr.HTTPStatusCode)
			}
		}
		param := ""
		if apiErr.Param != nil {
			param = *apiErr.Param
		}
		if s.events != nil && (apiErr.HTTPStatusCode == 0 || apiErr.HTTPStatusCode == 400 || apiErr.HTTPStatusCode == 404) &&
			code != CodeStreamInterrupted && chainLost(code, param, apiErr.Message) {
			code = CodeChainLost
		}
		return s.newError(apiErr.HTTPStatusCode, code, apiErr.Message, header, nil)
	case s.finished:
		// The answer is complete; a cut before [DONE] or the usage chunk
		// loses nothing the caller needs.
		return io.EOF
	case s.closed.Load() || s.parent.Err() != nil:
		cause := s.parent.Err()
		if cause == nil {
			cause = context.Canceled
		}
		return canceledError(cause, s.started)
	case s.wd.fired():
		if s.started {
			return s.newError(0, CodeTimeout, fmt.Sprintf("no data from Ark for %s", s.c.idle), header, err)
		}
		return s.newError(0, CodeTimeout, fmt.Sprintf("no answer from Ark within %s", s.c.first), header, err)
	case errors.As(err, &reqErr):
		return s.newError(reqErr.HTTPStatusCode, fmt.Sprintf("HTTP%d", reqErr.HTTPStatusCode),
			bodySnippet(reqErr.Body, reqErr.HTTPStatus), header, err)
	case s.body != nil:
		msg := "connection closed before the answer finished"
		if !errors.Is(err, io.EOF) {
			msg += ": " + err.Error()
		}
		return s.newError(0, CodeStreamInterrupted, msg, header, err)
	case sent:
		return s.networkError(err, status, header)
	default:
		return s.newError(0, CodeInvalidRequest, err.Error(), nil, err)
	}
}

// networkError classifies a request that got no usable response: no
// connection, an unverified TLS certificate, or another network failure.
func (s *Stream) networkError(err error, status int, header http.Header) *Error {
	var connErr *transport.ConnectError
	if errors.As(err, &connErr) {
		e := s.newError(0, CodeConnectFailed, err.Error(), nil, err)
		e.user = connectText(s.c.addr, connErr)
		return e
	}
	if cert := tlsCertificateError(err); cert != nil {
		e := s.newError(0, CodeTLSCertificate, err.Error(), nil, err)
		e.user = tlsText(s.c.addr, cert)
		return e
	}
	e := s.newError(0, CodeNetworkError, err.Error(), header, err)
	if status != 0 { // the error body could not be read
		e.Status = status
	}
	return e
}

// newError builds an *Error for this stream, redacts the API key and counts it.
func (s *Stream) newError(status int, code, message string, header http.Header, cause error) *Error {
	if k := s.c.apiKey; k != "" {
		message = strings.ReplaceAll(message, k, "[redacted]")
	}
	e := newError(status, code, message, header, cause)
	e.Interrupted = s.started
	metrics.ArkErrors.WithLabelValues(e.Code).Inc()
	return e
}

// canceledError reports a cancellation by the caller; it is not counted as
// an Ark error.
func canceledError(cause error, interrupted bool) *Error {
	return &Error{Code: CodeCanceled, Message: "request cancelled: " + cause.Error(), Interrupted: interrupted, cause: cause}
}

// bodySnippet is a short, printable start of a non-JSON error body.
func bodySnippet(body []byte, status string) string {
	const limit = 200
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	if s == "" {
		return status
	}
	return s
}

// watchdog cancels a stream when the time since the last reset exceeds the
// current limit.
type watchdog struct {
	cancel func()
	hit    atomic.Bool

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func newWatchdog(d time.Duration, cancel func()) *watchdog {
	w := &watchdog{cancel: cancel}
	w.reset(d)
	return w
}

func (w *watchdog) fire() {
	w.hit.Store(true)
	w.cancel()
}

// reset restarts the countdown with limit d (d <= 0: none), unless it
// already fired or was stopped.
func (w *watchdog) reset(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.hit.Load() {
		return
	}
	if w.t != nil && !w.t.Stop() {
		return // firing right now
	}
	switch {
	case d <= 0:
		w.t = nil
	case w.t != nil:
		w.t.Reset(d) // every chunk resets it: reuse the timer rather than allocate one
	default:
		w.t = time.AfterFunc(d, w.fire)
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
}

func (w *watchdog) fired() bool { return w.hit.Load() }

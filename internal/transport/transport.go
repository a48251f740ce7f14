// Package transport builds the HTTP transport of a client that keeps many
// requests in flight to one host: the bot's Ark client and its Slack and
// Discord adapters.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Option configures New.
type Option func(*options)

type options struct {
	connect time.Duration
	dial    DialFunc
}

// WithConnectTimeout bounds each connection attempt (name lookup and TCP
// connect, not the TLS handshake) to d. Without it, or with d <= 0,
// http.DefaultTransport's dialer bounds it (30 s).
func WithConnectTimeout(d time.Duration) Option { return func(o *options) { o.connect = d } }

// WithDialContext replaces the dialer (http.DefaultTransport's by default);
// the connect timeout still applies to it.
func WithDialContext(dial DialFunc) Option { return func(o *options) { o.dial = dial } }

// New returns a transport with http.DefaultTransport's settings (proxy from
// the environment, timeouts, HTTP/2) that keeps up to perHost idle
// connections to a host instead of Go's default 2. With hundreds of answers
// streaming at once, the default makes nearly every request beyond the
// second dial a new connection (and, over TLS, handshake), which a load test
// of the bot measured as its largest avoidable CPU cost after decoding.
// A connection that cannot be opened fails with a *ConnectError.
func New(perHost int, opts ...Option) *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.MaxIdleConns = 0 // DefaultTransport's 100 is for all hosts together; perHost bounds this
	t.MaxIdleConnsPerHost = max(perHost, 2)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dial := o.dial
	if dial == nil {
		dial = t.DialContext
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.DialContext = connectDialer(dial, o.connect)
	return t
}

// connectDialer bounds dial by timeout (if > 0) and reports its failures
// as *ConnectError.
func connectDialer(dial DialFunc, timeout time.Duration) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dctx := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			dctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		conn, err := dial(dctx, network, addr)
		if err != nil {
			e := &ConnectError{Addr: addr, Err: err}
			if ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
				e.Limit = timeout
			}
			return nil, e
		}
		return conn, nil
	}
}

// ConnectError is a connection that could not be opened: the address did
// not answer in time, refused, or its name did not resolve.
type ConnectError struct {
	Addr  string        // host:port dialled (a proxy's, when one is used)
	Limit time.Duration // the connect timeout, when it is what ended the attempt; else 0
	Err   error         // the dialer's error
}

func (e *ConnectError) Error() string {
	if e.Limit > 0 {
		return fmt.Sprintf("connect to %s: no connection within %s", e.Addr, e.Limit)
	}
	return fmt.Sprintf("connect to %s: %v", e.Addr, e.Err)
}

// Unwrap returns the dialer's error.
func (e *ConnectError) Unwrap() error { return e.Err }

// Timeout reports whether the attempt ended by a timeout (the connect
// timeout's or the dialer's own), as net.Error's method does: url.Error's
// Timeout relies on it.
func (e *ConnectError) Timeout() bool {
	var ne net.Error
	return e.Limit > 0 || errors.As(e.Err, &ne) && ne.Timeout()
}

// Package arrival tells an HTTP handler when its request reached the
// server's socket: the kernel's receive timestamp where the system gives one
// (Linux), else the moment the handler asks. The fakes of the load test
// share two cores with the bot; stamping calls by arrival keeps their own
// wait for a CPU out of the latencies they measure of the bot.
package arrival

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listen listens for TCP connections on addr whose reads are stamped with
// the time the kernel received their bytes. Serve it with ConnContext.
func Listen(addr string) (net.Listener, error) {
	Stamped() // switches the kernel's stamping on for good, where there is any
	return listen(addr)
}

func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: stampControl}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return wrap(l), nil
}

// ConnContext is an http.Server's ConnContext: it lets Time find the
// request's connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

type connKey struct{}

// stamper is a connection that knows when its last read's bytes arrived.
type stamper interface{ arrived() (time.Time, bool) }

// Time is when r arrived: the receive timestamp of the last bytes read from
// its connection (the server has read the request's head by the time the
// handler runs, and a client sends its next request only after the
// response), or now when there is none.
func Time(r *http.Request) time.Time {
	if c, ok := r.Context().Value(connKey{}).(stamper); ok {
		if t, ok := c.arrived(); ok {
			return t
		}
	}
	return time.Now()
}

// Stamped reports whether this system stamps reads of connections from
// Listen. Where it does not (systems other than Linux, and sandboxed
// kernels that take SO_TIMESTAMPNS but stamp no TCP reads), Time is the
// moment of asking.
//
// Linux turns its receive stamping on for the first socket that asks
// through a deferred work item, and off again when the last one closes, so
// bytes arriving at a new listener may go unstamped. The first call
// therefore opens a stamping listener that stays open for the life of the
// process, holding the switch on, and sends bytes to it until one is
// stamped, for up to half a second. Listen calls it, so a listener it
// returns is stamped from its first byte where the system stamps at all.
var Stamped = sync.OnceValue(func() bool {
	l, err := listen("127.0.0.1:0")
	if err != nil {
		return false
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if stampedRead(l) {
			return true // l stays open: it holds the kernel's stamping on
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.Close()
	return false
})

// stampedRead sends one byte over a new connection to l and reports whether
// its read was stamped.
func stampedRead(l net.Listener) bool {
	d, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
	if err != nil {
		return false
	}
	defer d.Close()
	if _, err := d.Write([]byte{0}); err != nil {
		return false
	}
	c, err := l.Accept()
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return false
	}
	s, ok := c.(stamper)
	if !ok {
		return false
	}
	_, ok = s.arrived()
	return ok
}

package arrival

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampControl turns on SO_TIMESTAMPNS for the listening socket; the
// connections it accepts inherit it, so even a request sent before the
// server accepted its connection is stamped.
func stampControl(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

// wrap reads every connection l accepts with recvmsg, for its stamps.
func wrap(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil // no stamps: Time falls back to now
	}
	// Linux copies the option to accepted sockets; a kernel that does not
	// gets it here, for the bytes read from now on.
	_ = stampControl("", "", raw) // on failure Time falls back to now
	return &conn{TCPConn: tc, raw: raw}, nil
}

// conn reads with recvmsg to receive each read's timestamp. The HTTP
// server reads a connection from one goroutine at a time, so oob needs no
// lock; stamp is read by handlers.
type conn struct {
	*net.TCPConn
	raw   syscall.RawConn
	oob   [64]byte
	stamp atomic.Int64 // unix nanoseconds of the last read's bytes; 0: none
}

func (c *conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n, oobn int
	var err error
	rerr := c.raw.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, err = unix.Recvmsg(int(fd), b, c.oob[:], 0)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
	if rerr == nil && err != nil {
		rerr = os.NewSyscallError("recvmsg", err)
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	}
	if n == 0 {
		return 0, io.EOF
	}
	c.stamp.Store(timestamp(c.oob[:oobn]))
	return n, nil
}

// timestamp finds SCM_TIMESTAMPNS in a read's control messages.
func timestamp(oob []byte) int64 {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		var ts unix.Timespec
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(ts)) {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), m.Data) // m.Data may be unaligned
			return ts.Nano()
		}
	}
	return 0
}

func (c *conn) arrived() (time.Time, bool) {
	ns := c.stamp.Load()
	return time.Unix(0, ns), ns != 0
}

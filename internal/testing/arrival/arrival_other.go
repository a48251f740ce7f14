//go:build !linux

package arrival

import (
	"net"
	"syscall"
)

// wrap leaves l as it is: without kernel receive timestamps, Time is the
// moment the handler asks.
func wrap(l net.Listener) net.Listener { return l }

// stampControl does nothing where Time does not read kernel stamps.
func stampControl(_, _ string, _ syscall.RawConn) error { return nil }

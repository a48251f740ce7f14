package conversation

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// panicError is a recovered panic.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// protect calls f, returning a panic in it as a *panicError.
func protect(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = asPanic(v)
		}
	}()
	return f()
}

// asPanic is the *panicError of a recovered value (which may be one).
func asPanic(v any) *panicError {
	if p, ok := v.(*panicError); ok {
		return p
	}
	return &panicError{value: v, stack: debug.Stack()}
}

// logPanic logs a recovered value with its stack and returns it as an error.
func logPanic(log *slog.Logger, v any) error {
	p := asPanic(v)
	log.Error("panic recovered", "panic", fmt.Sprint(p.value), "stack", string(p.stack))
	return p
}

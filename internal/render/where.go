package render

import "sync/atomic"

// Where holds where an answer's messages are, in a platform's own notation,
// for conversation.Located: an adapter's Reply embeds it and sets it as it
// posts. It is safe for concurrent use.
type Where struct{ p atomic.Pointer[string] }

// Set records loc, unless it is already what is recorded.
func (w *Where) Set(loc string) {
	if old := w.p.Load(); old == nil || *old != loc {
		w.p.Store(&loc)
	}
}

// Location implements conversation.Located.
func (w *Where) Location() (string, bool) {
	if p := w.p.Load(); p != nil {
		return *p, true
	}
	return "", false
}

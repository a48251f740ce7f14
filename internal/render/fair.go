package render

import "sync"

// Fair shares a scarce budget's intermediate renders among the answers in
// flight in one group (a Slack workspace, a Discord channel), round robin:
// an answer may take its next intermediate render only while no other
// answer of its group that is waiting for one has had fewer. So every
// answer's first text comes before anyone's later edits, and no answer
// gets its third render while another waits for its first. Final renders
// are not gated. The zero value is ready to use.
type Fair struct {
	mu     sync.Mutex
	groups map[string]map[*Ticket]struct{}
}

// Ticket is one answer's place in its group.
type Ticket struct {
	f       *Fair
	group   string
	renders int  // intermediate renders shown
	waiting bool // asked for a render and has not had it
}

// Join enters an answer in group. Leave must follow when it finishes.
func (f *Fair) Join(group string) *Ticket {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups == nil {
		f.groups = map[string]map[*Ticket]struct{}{}
	}
	g := f.groups[group]
	if g == nil {
		g = map[*Ticket]struct{}{}
		f.groups[group] = g
	}
	t := &Ticket{f: f, group: group}
	g[t] = struct{}{}
	return t
}

// Leave takes the answer out of its group. It is safe to call twice, and
// on a nil Ticket.
func (t *Ticket) Leave() {
	if t == nil {
		return
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	g := t.f.groups[t.group]
	delete(g, t)
	if len(g) == 0 {
		delete(t.f.groups, t.group)
	}
}

// Turn reports whether the answer may make its next intermediate render
// now, and marks it as waiting for one until Rendered. A nil Ticket
// always may.
func (t *Ticket) Turn() bool {
	if t == nil {
		return true
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.waiting = true
	for o := range t.f.groups[t.group] {
		if o != t && o.waiting && o.renders < t.renders {
			return false
		}
	}
	return true
}

// Alone reports whether the answer is the only one in its group. A nil
// Ticket is.
func (t *Ticket) Alone() bool {
	if t == nil {
		return true
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return len(t.f.groups[t.group]) <= 1
}

// Rendered records an intermediate render shown.
func (t *Ticket) Rendered() {
	if t == nil {
		return
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.renders++
	t.waiting = false
}

// Renders is how many intermediate renders the answer has shown.
func (t *Ticket) Renders() int {
	if t == nil {
		return 0
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.renders
}

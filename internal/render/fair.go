package render

import "sync"

// Fair shares a scarce budget's intermediate renders among the answers in
// flight in one group (a Slack workspace, a Discord channel), round robin:
// an answer may take its next intermediate render only while no other
// answer of its group that is waiting for one has had fewer. An answer
// waits from a render refused (Turn) or skipped for want of budget
// (Missed) until one is shown (Rendered). So every answer's first text
// comes before anyone's later edits, and no answer gets its third render
// while another waits for its first. Final renders are not gated. The zero
// value is ready to use; each call costs time in the number of distinct
// render counts among the group's waiting answers, not in its size.
type Fair struct {
	mu     sync.Mutex
	groups map[string]*fairGroup
}

type fairGroup struct {
	members int
	waiting map[int]int // renders shown → answers waiting with that many
}

// Ticket is one answer's place in its group.
type Ticket struct {
	f       *Fair
	group   string
	renders int  // intermediate renders shown
	waiting bool // refused or skipped a render and has not shown one since
	left    bool
}

// Join enters an answer in group. Leave must follow when it finishes.
func (f *Fair) Join(group string) *Ticket {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups == nil {
		f.groups = map[string]*fairGroup{}
	}
	g := f.groups[group]
	if g == nil {
		g = &fairGroup{waiting: map[int]int{}}
		f.groups[group] = g
	}
	g.members++
	return &Ticket{f: f, group: group}
}

// Leave takes the answer out of its group. It is safe to call twice, and
// on a nil Ticket.
func (t *Ticket) Leave() {
	if t == nil {
		return
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.left {
		return
	}
	t.left = true
	t.setWaiting(false)
	g := t.f.groups[t.group]
	if g.members--; g.members == 0 {
		delete(t.f.groups, t.group)
	}
}

// setWaiting marks the ticket waiting or not; t.f.mu is held.
func (t *Ticket) setWaiting(w bool) {
	if t.waiting == w || t.left && w {
		return
	}
	t.waiting = w
	g := t.f.groups[t.group]
	if w {
		g.waiting[t.renders]++
		return
	}
	if g.waiting[t.renders]--; g.waiting[t.renders] <= 0 {
		delete(g.waiting, t.renders)
	}
}

// Turn reports whether the answer may make its next intermediate render
// now; when it may not, the answer waits. A nil Ticket always may.
func (t *Ticket) Turn() bool {
	if t == nil {
		return true
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.left {
		return true
	}
	for renders := range t.f.groups[t.group].waiting {
		if renders < t.renders {
			t.setWaiting(true)
			return false
		}
	}
	return true
}

// Missed records a render skipped for want of budget: the answer waits.
func (t *Ticket) Missed() {
	if t == nil {
		return
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.setWaiting(true)
}

// Rendered records an intermediate render shown.
func (t *Ticket) Rendered() {
	if t == nil {
		return
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.setWaiting(false)
	t.renders++
}

// Others is how many other answers are in flight in the group (none for
// a nil Ticket).
func (t *Ticket) Others() int {
	if t == nil {
		return 0
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if g := t.f.groups[t.group]; g != nil && !t.left {
		return max(g.members-1, 0)
	}
	return 0
}

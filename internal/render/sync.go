package render

import (
	"context"
	"errors"
	"time"

	"github.com/arkbot/arkbot/internal/ratelimit"
)

// Priority says what a call does when the platform's rate budget is
// spent: ratelimit.BestEffort skips it (failing with ErrSkipped), for an
// intermediate frame whose text the next frame carries anyway;
// ratelimit.MustDeliver waits, for a first post or a final frame.
type Priority = ratelimit.Priority

// Priorities, as the ratelimit package has them.
const (
	BestEffort  = ratelimit.BestEffort
	MustDeliver = ratelimit.MustDeliver
)

// Errors a Surface reports (wrapped or joined with the platform's error).
var (
	// ErrSkipped reports a best-effort call skipped for want of budget.
	ErrSkipped = ratelimit.ErrSkipped
	// ErrGone reports that the message to edit or delete no longer exists.
	ErrGone = errors.New("render: message deleted")
)

// Piece is a message as wanted: its content and its button, a value the
// platform renders ("" for none).
type Piece struct {
	Content string
	Button  string
}

// Surface posts, edits and deletes the messages of one answer on a platform.
type Surface interface {
	// Post creates a message after the answer's message prev ("" for the
	// first) and returns its ID.
	Post(ctx context.Context, p Priority, prev string, m Piece) (id string, err error)
	Edit(ctx context.Context, p Priority, id string, m Piece) error
	Delete(ctx context.Context, p Priority, id string) error
}

// Message is one message of an answer as shown.
type Message struct {
	ID string
	Piece
	Gone bool      // deleted by someone else
	At   time.Time // when it was last posted or edited
}

// Want is what an answer should show.
type Want struct {
	Pieces []string // the messages' contents, as Layout returns them
	// Button goes on the last message: Stop while the answer streams,
	// Retry on a finished one, as the platform has them.
	Button string
	// Live marks an answer in progress: new text is posted first, then the
	// live message edited, then earlier ones; nothing is deleted, and a
	// message deleted by someone else stays away. Otherwise pieces are
	// edited in order, new ones posted, surplus messages deleted, and a
	// message deleted by someone else is posted again.
	Live     bool
	Priority Priority
}

// Messages is what an answer shows, kept in step with its frames by Sync.
type Messages struct {
	List []Message
	// MinEdit is the least time between two edits of one message: a live
	// sync skips an edit sooner, a final one waits.
	MinEdit time.Duration
	// Fair, if set, gates a live best-effort sync: it makes its calls only
	// on the answer's turn (see Fair), and counts as a render when it does.
	Fair *Ticket
}

type opKind int

const (
	opPost opKind = iota
	opEdit
	opDelete
)

type op struct {
	kind opKind
	i    int
}

// plan orders the calls that bring have messages to want pieces.
func plan(have, want int, live bool) []op {
	var ops []op
	if live {
		for i := have; i < want; i++ {
			ops = append(ops, op{opPost, i})
		}
		if last := want - 1; last >= 0 && last < have {
			ops = append(ops, op{opEdit, last})
		}
		for i := 0; i < min(have, want-1); i++ {
			ops = append(ops, op{opEdit, i})
		}
		return ops
	}
	for i := 0; i < min(have, want); i++ {
		ops = append(ops, op{opEdit, i})
	}
	for i := have; i < want; i++ {
		ops = append(ops, op{opPost, i})
	}
	for i := have - 1; i >= want; i-- {
		ops = append(ops, op{opDelete, i})
	}
	return ops
}

// Sync posts, edits and deletes messages through s until they show w.
// Unchanged messages are left alone. A skipped call (ErrSkipped) ends a
// live sync without error: a later frame catches up; it ends a final sync
// with ErrSkipped, for the caller to show the answer another way. A
// best-effort call that fails ends it with the error. A must-deliver sync
// goes on past failed edits and deletes, but stops at a failed post (later
// pieces would land out of order); it returns every failure.
func (m *Messages) Sync(ctx context.Context, s Surface, w Want) error {
	var errs []error
	gated := w.Live && w.Priority == BestEffort && m.Fair != nil
	shown := false
	defer func() {
		if gated && shown {
			m.Fair.Rendered()
		}
	}()
	for _, o := range plan(len(m.List), len(w.Pieces), w.Live) {
		if o.kind == opDelete && len(m.List) != o.i+1 {
			break // a delete before it failed
		}
		calls := m.calls(o, w)
		if gated && calls && !shown && !m.Fair.Turn() {
			return nil
		}
		err := m.apply(ctx, s, o, w)
		switch {
		case err == nil:
			shown = shown || calls
		case errors.Is(err, ErrSkipped):
			if !w.Live {
				return errors.Join(append(errs, err)...)
			}
			if gated && !shown {
				m.Fair.Missed()
			}
			return errors.Join(errs...)
		case w.Priority == BestEffort:
			return errors.Join(append(errs, err)...)
		default:
			errs = append(errs, err)
			if o.kind == opPost {
				return errors.Join(errs...)
			}
		}
	}
	return errors.Join(errs...)
}

// calls reports whether apply would call the platform for o.
func (m *Messages) calls(o op, w Want) bool {
	if o.kind != opEdit {
		return true
	}
	msg := m.List[o.i]
	if msg.Gone {
		return !w.Live
	}
	want := Piece{Content: w.Pieces[o.i]}
	if o.i == len(w.Pieces)-1 {
		want.Button = w.Button
	}
	return msg.Piece != want && (!w.Live || time.Since(msg.At) >= m.MinEdit)
}

// apply makes one call of the plan.
func (m *Messages) apply(ctx context.Context, s Surface, o op, w Want) error {
	var want Piece
	if o.kind != opDelete {
		want = Piece{Content: w.Pieces[o.i]}
		if o.i == len(w.Pieces)-1 {
			want.Button = w.Button
		}
	}
	switch o.kind {
	case opPost:
		prev := ""
		if o.i > 0 {
			prev = m.List[o.i-1].ID
		}
		id, err := s.Post(ctx, w.Priority, prev, want)
		if err != nil {
			return err
		}
		m.List = append(m.List, Message{ID: id, Piece: want, At: time.Now()})
	case opEdit:
		msg := &m.List[o.i]
		if msg.Gone && !w.Live {
			return m.repost(ctx, s, o.i, w.Priority, want)
		}
		if msg.Gone || msg.Piece == want {
			return nil
		}
		if wait := time.Until(msg.At.Add(m.MinEdit)); wait > 0 {
			if w.Live {
				return nil // a later frame catches up
			}
			if err := ratelimit.Sleep(ctx, wait); err != nil {
				return err
			}
		}
		err := s.Edit(ctx, w.Priority, msg.ID, want)
		if errors.Is(err, ErrGone) {
			msg.Gone = true
			if !w.Live {
				return m.repost(ctx, s, o.i, w.Priority, want)
			}
		}
		if err != nil {
			return err
		}
		msg.Piece, msg.At = want, time.Now()
	case opDelete:
		if err := s.Delete(ctx, w.Priority, m.List[o.i].ID); err != nil && !errors.Is(err, ErrGone) {
			return err
		}
		m.List = m.List[:o.i]
	}
	return nil
}

// repost posts again message i, which someone deleted.
func (m *Messages) repost(ctx context.Context, s Surface, i int, p Priority, want Piece) error {
	prev := ""
	if i > 0 {
		prev = m.List[i-1].ID
	}
	id, err := s.Post(ctx, p, prev, want)
	if err != nil {
		return err
	}
	m.List[i] = Message{ID: id, Piece: want, At: time.Now()}
	return nil
}

package conversation

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/metrics"
)

// CmdFeedback shows admins the 👍/👎 tally per model.
const CmdFeedback = "feedback"

// Vote is one person's 👍 or 👎 on one answer.
type Vote struct {
	Platform  string
	Workspace string
	// Answer is the platform's ID of the answer's message ("channel:ts" on
	// Slack, "channel:message" on Discord): one vote per user per answer.
	Answer string
	Thread string // the conversation's ThreadKey, for the record
	User   string // the voter's platform user ID
	Model  string // the registered model that wrote the answer
	Up     bool
}

// Name is the vote's label: "up" or "down".
func (v Vote) Name() string {
	if v.Up {
		return "up"
	}
	return "down"
}

// FeedbackRecorder records votes on answers. *Engine implements it;
// adapters find it on their Handler with a type assertion and offer
// feedback buttons only when it is there.
type FeedbackRecorder interface {
	// Feedback records v, replacing the user's earlier vote on the answer.
	// It reports changed=false, counting nothing, when v repeats the vote
	// already recorded (a redelivered or double click).
	Feedback(ctx context.Context, v Vote) (changed bool, err error)
}

// Deduper makes a side effect happen once across redeliveries and
// replicas. *Engine implements it, on the store's shared Redis.
type Deduper interface {
	// FirstTime reports whether key is new within ttl, marking it seen.
	FirstTime(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// feedbackTTL is how long a user's vote on one answer is remembered (and
// so can be changed without counting twice).
const feedbackTTL = 90 * 24 * time.Hour

// Feedback implements FeedbackRecorder, counting a recorded vote in
// arkbot_feedback_total.
func (e *Engine) Feedback(ctx context.Context, v Vote) (bool, error) {
	changed, err := e.store.Vote(ctx, v)
	if err != nil {
		metrics.RedisErrors.WithLabelValues("feedback").Inc()
		return false, err
	}
	if changed {
		metrics.Feedback.WithLabelValues(v.Platform, v.Model, v.Name()).Inc()
	}
	return changed, nil
}

// FirstTime implements Deduper.
func (e *Engine) FirstTime(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return e.store.FirstTime(ctx, key, ttl)
}

// voteLua records a vote: KEYS[1] the answer's votes (user → vote, and
// the model and thread), KEYS[2] the tally ("model|vote" → count); ARGV:
// user, vote, model, TTL in ms, thread. A changed vote moves its count
// from the old vote to the new one. It returns 0 when the vote was
// already recorded, else 1.
var voteLua = redis.NewScript(`
local old = redis.call("HGET", KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2], "model", ARGV[3], "thread", ARGV[5])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
redis.call("HINCRBY", KEYS[2], ARGV[3] .. "|" .. ARGV[2], 1)
if old then redis.call("HINCRBY", KEYS[2], ARGV[3] .. "|" .. old, -1) end
return 1
`)

// feedbackTag is the hash tag every feedback key shares: a vote and the
// tally change in one script, in one Cluster slot.
const feedbackTag = "feedback"

func (s *Store) votesKey(v Vote) string {
	return s.key("feedback", feedbackTag, "answer:"+v.Platform+":"+v.Workspace+":"+v.Answer)
}

func (s *Store) tallyKey() string { return s.key("feedback", feedbackTag, "tally") }

// Vote records v (see FeedbackRecorder.Feedback) in one round trip.
func (s *Store) Vote(ctx context.Context, v Vote) (bool, error) {
	user := "u:" + v.Platform + ":" + v.User // apart from the "model" and "thread" fields
	n, err := voteLua.Run(ctx, s.rdb, []string{s.votesKey(v), s.tallyKey()}, user, v.Name(), v.Model, feedbackTTL.Milliseconds(), v.Thread).Int()
	if err != nil {
		return false, fmt.Errorf("feedback: %w", err)
	}
	return n == 1, nil
}

// Tally is the votes on one model's answers.
type Tally struct {
	Model    string
	Up, Down int64
}

// Tallies returns the votes per model, most voted first.
func (s *Store) Tallies(ctx context.Context) ([]Tally, error) {
	all, err := s.rdb.HGetAll(ctx, s.tallyKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("feedback tally: %w", err)
	}
	by := map[string]*Tally{}
	for field, val := range all {
		i := strings.LastIndexByte(field, '|')
		if i < 0 {
			continue
		}
		n, _ := strconv.ParseInt(val, 10, 64)
		model := field[:i]
		t := by[model]
		if t == nil {
			t = &Tally{Model: model}
			by[model] = t
		}
		switch field[i+1:] {
		case "up":
			t.Up += n
		case "down":
			t.Down += n
		}
	}
	out := make([]Tally, 0, len(by))
	for _, t := range by {
		if t.Up > 0 || t.Down > 0 {
			out = append(out, *t)
		}
	}
	slices.SortFunc(out, func(a, b Tally) int {
		return cmp.Or(cmp.Compare(b.Up+b.Down, a.Up+a.Down), strings.Compare(a.Model, b.Model))
	})
	return out, nil
}

// FirstTime reports whether key was not marked within ttl, and marks it.
func (s *Store) FirstTime(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.key("once", key, ""), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("once: %w", err)
	}
	return ok, nil
}

// feedbackReport is /feedback's answer: the tally per model, for admins.
func (e *Engine) feedbackReport(ctx context.Context, m Message) (string, error) {
	if !m.User.Admin {
		return "Only the bot's admins can see the feedback tally.", nil
	}
	tallies, err := e.store.Tallies(ctx)
	if err != nil {
		return "", err
	}
	if len(tallies) == 0 {
		return "No feedback yet: nobody has pressed 👍 or 👎 under an answer.", nil
	}
	var b strings.Builder
	b.WriteString("**Feedback per model** (one vote per person per answer, latest counts):\n")
	for _, t := range tallies {
		fmt.Fprintf(&b, "• **%s**: 👍 %d · 👎 %d (%d%% positive)\n", t.Model, t.Up, t.Down, 100*t.Up/max(t.Up+t.Down, 1))
	}
	return strings.TrimRight(b.String(), "\n"), nil
}

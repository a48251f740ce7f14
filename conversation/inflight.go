package conversation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Answers in flight.
//
// When an answer takes its thread's lock (Admit, LockAnswer), the same
// script writes the answer's flight record next to the lock:
// thread:{K}:flight, a hash with the conversation, the asker, the question
// and this replica ("rec"), the Unix second it began ("start"), and, from
// the lock renewals on, where its message is ("loc") and what it showed
// ("shown"). The index inflight, a sorted set of thread keys by lock
// deadline, is updated in the same round trips. A flight ends with its
// lock: Release deletes it; after a save it stays inert (its thread ends
// with an answer saved since it began) until a sweep drops it.
//
// A replica that dies stops renewing: its locks expire, and the sweep of
// any replica (ClaimOrphans) finds the flights whose deadline passed and
// whose lock is gone, claims each in one script that deletes it (so
// exactly one replica gets it), and hands it to its platform's
// OrphanFinisher.

// OrphanNote is the final note of an answer whose replica died.
const OrphanNote = "I was restarted before I could finish. Press Retry or ask again."

// maxShown bounds the text a flight record keeps of what its answer showed.
const maxShown = 16 << 10

// Located is implemented by a Reply that knows where its answer's message
// is: an opaque location its adapter's OrphanFinisher turns back into an
// edit, ok false until a message exists. It is called from the lock
// renewals, concurrently with the Reply's methods.
type Located interface {
	Location() (loc string, ok bool)
}

// Orphan is an answer whose replica died before finishing it.
type Orphan struct {
	Platform  string `json:"platform"`
	Workspace string `json:"workspace,omitempty"`
	Channel   string `json:"channel"`
	Thread    string `json:"thread,omitempty"`
	Asker     string `json:"asker"`              // the asker's user ID
	Question  string `json:"question,omitempty"` // the question's message ID, for Retry
	Replica   string `json:"replica"`            // the replica that ran it
	Location  string `json:"-"`                  // from the Reply's Located, "" if never known
	Shown     string `json:"-"`                  // the answer's text as last rendered, perhaps cut
}

// OrphanFinisher ends an orphaned answer in the chat: its message (or, with
// no location, a new one in its conversation) shows what was shown, the
// note that the bot was restarted, and a Retry button.
type OrphanFinisher interface {
	FinishOrphan(ctx context.Context, o Orphan) error
}

func (s *Store) flightKey(thread string) string  { return s.key("thread", thread, "flight") }
func (s *Store) talkingKey(thread string) string { return s.key("thread", thread, "talking") }
func (s *Store) indexKey() string                { return s.opt.Prefix + ":inflight" }

// newReplicaID names this process in flight records.
func newReplicaID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// track makes the store record flights of answers on platform, for which
// some replica can finish orphans.
func (s *Store) track(platform string) { s.tracked.Store(platform, true) }

func (s *Store) tracking(platform string) bool {
	_, ok := s.tracked.Load(platform)
	return ok
}

// flightRecord is a flight record's "rec": the orphan it would be, and
// the question as orphanLua saves it (a retry's is saved already).
type flightRecord struct {
	Orphan
	Text  string `json:"text,omitempty"`
	Name  string `json:"name,omitempty"`
	Retry bool   `json:"retry,omitempty"`
}

// noFlight are flightArgs that record no flight.
var noFlight = []any{"", 0, 0, 0}

// flightArgs are the lock scripts' flight arguments for an answer to m
// begun at now: its record and start, the record's TTL (the thread's) and
// the turns a thread keeps; a record "" writes none.
func (s *Store) flightArgs(m Message, now time.Time) []any {
	if !s.tracking(m.Platform) {
		return noFlight
	}
	r := flightRecord{Orphan: Orphan{Platform: m.Platform, Workspace: m.Workspace, Channel: m.Channel, Thread: m.Thread,
		Asker: m.User.ID, Question: m.ID, Replica: s.replica}, Text: cutShown(m.Text), Name: m.User.Name}
	if cmd, ok := ParseCommand(m.Text); ok && cmd.Name == CmdRetry {
		r.Question, r.Text, r.Retry = cmd.Arg, "", true
	}
	rec, _ := json.Marshal(r)
	return []any{string(rec), now.Unix(), s.opt.TTL.Milliseconds(), s.opt.MaxTurns}
}

// indexAdd puts thread in the index with the deadline of a lock taken or
// renewed now.
func (s *Store) indexAdd(ctx context.Context, p redis.Pipeliner, thread string) {
	p.ZAdd(ctx, s.indexKey(), redis.Z{Score: float64(time.Now().Add(s.opt.LockTTL).UnixMilli()), Member: thread})
}

// LockAnswer is Lock for an answer to m begun at now: the same script
// records the answer's flight, for a tracked platform.
func (s *Store) LockAnswer(ctx context.Context, m Message, now time.Time) (*Thread, error) {
	return s.lock(ctx, m.ThreadKey(), m.userKey(), s.flightArgs(m, now))
}

// Progress is what a lock renewal records of its answer.
type Progress struct {
	Location string // the Reply's, "" if not known yet
	Shown    string // the text last rendered
	Question string // the question's message ID
}

// renewFlightScript extends the lock (KEYS[1], token ARGV[1], ARGV[2] ms),
// or takes it again when it is gone (a failover lost it, or it expired
// while this answer stalled), and, when ARGV[3] (a location) isn't empty
// and the flight record (KEYS[2]) exists, records the answer's progress.
// It returns 0 when another answer holds the lock.
var renewFlightScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
elseif not v then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
else
  return 0
end
if ARGV[3] ~= "" and redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("HSET", KEYS[2], "loc", ARGV[3], "shown", ARGV[4], "question", ARGV[5])
end
return 1
`)

// Renew extends the lock, taking it again if it is gone, and, for an
// answer whose flight is recorded, moves its deadline in the index and
// records p unless p.Location is empty, in one round trip. It reports
// false when another answer holds the lock.
func (t *Thread) Renew(ctx context.Context, p Progress) (bool, error) {
	s := t.store
	if !t.tracked {
		p.Location = ""
	}
	var renewed *redis.Cmd
	_, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		renewed = renewFlightScript.Eval(ctx, pl, []string{s.lockKey(t.Key), s.flightKey(t.Key)},
			t.token, s.opt.LockTTL.Milliseconds(), p.Location, cutShown(p.Shown), p.Question)
		if t.tracked {
			s.indexAdd(ctx, pl, t.Key)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	n, err := renewed.Int()
	return n == 1, err
}

// cutShown is text cut to maxShown bytes, on a rune boundary.
func cutShown(text string) string {
	if len(text) <= maxShown {
		return text
	}
	return strings.ToValidUTF8(text[:maxShown], "")
}

// orphanLua defines orphanOf(flight, turns, maxTurns, ttl), to call once
// the thread's lock is known gone: it deletes the flight record and
// returns it as {rec, loc, shown, question}, or nil when there is none or
// the turns end with an answer saved since the flight began (the record
// was inert). As an interrupted answer does, it saves the question and
// what was shown (or that nothing was) to the turns, trimmed to maxTurns
// and kept for ttl ms, so that follow-ups see them and Retry redoes them;
// a retry's question is saved already.
const orphanLua = `
local function orphanOf(flight, turns, maxTurns, ttl)
  local f = redis.call("HMGET", flight, "rec", "start", "loc", "shown", "question")
  if not f[1] then return nil end
  redis.call("DEL", flight)
  local start = tonumber(f[2]) or 0
  local last = redis.call("LINDEX", turns, -1)
  if last then
    local ok, t = pcall(cjson.decode, last)
    if ok and type(t) == "table" and t.role == "assistant" and (tonumber(t.time) or 0) >= start then return nil end
  end
  local ok, r = pcall(cjson.decode, f[1])
  if ok and type(r) == "table" and not r.retry and type(r.text) == "string" and r.text ~= "" then
    local id = r.question
    if f[5] and f[5] ~= "" then id = f[5] end
    local shown = f[4] or ""
    if shown == "" then shown = "` + orphanTurn + `" end
    local q = {id = id, role = "user", text = r.text, tokens = math.floor(#r.text / 3) + 4, time = start}
    if type(r.name) == "string" and r.name ~= "" then q.user = r.name end
    redis.call("RPUSH", turns, cjson.encode(q), cjson.encode({role = "assistant", text = shown, tokens = math.floor(#shown / 3) + 4, time = start}))
    redis.call("LTRIM", turns, -tonumber(maxTurns), -1)
    redis.call("PEXPIRE", turns, ttl)
  end
  return {f[1], f[3] or "", f[4] or "", f[5] or ""}
end
`

// orphanTurn is the answer saved for an orphan that showed nothing.
const orphanTurn = "(No answer: I was restarted before I could answer.)"

// claimScript claims the flight record (KEYS[2]) of an answer whose lock
// (KEYS[1]) is gone, with orphanOf (KEYS[3]: the turns; ARGV[1] turns
// kept, ARGV[2] ms); it returns -1 when the lock is held, 0 when there is
// no orphan.
var claimScript = redis.NewScript(orphanLua + `
if redis.call("EXISTS", KEYS[1]) == 1 then return -1 end
return orphanOf(KEYS[2], KEYS[3], ARGV[1], ARGV[2]) or 0
`)

// orphanFrom is the orphan in orphanOf's reply, nil if none.
func orphanFrom(v any) *Orphan {
	res, ok := v.([]any)
	if !ok || len(res) != 4 {
		return nil
	}
	var o Orphan
	if rec, _ := res[0].(string); json.Unmarshal([]byte(rec), &o) != nil {
		return nil // not a record this version wrote
	}
	o.Location, _ = res[1].(string)
	o.Shown, _ = res[2].(string)
	if q, _ := res[3].(string); q != "" {
		o.Question = q
	}
	return &o
}

// unindexScript removes the members ARGV[2..] of the index (KEYS[1])
// whose deadline is still at most ARGV[1]: a lock renewed meanwhile keeps
// its entry.
var unindexScript = redis.NewScript(`
for i = 2, #ARGV do
  local d = redis.call("ZSCORE", KEYS[1], ARGV[i])
  if d and tonumber(d) <= tonumber(ARGV[1]) then redis.call("ZREM", KEYS[1], ARGV[i]) end
end
return 0
`)

// ClaimOrphans finds up to limit answers in flight whose lock deadline
// has passed, on platforms want accepts, and claims those whose lock is
// gone: each is returned to exactly one caller across replicas. It drops
// from the index what it claimed and entries without a flight; an entry
// whose lock is still held (renewed late, or expiring just now) stays for
// the next sweep. With nothing past its deadline it costs one round trip.
func (s *Store) ClaimOrphans(ctx context.Context, limit int, want func(platform string) bool) ([]Orphan, error) {
	now := time.Now().UnixMilli()
	due, err := s.rdb.ZRangeByScore(ctx, s.indexKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now, 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var threads []string
	for _, thread := range due {
		if platform, _, _ := strings.Cut(thread, ":"); want(platform) {
			threads = append(threads, thread)
		}
	}
	if len(threads) == 0 {
		return nil, nil
	}
	claims := make([]*redis.Cmd, len(threads))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, thread := range threads {
			// EVALSHA has no NOSCRIPT fallback in a pipeline.
			claims[i] = claimScript.Eval(ctx, p, []string{s.lockKey(thread), s.flightKey(thread), s.turnsKey(thread)},
				s.opt.MaxTurns, s.opt.TTL.Milliseconds())
		}
		return nil
	})
	var out []Orphan
	unindex := []any{now}
	for i, c := range claims {
		v, cerr := c.Result()
		if cerr != nil && !errors.Is(cerr, redis.Nil) {
			continue // claimed by nobody: the next sweep tries again
		}
		if n, ok := v.(int64); ok && n == -1 {
			continue // the lock is held
		}
		unindex = append(unindex, threads[i])
		if o := orphanFrom(v); o != nil {
			out = append(out, *o)
		}
	}
	if len(unindex) > 1 {
		if uerr := unindexScript.Run(ctx, s.rdb, []string{s.indexKey()}, unindex...).Err(); uerr != nil && !errors.Is(uerr, redis.Nil) {
			err = errors.Join(err, uerr) // the next sweep finds no flight there and drops them
		}
	}
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return out, nil
}

// finishers holds the engine's OrphanFinisher per platform.
type finishers struct{ m sync.Map }

func (f *finishers) get(platform string) OrphanFinisher {
	v, ok := f.m.Load(platform)
	if !ok {
		return nil
	}
	return v.(OrphanFinisher)
}

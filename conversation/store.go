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
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/metrics"
)

// Turn is one saved message of a conversation.
type Turn struct {
	ID     string `json:"id,omitempty"` // a question's platform message ID (Message.ID), for /retry
	Role   string `json:"role"`         // "user" or "assistant"
	Text   string `json:"text"`
	User   string `json:"user,omitempty"`  // author's display name (user turns)
	Model  string `json:"model,omitempty"` // registered model name (assistant turns)
	Tokens int    `json:"tokens"`          // tokens this turn costs in a prompt, from Ark's usage where known
	Time   int64  `json:"time"`            // Unix seconds
	// Picture is, on a turn that made pictures, the temporary URL of the
	// last one at Ark (valid about a day), for /image to edit it; "" when
	// it came inline.
	Picture string `json:"picture,omitempty"`
}

// StoreOptions configures a Store.
type StoreOptions struct {
	Prefix    string        // key prefix, e.g. "arkbot"
	TTL       time.Duration // idle threads expire after this
	MaxTurns  int           // turns kept per thread
	LockTTL   time.Duration // a lock not renewed expires after this
	LockWait  time.Duration // how long Lock waits for a busy thread
	DedupeTTL time.Duration // how long a message ID is remembered
	// MinReplicas is how many replicas must confirm a saved turn (WAIT);
	// 0 confirms nothing. ReplicaWait is how long each WAIT waits.
	MinReplicas int
	ReplicaWait time.Duration
}

// Store keeps conversations in Redis. Every key of one thread shares a hash
// tag, so a thread lives in one Cluster slot and its scripts stay atomic.
type Store struct {
	rdb     redis.UniversalClient
	opt     StoreOptions
	rate    *redis_rate.Limiter
	replica string   // this process's name in flight records
	tracked sync.Map // platforms whose answers' flights are recorded (track)
	// lonelyUntil (Unix ns) ends the spell in which saves are not re-saved
	// for want of a replica (see lonelyFor).
	lonelyUntil atomic.Int64
}

// ErrBusy is returned by Lock when the thread stayed locked for LockWait.
var ErrBusy = errors.New("conversation is busy")

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient, opt StoreOptions) *Store {
	return &Store{rdb: rdb, opt: opt, rate: redis_rate.NewLimiter(rdb), replica: newReplicaID()}
}

// tagSafe keeps an ID's braces from ending a key's hash tag early.
var tagSafe = strings.NewReplacer("{", "(", "}", ")")

func tag(s string) string { return tagSafe.Replace(s) }

func (s *Store) key(kind, id, suffix string) string {
	k := s.opt.Prefix + ":" + kind + ":{" + tag(id) + "}"
	if suffix != "" {
		k += ":" + suffix
	}
	return k
}

func (s *Store) turnsKey(thread string) string    { return s.key("thread", thread, "turns") }
func (s *Store) metaKey(thread string) string     { return s.key("thread", thread, "meta") }
func (s *Store) lockKey(thread string) string     { return s.key("lock", thread, "") }
func (s *Store) channelKey(channel string) string { return s.key("channel", channel, "model") }

// channelSettingsKey is the hash of a channel's /search and /think choices.
func (s *Store) channelSettingsKey(channel string) string {
	return s.key("channel", channel, "settings")
}
func (s *Store) usageKey(user, day, model string) string {
	if model == "" {
		return s.key("usage", user, day)
	}
	return s.key("usage", user, day+":"+model)
}

// markerKey is the key marking a message as seen. It shares its thread's
// hash tag, so admitScript marks it and locks the thread in one Cluster slot.
func (s *Store) markerKey(m Message) string {
	return s.key("event", m.ThreadKey(), m.DedupeKey())
}

// Suffixes of the daily counters next to the token counts: cached input
// tokens and web searches. "#" keeps them apart from model names.
const (
	cachedCounter = "#cached"
	searchCounter = "#searches"
)

// Day names the UTC day used for daily quotas.
func Day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Admission is what Admit learned in one round trip.
type Admission struct {
	First         bool             // the message was not seen before
	Talking       bool             // a mention, or a follow-up in a thread the bot talks in
	ChannelModel  string           // the channel's model choice, "" if none
	UsedToday     int64            // the user's tokens today, all models
	UsedByModel   map[string]int64 // the user's tokens today per model name
	CachedToday   int64            // of UsedToday, input tokens Ark had cached
	SearchesToday int64            // the user's web searches today
	// ChannelSettings are the channel's /search and /think choices.
	ChannelSettings Settings
	// Thread is the message's thread, locked and loaded, when Admit was
	// asked to lock it and the thread was free; nil otherwise (then Lock
	// waits for it). Save or Release it.
	Thread *Thread
}

// lockAndLoadLua takes the lock (KEYS[1], token ARGV[1], ARGV[2] ms) and,
// only if it got it, returns {1, the thread's model, its turns} (KEYS[2]
// turns, KEYS[3] meta) and, fifth, its chain and settings; else it
// returns {0, the lock's TTL}. With a flight
// record to write (KEYS[5]: ARGV[5], begun at ARGV[6], for ARGV[7] ms, in
// a thread keeping ARGV[8] turns; none if ARGV[5] is empty), it first
// claims the record there, if an orphan's (see orphanLua), and returns it
// fourth.
const lockAndLoadLua = orphanLua + `
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  local orphan = false
  if ARGV[5] ~= "" then
    orphan = orphanOf(KEYS[5], KEYS[2], ARGV[8], ARGV[7]) or false
    redis.call("HSET", KEYS[5], "rec", ARGV[5], "start", ARGV[6])
    redis.call("PEXPIRE", KEYS[5], ARGV[7])
  end
  return {1, redis.call("HGET", KEYS[3], "model") or "", redis.call("LRANGE", KEYS[2], 0, -1), orphan,
    redis.call("HMGET", KEYS[3], "chain", "search", "think")}
end
return {0, redis.call("PTTL", KEYS[1])}
`

// lockAndLoad takes the lock and, only if it got it, reads the thread.
var lockAndLoad = redis.NewScript(lockAndLoadLua)

// admitScript marks a message as seen (KEYS[4], for ARGV[4] ms) and, when
// asked, tries lockAndLoadLua on its thread in the same step. It returns
// {-1} for a follow-up (ARGV[3] = "1") in a thread without turns, not
// locked (a thread's first answer holds the lock before it saves a turn)
// and not marked as one the bot talks in (KEYS[6]), leaving nothing
// behind; {0} for a message seen before; {1} for a new one, and then
// lockAndLoadLua's reply if ARGV[1], the lock token, isn't empty. A new
// mention to answer marks its thread as one the bot talks in, for ARGV[9] ms.
var admitScript = redis.NewScript(`
if ARGV[3] == "1" and redis.call("EXISTS", KEYS[2], KEYS[1], KEYS[6]) == 0 then return {-1} end
if not redis.call("SET", KEYS[4], "1", "NX", "PX", ARGV[4]) then return {0} end
if ARGV[1] == "" then return {1} end
if ARGV[3] == "0" then redis.call("SET", KEYS[6], "1", "PX", ARGV[9]) end
local function lock()` + lockAndLoadLua + `end
local r = lock()
table.insert(r, 1, 1)
return r
`)

// Admit marks m as seen and, in the same round trip, reads the channel's
// model choice and the user's usage today (one MGET: a user's usage keys
// share a hash tag). A follow-up (m.Mentioned false) is for the bot only
// where it holds a conversation: Admit checks that its thread has turns and
// only then marks it; Talking is false when it has none, and nothing is
// written then; a thread whose first answer is under way, or where a
// mention was taken to answer (within TTL), counts as one with turns.
// With lock, Admit also tries to lock and load the thread of a new
// message (see Admission.Thread), saving the answer a round trip, and
// records the answer's flight on a tracked platform.
func (s *Store) Admit(ctx context.Context, m Message, models []string, now time.Time, lock bool) (Admission, error) {
	day := Day(now)
	usageKeys := []string{s.usageKey(m.userKey(), day, "")}
	for _, name := range models {
		usageKeys = append(usageKeys, s.usageKey(m.userKey(), day, name))
	}
	usageKeys = append(usageKeys, s.usageKey(m.userKey(), day+cachedCounter, ""), s.usageKey(m.userKey(), day+searchCounter, ""))
	thread := m.ThreadKey()
	token, followUp, flight := "", "0", noFlight
	if lock {
		token = lockToken(m.userKey())
		flight = s.flightArgs(m, now)
	}
	if !m.Mentioned {
		followUp = "1"
	}
	var (
		script   *redis.Cmd
		chModel  *redis.StringCmd
		chConfig *redis.MapStringStringCmd
		used     *redis.SliceCmd
	)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		keys := []string{s.lockKey(thread), s.turnsKey(thread), s.metaKey(thread), s.markerKey(m), s.flightKey(thread), s.talkingKey(thread)}
		args := append([]any{token, s.opt.LockTTL.Milliseconds(), followUp, s.opt.DedupeTTL.Milliseconds()}, flight...)
		// EVALSHA has no NOSCRIPT fallback in a pipeline.
		script = admitScript.Eval(ctx, p, keys, append(args, s.opt.TTL.Milliseconds())...)
		if flight[0] != "" {
			s.indexAdd(ctx, p, thread) // an entry without a flight is dropped by a sweep
		}
		chModel = p.Get(ctx, s.channelKey(m.ChannelKey()))
		chConfig = p.HGetAll(ctx, s.channelSettingsKey(m.ChannelKey()))
		used = p.MGet(ctx, usageKeys...)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Admission{}, fmt.Errorf("admit: %w", err)
	}
	res, err := script.Slice()
	if err != nil {
		return Admission{}, fmt.Errorf("admit: %w", err)
	}
	a := Admission{ChannelModel: chModel.Val(), UsedByModel: map[string]int64{}, ChannelSettings: channelSettings(chConfig.Val())}
	switch res[0].(int64) {
	case -1:
		return a, nil
	case 1:
		a.First = true
	}
	a.Talking = true
	if len(res) > 1 && res[1].(int64) == 1 {
		a.Thread = s.loaded(thread, token, res[2:])
		a.Thread.tracked = flight[0] != ""
	}
	for i, v := range used.Val() {
		str, _ := v.(string)
		n, _ := strconv.ParseInt(str, 10, 64)
		switch {
		case i == 0:
			a.UsedToday = n
		case i <= len(models):
			a.UsedByModel[models[i-1]] = n
		case i == len(models)+1:
			a.CachedToday = n
		default:
			a.SearchesToday = n
		}
	}
	return a, nil
}

// loaded is the thread locked with token, from lockAndLoadLua's reply after
// its leading 1: the model, the turns, an orphan claimed, the chain and
// the settings.
func (s *Store) loaded(thread, token string, res []any) *Thread {
	t := &Thread{Key: thread, Model: res[0].(string), token: token, store: s}
	if len(res) > 2 {
		t.orphan = orphanFrom(res[2])
	}
	if len(res) > 3 {
		if f, ok := res[3].([]any); ok && len(f) == 3 {
			raw, _ := f[0].(string)
			t.Chain = parseChain(raw)
			t.Settings.Search, _ = f[1].(string)
			t.Settings.Think, _ = f[2].(string)
		}
	}
	for _, raw := range res[1].([]any) {
		var turn Turn
		if json.Unmarshal([]byte(raw.(string)), &turn) == nil {
			t.Turns = append(t.Turns, turn)
		}
	}
	return t
}

// Allow applies a per-minute request limit for key across all replicas and
// returns how long to wait when it is exceeded.
func (s *Store) Allow(ctx context.Context, key string, perMinute int) (time.Duration, error) {
	res, err := s.rate.Allow(ctx, s.opt.Prefix+":rate:"+tag(key), redis_rate.PerMinute(perMinute))
	if err != nil {
		return 0, err
	}
	if res.Allowed == 0 {
		return res.RetryAfter, nil
	}
	return 0, nil
}

// Thread is a locked conversation, loaded. Save or Release it.
type Thread struct {
	Key   string
	Model string // the thread's own model choice, "" if none
	Turns []Turn
	token string
	store *Store
	// Chain is the Responses API chain that continues the thread, nil if
	// none; Save stores what it holds then (nil deletes it).
	Chain *Chain
	// Settings are the thread's own /search and /think choices.
	Settings Settings
	drop     int     // turns Save removes from the end before appending
	tracked  bool    // its answer's flight is recorded
	orphan   *Orphan // an orphaned answer claimed with the lock, to finish
}

// DropLastExchange takes the latest question and its answer out of the
// thread; Save then replaces them in Redis. It returns the question, or
// false when the thread does not end with a question and its answer.
func (t *Thread) DropLastExchange() (question Turn, ok bool) {
	question, ok = lastQuestion(t.Turns)
	if ok {
		t.Turns = t.Turns[:len(t.Turns)-2]
		t.drop += 2
	}
	return question, ok
}

// LastQuestion reads the thread's latest question without locking it,
// false when the thread does not end with a question and its answer.
func (s *Store) LastQuestion(ctx context.Context, thread string) (Turn, bool, error) {
	raw, err := s.rdb.LRange(ctx, s.turnsKey(thread), -2, -1).Result()
	if err != nil {
		return Turn{}, false, err
	}
	turns := make([]Turn, 0, 2)
	for _, r := range raw {
		var turn Turn
		if json.Unmarshal([]byte(r), &turn) == nil {
			turns = append(turns, turn)
		}
	}
	q, ok := lastQuestion(turns)
	return q, ok, nil
}

func lastQuestion(turns []Turn) (Turn, bool) {
	n := len(turns)
	if n < 2 || turns[n-2].Role != "user" || turns[n-1].Role != "assistant" {
		return Turn{}, false
	}
	return turns[n-2], true
}

// Lock takes the thread's lock for owner, the asker's user key (waiting up
// to LockWait for an answer in progress, on any replica), and loads its
// turns and model in the same round trip. The lock expires after LockTTL
// unless renewed with Renew.
func (s *Store) Lock(ctx context.Context, thread, owner string) (*Thread, error) {
	return s.lock(ctx, thread, owner, noFlight)
}

// lock is Lock, writing a flight record when flight (flightArgs) has one.
func (s *Store) lock(ctx context.Context, thread, owner string, flight []any) (*Thread, error) {
	token := lockToken(owner)
	flightKey := s.flightKey(thread)
	// KEYS[4], ARGV[3] and ARGV[4] are admitScript's own.
	keys := []string{s.lockKey(thread), s.turnsKey(thread), s.metaKey(thread), flightKey, flightKey}
	args := append([]any{token, s.opt.LockTTL.Milliseconds(), "", ""}, flight...)
	tracked := flight[0] != ""
	deadline := time.Now().Add(s.opt.LockWait)
	backoff := 20 * time.Millisecond
	for {
		var script *redis.Cmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			script = lockAndLoad.Eval(ctx, p, keys, args...) // EVALSHA has no NOSCRIPT fallback in a pipeline
			if tracked {
				s.indexAdd(ctx, p, thread)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		res, err := script.Slice()
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if res[0].(int64) == 1 {
			t := s.loaded(thread, token, res[1:])
			t.tracked = tracked
			return t, nil
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, ErrBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1], KEYS[2]) end
return 0
`)

// Release unlocks the thread without saving, ending its answer's flight.
func (t *Thread) Release(ctx context.Context) error {
	return releaseScript.Run(ctx, t.store.rdb, []string{t.store.lockKey(t.Key), t.store.flightKey(t.Key)}, t.token).Err()
}

// saveScript drops the turns a retry replaces, appends turns (from
// ARGV[8]), trims, stores the thread's chain (ARGV[7], "" deletes it),
// refreshes TTLs and releases the lock, all or nothing. It refuses (returns
// 0) when another answer holds the lock, so a replica that lost its lock
// can't interleave turns with the new holder; with no lock at all (expired,
// or lost in a failover) it appends without dropping. A re-save (ARGV[6] =
// "1"), after a save whose reply was lost or that no replica confirmed,
// returns 2 when the turns already follow each other in the list (Redis
// kept the first save), and otherwise appends them whoever holds the lock:
// the first save had it.
var saveScript = redis.NewScript(`
local n = #ARGV - 7
local lock = redis.call("GET", KEYS[1])
local mine = lock == ARGV[1]
if ARGV[6] == "1" then
  local tail = redis.call("LRANGE", KEYS[2], 0, -1)
  for i = 1, #tail - n + 1 do
    local j = 1
    while j <= n and tail[i+j-1] == ARGV[7+j] do j = j + 1 end
    if j > n then
      if mine then redis.call("DEL", KEYS[1]) end
      return 2
    end
  end
elseif lock and not mine then
  return 0
end
if mine then for i = 1, tonumber(ARGV[5]) do redis.call("RPOP", KEYS[2]) end end
for i = 8, #ARGV do redis.call("RPUSH", KEYS[2], ARGV[i]) end
redis.call("LTRIM", KEYS[2], -tonumber(ARGV[2]), -1)
redis.call("PEXPIRE", KEYS[2], ARGV[3])
if ARGV[7] == "" then redis.call("HDEL", KEYS[3], "chain") else redis.call("HSET", KEYS[3], "chain", ARGV[7]) end
redis.call("HSET", KEYS[3], "updated", ARGV[4])
redis.call("HSETNX", KEYS[3], "created", ARGV[4])
redis.call("PEXPIRE", KEYS[3], ARGV[3])
if mine then redis.call("DEL", KEYS[1]) end
return 1
`)

// ErrLockLost is returned by Save when another replica took the thread over.
var ErrLockLost = errors.New("thread lock lost")

// Usage is what one answer spent, for quotas.
type Usage struct {
	User     string // Message.userKey()
	Model    string // registered model name
	Tokens   int64
	Cached   int64 // of Tokens, input tokens Ark had cached
	Searches int64 // web searches
}

// Re-saves of a turn no replica confirmed: at most resaveAttempts, the
// first after resaveBackoff, doubling up to resaveBackoffMax (about 5 s in
// all with a 200 ms WAIT), time for a Sentinel or Cluster failover to
// promote a replica and for the client to find it. When they all go
// unconfirmed although Redis answers, the master has no replica (a new
// master before the old one rejoins it as one, a replica down): for
// lonelyFor after that, saves WAIT once and are not re-saved unless they
// fail, so that every answer does not pay for the missing replica.
const (
	resaveAttempts   = 6
	resaveBackoff    = 100 * time.Millisecond
	resaveBackoffMax = time.Second
	lonelyFor        = 10 * time.Second
)

// Save appends turns (in place of those dropped by DropLastExchange) and
// releases the lock in one atomic script, and counts the user's tokens in
// the same pipeline. With StoreOptions.MinReplicas, a WAIT in that pipeline
// confirms the turns reached that many replicas; when fewer confirmed, or
// the connection failed, Save re-saves them (idempotently: turns already
// saved are not appended twice) a few times with backoff, so that after a
// failover they are on the new master. Tokens are counted once: a failover
// may lose that count (see docs/decisions.md). Save returns ErrUnconfirmed
// when the turns are saved but not confirmed.
func (t *Thread) Save(ctx context.Context, turns []Turn, u Usage, now time.Time) error {
	s := t.store
	args, err := t.saveArgs(turns, now)
	if err != nil {
		return err
	}
	res, acked, err := s.saveTurns(ctx, t.Key, args, u, now)
	switch {
	case err == nil && res == 0:
		return ErrLockLost
	case s.opt.MinReplicas <= 0 && err != nil:
		return fmt.Errorf("save: %w", err)
	case s.opt.MinReplicas <= 0 || (err == nil && acked >= int64(s.opt.MinReplicas)):
		s.lonelyUntil.Store(0)
		return nil
	}
	metrics.SavesUnconfirmed.Inc()
	if err == nil && time.Now().UnixNano() < s.lonelyUntil.Load() {
		return fmt.Errorf("save: %w", ErrUnconfirmed)
	}
	args[5] = "1"
	backoff := resaveBackoff
	for range resaveAttempts {
		select {
		case <-ctx.Done():
			return fmt.Errorf("save: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, resaveBackoffMax)
		metrics.Resaves.Inc()
		// A re-save appends the turns or finds them; it never refuses.
		if _, acked, err = s.saveTurns(ctx, t.Key, args, Usage{}, now); err == nil && acked >= int64(s.opt.MinReplicas) {
			s.lonelyUntil.Store(0)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	s.lonelyUntil.Store(time.Now().Add(lonelyFor).UnixNano())
	return fmt.Errorf("save: %w", ErrUnconfirmed)
}

// saveArgs are saveScript's arguments for a first save of turns (ARGV[6]
// is "1" for a re-save).
func (t *Thread) saveArgs(turns []Turn, now time.Time) ([]any, error) {
	s := t.store
	args := []any{t.token, s.opt.MaxTurns, s.opt.TTL.Milliseconds(), now.Unix(), t.drop, "0", t.Chain.encode()}
	for _, turn := range turns {
		b, err := json.Marshal(turn)
		if err != nil {
			return nil, err
		}
		args = append(args, b)
	}
	return args, nil
}

// ErrUnconfirmed is returned by Save when fewer than MinReplicas replicas
// confirmed the turns after every re-save: they are on the master the client
// last reached, which a failover may still lose.
var ErrUnconfirmed = errors.New("fewer replicas than redis.min_replicas confirmed the turns")

// saveTurns runs saveScript with args on the thread's master, counts u's
// tokens and, with MinReplicas, WAITs for replicas: one pipeline, so the
// WAIT follows the script on its connection. In a Cluster the thread's
// node gets the script and the WAIT; the usage keys, tagged by user, go
// through the cluster client after it. It returns the script's reply and
// how many replicas acknowledged.
func (s *Store) saveTurns(ctx context.Context, thread string, args []any, u Usage, now time.Time) (res, acked int64, err error) {
	keys := []string{s.lockKey(thread), s.turnsKey(thread), s.metaKey(thread)}
	count := func(p redis.Pipeliner) {
		day := Day(now)
		for _, c := range []struct {
			key string
			n   int64
		}{{s.usageKey(u.User, day, ""), u.Tokens}, {s.usageKey(u.User, day, u.Model), u.Tokens},
			{s.usageKey(u.User, day+cachedCounter, ""), u.Cached}, {s.usageKey(u.User, day+searchCounter, ""), u.Searches}} {
			if c.n > 0 {
				p.IncrBy(ctx, c.key, c.n)
				p.Expire(ctx, c.key, 48*time.Hour)
			}
		}
	}
	var node redis.Cmdable = s.rdb
	cluster, isCluster := s.rdb.(*redis.ClusterClient)
	if isCluster && s.opt.MinReplicas > 0 {
		if node, err = cluster.MasterForKey(ctx, keys[1]); err != nil {
			return 0, 0, err
		}
	}
	var (
		saved *redis.Cmd
		wait  *redis.Cmd
	)
	_, err = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		saved = saveScript.Eval(ctx, p, keys, args...) // EVALSHA has no NOSCRIPT fallback in a pipeline
		if node == s.rdb {
			count(p)
		}
		if s.opt.MinReplicas > 0 {
			wait = p.Do(ctx, "wait", s.opt.MinReplicas, s.opt.ReplicaWait.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if node != s.rdb && (u.Tokens > 0 || u.Searches > 0) {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { count(p); return nil }); err != nil {
			return 0, 0, err
		}
	}
	res, _ = saved.Int64()
	if wait != nil {
		acked, _ = wait.Int64()
	}
	return res, acked, nil
}

// resetScript deletes the turns (KEYS[1]) and the chain continuing them
// (in KEYS[4]) and, unless an answer holds the lock (KEYS[2]), the last
// answer's flight record (KEYS[3]), which the turns no longer show as
// saved.
var resetScript = redis.NewScript(`
redis.call("DEL", KEYS[1])
redis.call("HDEL", KEYS[4], "chain")
if redis.call("EXISTS", KEYS[2]) == 0 then redis.call("DEL", KEYS[3]) end
return 0
`)

// Reset forgets the thread's turns and its chain, keeping its model
// choice and settings.
func (s *Store) Reset(ctx context.Context, thread string) error {
	return resetScript.Run(ctx, s.rdb, []string{s.turnsKey(thread), s.lockKey(thread), s.flightKey(thread), s.metaKey(thread)}).Err()
}

// ThreadModel returns the thread's model choice, "" if none.
func (s *Store) ThreadModel(ctx context.Context, thread string) (string, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(thread), "model").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// ChannelModel returns the channel's model choice, "" if none.
func (s *Store) ChannelModel(ctx context.Context, channel string) (string, error) {
	v, err := s.rdb.Get(ctx, s.channelKey(channel)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// SetThreadModel remembers the thread's model choice.
func (s *Store) SetThreadModel(ctx context.Context, thread, model string) error {
	k := s.metaKey(thread)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "model", model)
		p.PExpire(ctx, k, s.opt.TTL)
		return nil
	})
	return err
}

// SetChannelModel remembers the channel's model choice (no expiry).
func (s *Store) SetChannelModel(ctx context.Context, channel, model string) error {
	return s.rdb.Set(ctx, s.channelKey(channel), model, 0).Err()
}

// stopChannel is the Pub/Sub channel on which replicas ask each other to
// stop a thread's answer.
func (s *Store) stopChannel() string { return s.opt.Prefix + ":stop" }

// StopOutcome is what RequestStop did.
type StopOutcome int

// RequestStop's outcomes.
const (
	StopNothing   StopOutcome = iota // no answer holds the thread's lock
	StopRefused                      // the answer is someone else's, and by is no admin
	StopRequested                    // every replica was asked to stop it
	StopRepeated                     // ThreadStopper: this request was seen before
)

// RequestStop asks every replica to stop the answer in progress in thread,
// if it was asked by by (a user key) or admin is set.
func (s *Store) RequestStop(ctx context.Context, thread, by string, admin bool) (StopOutcome, error) {
	token, err := s.rdb.Get(ctx, s.lockKey(thread)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return StopNothing, nil
	case err != nil:
		return 0, fmt.Errorf("stop: %w", err)
	case !admin && lockOwner(token) != by:
		return StopRefused, nil
	}
	if err := s.rdb.Publish(ctx, s.stopChannel(), thread).Err(); err != nil {
		return 0, fmt.Errorf("stop: %w", err)
	}
	return StopRequested, nil
}

// StopRequests calls stop with the thread of each RequestStop from any
// replica until ctx ends (then it returns nil). It calls ready, if not
// nil, once subscribed; once it is, go-redis resubscribes by itself after an outage.
func (s *Store) StopRequests(ctx context.Context, ready func(), stop func(thread string)) error {
	ps := s.rdb.Subscribe(ctx, s.stopChannel())
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe to stop requests: %w", err)
	}
	if ready != nil {
		ready()
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return nil
			}
			stop(msg.Payload)
		}
	}
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// lockToken is a thread lock's value: its owner's user key and a random
// part that makes it this answer's.
func lockToken(owner string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return owner + " " + hex.EncodeToString(b)
}

// lockOwner is the owner named in a lock's value.
func lockOwner(token string) string {
	owner, _, _ := strings.Cut(token, " ")
	return owner
}

// userKey identifies the author across the platform for quotas.
func (m Message) userKey() string { return m.Platform + ":" + m.User.ID }

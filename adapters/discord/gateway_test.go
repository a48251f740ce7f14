package discord

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

func withInvalidSessionWait(d time.Duration) Option {
	return func(o *options) { o.invalidSessionWait = d }
}

func withIdentifyInterval(d time.Duration) Option {
	return func(o *options) { o.identifyInterval = d }
}

// logRecorder is a slog.Handler keeping every record, for tests that check
// what the adapter logged.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

// find returns the attributes of the records at level whose message
// contains msg.
func (l *logRecorder) find(level slog.Level, msg string) []map[string]slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			attrs := map[string]slog.Value{}
			r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
			out = append(out, attrs)
		}
	}
	return out
}

// noStartsLeft is what the adapter logs when it waits for the session
// start limit to reset.
const noStartsLeft = "no gateway session starts left"

// The connection lifecycle against the fake gateway: heartbeats carrying
// the last sequence number, and each way a connection ends resumed on
// READY's resume address or identified anew, as Discord documents; after
// each the bot still answers, and an event sent while it was away arrives
// exactly once.
func TestGatewayLifecycle(t *testing.T) {
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithHeartbeatInterval(100 * time.Millisecond), discordtest.WithIdentifyWindow(20 * time.Millisecond)},
		opts:     []Option{withInvalidSessionWait(10 * time.Millisecond), withIdentifyInterval(60 * time.Millisecond)},
	})
	fake := hs.fake
	const first = "/ws/?encoding=json&v=10" // discordgo adds the slash to what GET /gateway/bot gives
	const resume = "/ws/resume?encoding=json&v=10"
	if d := fake.Dials(); len(d) != 1 || d[0] != first {
		t.Fatalf("dials = %q", d)
	}
	if id := fake.Identifies(); len(id) != 1 || id[0].Intents != int(Intents) || id[0].Shard != [2]int{0, 1} {
		t.Fatalf("identify = %+v", id)
	}
	answered := func(text string) {
		t.Helper()
		u := hs.mention(alice, channelID, text)
		hs.h.waitCall(t, u.ID)
	}
	answered("hello")
	// Heartbeats keep coming and carry the last dispatch's number.
	beats := fake.Stats().Heartbeats
	if err := fake.WaitFor(5*time.Second, func() bool {
		st := fake.Stats()
		return st.Heartbeats >= beats+3 && st.HeartbeatSeq == fake.Sequence()
	}); err != nil {
		t.Fatalf("heartbeats: %+v, sequence %d", fake.Stats(), fake.Sequence())
	}

	steps := []struct {
		name    string
		end     func()
		resumed bool
	}{
		{"RECONNECT (op 7)", fake.Reconnect, true},
		{"dropped connection", fake.DropConnections, true},
		{"resumable INVALID_SESSION", func() { fake.InvalidateSessions(true) }, true},
		{"zombie (no heartbeat ACK)", func() {
			fake.SetHeartbeatAcks(false)
			if err := fake.WaitFor(5*time.Second, func() bool { return fake.Connected() == 0 }); err != nil {
				t.Fatal("the zombie connection was kept")
			}
			fake.SetHeartbeatAcks(true)
		}, true},
		{"close 4000 (unknown error)", func() { fake.CloseConnections(4000, "Unknown error.") }, true},
		{"INVALID_SESSION, not resumable", func() { fake.InvalidateSessions(false) }, false},
		{"close 4009 (session timed out)", func() { fake.CloseConnections(4009, "Session timed out.") }, false},
	}
	for _, step := range steps {
		before := fake.Stats()
		dials := len(fake.Dials())
		step.end()
		err := fake.WaitFor(10*time.Second, func() bool {
			st := fake.Stats()
			if step.resumed {
				return st.Resumes == before.Resumes+1 && fake.Connected() == 1
			}
			return st.Identifies == before.Identifies+1 && fake.Connected() == 1
		})
		if err != nil {
			t.Fatalf("%s: not back: %+v", step.name, fake.Stats())
		}
		d := fake.Dials()
		if want := map[bool]string{true: resume, false: first}[step.resumed]; d[len(d)-1] != want {
			t.Fatalf("%s: reconnected at %s, want %s", step.name, d[len(d)-1], want)
		}
		if st := fake.Stats(); st.Resumes+st.Identifies != before.Resumes+before.Identifies+1 || len(d) < dials+1 {
			t.Fatalf("%s: %+v after %+v, dials %q", step.name, st, before, d)
		}
		if err := fake.WaitFor(5*time.Second, hs.a.Ready); err != nil {
			t.Fatalf("%s: adapter not ready", step.name)
		}
		answered("still there after " + step.name + "?")
	}

	// An event dispatched while the connection is down is replayed on
	// RESUME once, not again with what the bot had already seen.
	before := fake.Stats().Resumes
	fake.DropConnections()
	if err := fake.WaitFor(5*time.Second, func() bool { return fake.Connected() == 0 }); err != nil {
		t.Fatal("the connection did not drop")
	}
	u := hs.mention(alice, channelID, "sent while away")
	if err := fake.WaitFor(10*time.Second, func() bool { return fake.Stats().Resumes == before+1 }); err != nil {
		t.Fatal("no resume after the drop")
	}
	hs.h.waitCall(t, u.ID)
	time.Sleep(200 * time.Millisecond)
	if n := len(hs.h.callsFor(u.ID)); n != 1 {
		t.Fatalf("the message sent while away was handled %d times", n)
	}
}

// When READY's resume address can't be reached, the session resumes on
// the main gateway instead of retrying a node that is gone.
func TestGatewayResumeAddressGone(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "ws://" + l.Addr().String() + "/ws"
	l.Close()
	hs := start(t, setup{fakeOpts: []discordtest.Option{discordtest.WithResumeURL(gone)}})
	hs.fake.DropConnections()
	if err := hs.fake.WaitFor(10*time.Second, func() bool { return hs.fake.Stats().Resumes == 1 && hs.fake.Connected() == 1 }); err != nil {
		t.Fatalf("no resume: %v", hs.fake.Stats())
	}
	if d := hs.fake.Dials(); len(d) != 2 || d[1] != "/ws/?encoding=json&v=10" || hs.fake.Stats().Identifies != 1 {
		t.Fatalf("dials %q, %v", d, hs.fake.Stats())
	}
	u := hs.mention(alice, channelID, "back?")
	hs.h.waitCall(t, u.ID)
}

// A HEARTBEAT from Discord is answered at once, not at the next interval.
func TestGatewayHeartbeatOnRequest(t *testing.T) {
	hs := start(t, setup{fakeOpts: []discordtest.Option{discordtest.WithHeartbeatInterval(time.Hour)}})
	before := hs.fake.Stats().Heartbeats
	hs.fake.RequestHeartbeat()
	if err := hs.fake.WaitFor(2*time.Second, func() bool { return hs.fake.Stats().Heartbeats > before }); err != nil {
		t.Fatalf("no heartbeat: %+v", hs.fake.Stats())
	}
}

// Close codes no reconnection mends end Run with what to fix; the token
// is never in the error.
func TestGatewayFatalCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{4004, "Reset Token"},
		{4014, "Message Content intent"},
		{4011, "discord.shard_count"},
		{4012, "discord.api_url"},
	} {
		fake := discordtest.New()
		fake.AddGuild(guildID, "Test guild")
		a, err := New(config.Discord{Token: config.Secret(fake.Token()), APIURL: fake.APIURL()}, config.Limits{}, newScriptHandler(), WithLogger(testLogger()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		if err := fake.WaitFor(10*time.Second, a.Ready); err != nil {
			t.Fatalf("%d: not ready", tc.code)
		}
		fake.CloseConnections(tc.code, "refused")
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), fake.Token()) {
				t.Fatalf("%d: Run = %v", tc.code, err)
			}
		case <-ctx.Done():
			t.Fatalf("%d: Run kept going", tc.code)
		}
		if a.Ready() {
			t.Errorf("%d: still ready", tc.code)
		}
		cancel()
		fake.Close()
	}
}

func TestWithGatewayQuery(t *testing.T) {
	for in, want := range map[string]string{
		"wss://gateway.discord.gg":             "wss://gateway.discord.gg/?encoding=json&v=10",
		"wss://gateway-us-east1-b.discord.gg/": "wss://gateway-us-east1-b.discord.gg/?encoding=json&v=10",
		"ws://127.0.0.1:9/ws?compress=no&v=9":  "ws://127.0.0.1:9/ws?compress=no&encoding=json&v=10",
		"https://discord.com/api/v10/gateway":  "",
		"not a url":                            "",
		"wss://":                               "",
	} {
		got, err := withGatewayQuery(in, "10")
		if (err != nil) != (want == "") || got != want {
			t.Errorf("withGatewayQuery(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// With no session start left, the adapter waits for the limit's reset
// before it identifies, and says so.
func TestGatewayWaitsForSessionStarts(t *testing.T) {
	const resetAfter = 300 * time.Millisecond
	logs := &logRecorder{}
	set := time.Now()
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithToken("token-" + t.Name()),
			discordtest.WithSessionStartLimit(discordtest.SessionStartLimit{Total: 1000, Remaining: 0, ResetAfter: resetAfter, MaxConcurrency: 1})},
		opts: []Option{WithLogger(slog.New(logs))},
	})
	ids, st := hs.fake.Identifies(), hs.fake.Stats()
	if len(ids) != 1 || st.StartsExceeded != 0 || st.IdentifiesTooFast != 0 {
		t.Fatalf("identifies %+v, stats %+v", ids, st)
	}
	if ids[0].Time.Before(set.Add(resetAfter)) {
		t.Fatalf("identified %v after the limit was set, before its reset after %v", ids[0].Time.Sub(set), resetAfter)
	}
	// Asked once to find none left, again once the wait was over.
	if n := st.Requests["GET /gateway/bot"]; n < 2 {
		t.Fatalf("GET /gateway/bot asked %d times", n)
	}
	warned := logs.find(slog.LevelWarn, noStartsLeft)
	if len(warned) == 0 || warned[0]["until"].String() == "" || warned[0]["wait"].Duration() <= 0 {
		t.Fatalf("warnings = %v", warned)
	}
}

// Shards share their bot's IDENTIFY buckets: with max_concurrency 1, two
// shards of one process identify an interval apart.
func TestGatewayIdentifyBucketsAcrossShards(t *testing.T) {
	const interval = 300 * time.Millisecond
	// The fake's window is shorter than the adapter's interval, so that
	// delays between the two IDENTIFYs' sending and arrival never make it
	// refuse one.
	fake := discordtest.New(discordtest.WithToken("token-"+t.Name()), discordtest.WithIdentifyWindow(interval/2))
	defer fake.Close()
	fake.AddGuild(guildID, "Test guild")
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for shard := range 2 {
		cfg := config.Discord{Token: config.Secret(fake.Token()), APIURL: fake.APIURL(), ShardID: shard, ShardCount: 2}
		a, err := New(cfg, config.Limits{}, newScriptHandler(), WithLogger(testLogger()), withIdentifyInterval(interval))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				t.Errorf("shard %d: Run = %v", shard, err)
			}
		})
	}
	if err := fake.WaitFor(10*time.Second, func() bool { return fake.Connected() == 2 }); err != nil {
		t.Fatalf("not both connected: %+v", fake.Stats())
	}
	ids := fake.Identifies()
	if len(ids) != 2 || ids[0].Shard[0] == ids[1].Shard[0] || fake.Stats().IdentifiesTooFast != 0 {
		t.Fatalf("identifies %+v, stats %+v", ids, fake.Stats())
	}
	if gap := ids[1].Time.Sub(ids[0].Time); gap < interval/2 {
		t.Fatalf("the shards identified %v apart", gap)
	}
}

// A stream of INVALID_SESSIONs that can't be resumed spends the session
// starts left and no more: then the adapter waits for the reset.
func TestGatewayInvalidSessionsKeepWithinTheLimit(t *testing.T) {
	const remaining = 3
	logs := &logRecorder{}
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithToken("token-" + t.Name()), discordtest.WithIdentifyWindow(10 * time.Millisecond),
			discordtest.WithSessionStartLimit(discordtest.SessionStartLimit{Total: 1000, Remaining: remaining, ResetAfter: time.Hour, MaxConcurrency: 1})},
		opts: []Option{WithLogger(slog.New(logs)), withInvalidSessionWait(time.Millisecond), withIdentifyInterval(50 * time.Millisecond)},
	})
	fake := hs.fake
	for i := 0; len(logs.find(slog.LevelWarn, noStartsLeft)) == 0; i++ {
		if i == 2*remaining {
			t.Fatalf("no wait after %d invalid sessions: %+v", i, fake.Stats())
		}
		before := fake.Stats().Identifies
		fake.InvalidateSessions(false)
		err := fake.WaitFor(10*time.Second, func() bool {
			return (fake.Stats().Identifies == before+1 && fake.Connected() == 1) || len(logs.find(slog.LevelWarn, noStartsLeft)) > 0
		})
		if err != nil {
			t.Fatalf("neither identified nor waiting after invalid session %d: %+v", i+1, fake.Stats())
		}
	}
	if st := fake.Stats(); st.Identifies != remaining || st.StartsExceeded != 0 || st.IdentifiesTooFast != 0 {
		t.Fatalf("stats %+v", st)
	}
	if hs.a.Ready() {
		t.Fatal("ready without a session")
	}
}

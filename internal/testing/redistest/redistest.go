// Package redistest gives tests a real Redis server: a private redis-server
// process on a loopback port when the binary is installed, else the server
// named by $REDIS_URL. With neither, the tests that need Redis skip, and Main
// says so loudly: on the terminal (go test hides a passing package's
// output), and with CI=true by failing the package.
package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a Redis server for one test.
type Server struct {
	URL    string // redis://127.0.0.1:port/0
	Prefix string // a key prefix unique to this test
	t      testing.TB
	cmd    *exec.Cmd
	port   int
	dir    string
	extra  []string // more redis-server arguments
}

var (
	seq atomic.Int64
	// mainCalled is set by Main; New refuses to run without it, as its skips
	// would go unreported.
	mainCalled atomic.Bool
	// skipped counts the tests that skipped for want of Redis.
	skipped skips
)

// New returns a real Redis for t, stopped when t ends. With no redis-server
// on PATH and $REDIS_URL unset it skips t, and Main reports the skip. Extra
// arguments go to redis-server (e.g. "--cluster-enabled", "yes"); with
// $REDIS_URL's server instead, they are ignored (see Owned).
func New(t testing.TB, extra ...string) *Server {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("redistest: this package's TestMain must call redistest.Main(m), which reports the tests skipped for want of Redis")
		return nil
	}
	s := &Server{t: t, Prefix: fmt.Sprintf("test%d-%d", os.Getpid(), seq.Add(1)), extra: extra}
	src, u := find(osEnv)
	switch src {
	case binary:
		s.dir = t.TempDir()
		s.start()
		t.Cleanup(s.Stop)
		return s
	case url:
		s.URL = u
		return s
	}
	skipped.noRedis.Add(1)
	t.Skip("!!! SKIPPED: no Redis: no redis-server on PATH and REDIS_URL unset; install redis-server or set REDIS_URL !!!")
	return nil
}

// NewOwned is New for a test that stops and starts the server (an outage, a
// restart): it needs redis-server on PATH, as $REDIS_URL's server is not the
// test's to stop, and skips t otherwise, which Main reports.
func NewOwned(t testing.TB) *Server {
	t.Helper()
	s := New(t)
	if !s.Owned() {
		skipped.notOwned.Add(1)
		t.Skip("!!! SKIPPED: this test stops and starts Redis, which needs redis-server on PATH !!!")
	}
	return s
}

// Main runs the package's tests and exits. Call it from the TestMain of every
// package whose tests use New. When tests skipped for want of Redis, it
// prints a summary: with CI=true to stderr, failing the package; else on
// the terminal, since go test shows a passing package's output only with
// -v (stderr when there is no terminal).
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	notice, fail := verdict(skipped.load(), osEnv)
	if notice != "" {
		w := io.Writer(os.Stderr)
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil && !fail {
			defer tty.Close()
			w = tty
		}
		fmt.Fprintln(w, notice)
	}
	if fail && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// env is what the choice of server and the verdict read from the process.
type env struct {
	getenv   func(string) string
	lookPath func(string) (string, error)
}

var osEnv = env{getenv: os.Getenv, lookPath: exec.LookPath}

// source is where New finds Redis.
type source int

const (
	none   source = iota
	binary        // a private redis-server process
	url           // the server $REDIS_URL names
)

// find reports where New finds Redis, and the URL for url.
func find(e env) (source, string) {
	if _, err := e.lookPath("redis-server"); err == nil {
		return binary, ""
	}
	if u := e.getenv("REDIS_URL"); u != "" {
		return url, u
	}
	return none, ""
}

// skips counts tests skipped for want of Redis, by reason.
type skips struct {
	noRedis  atomic.Int64 // New found no Redis at all
	notOwned atomic.Int64 // NewOwned found $REDIS_URL but no redis-server
}

// skipCount is a snapshot of skips.
type skipCount struct{ noRedis, notOwned int64 }

func (s *skips) load() skipCount {
	return skipCount{noRedis: s.noRedis.Load(), notOwned: s.notOwned.Load()}
}

// verdict returns the paragraph Main prints for the skips ("" for none) and
// whether they fail the package: with CI set true.
func verdict(n skipCount, e env) (notice string, fail bool) {
	if n.noRedis == 0 && n.notOwned == 0 {
		return "", false
	}
	fail, _ = strconv.ParseBool(e.getenv("CI"))
	notice = "redistest:"
	if n.noRedis > 0 {
		notice += fmt.Sprintf(" %s skipped: no redis-server on PATH and REDIS_URL unset.", tests(n.noRedis))
	}
	if n.notOwned > 0 {
		notice += fmt.Sprintf(" %s skipped: they stop and start Redis, which needs redis-server on PATH (REDIS_URL's server is not theirs to stop).", tests(n.notOwned))
	}
	notice += " Install redis-server (apt-get install redis-server)"
	if n.noRedis > 0 {
		notice += " or set REDIS_URL=redis://host:port/0"
	}
	if fail {
		return notice + ". CI=true: a missing Redis fails the package.", true
	}
	return notice + " to run them.", false
}

// tests says "1 test" or "n tests".
func tests(n int64) string {
	if n == 1 {
		return "1 test"
	}
	return fmt.Sprintf("%d tests", n)
}

// Owned reports whether this test controls the server process (Stop/Start work).
func (s *Server) Owned() bool { return s.dir != "" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() redis.UniversalClient {
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(opt)
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills the server process (an outage).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Start starts the server again on the same port, with the data it saved.
func (s *Server) Start() {
	if s.cmd == nil {
		s.start()
	}
}

func (s *Server) start() {
	s.t.Helper()
	if s.port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.t.Fatal(err)
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	s.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", s.port)
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	s.cmd.Args = append(s.cmd.Args, s.extra...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	WaitUntilUp(s.t, "redis-server", fmt.Sprintf("127.0.0.1:%d", s.port), filepath.Join(s.dir, "redis.log"))
}

// WaitUntilUp waits up to 10 s for the redis-server (or sentinel) called
// name to answer PING at addr, failing t with its log file's content if
// it does not.
func WaitUntilUp(t testing.TB, name, addr, logfile string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logfile)
			t.Fatalf("%s did not start: %v\n%s", name, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

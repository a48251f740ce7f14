// Package redistest gives tests a real Redis server: a private redis-server
// process on a loopback port when the binary is installed, else the server
// named by $REDIS_URL. With neither, tests skip with a loud message.
package redistest

import (
	"context"
	"fmt"
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

var seq atomic.Int64

// New returns a real Redis for t, stopped when t ends. Extra arguments go
// to redis-server (e.g. "--cluster-enabled", "yes"); with $REDIS_URL's
// server instead, they are ignored (see Owned).
func New(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, Prefix: fmt.Sprintf("test%d-%d", os.Getpid(), seq.Add(1)), extra: extra}
	if _, err := exec.LookPath("redis-server"); err == nil {
		s.dir = t.TempDir()
		s.start()
		t.Cleanup(s.Stop)
		return s
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		s.URL = u
		return s
	}
	t.Skip("!!! SKIPPED: no Redis. Install redis-server (apt-get install redis-server) or set REDIS_URL; CI always has one. !!!")
	return nil
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
	opt, _ := redis.ParseURL(s.URL)
	c := redis.NewClient(opt)
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
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not start: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

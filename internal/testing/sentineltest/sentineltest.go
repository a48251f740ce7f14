// Package sentineltest gives tests a Redis Sentinel set-up of real
// redis-server processes on loopback ports: a master, one replica and three
// sentinels watching them as "mymaster". Without redis-server, tests skip
// with a loud message.
package sentineltest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// MasterName is the name the sentinels know the master by.
const MasterName = "mymaster"

// Set is a running Sentinel set-up, stopped when its test ends.
type Set struct {
	// URL reaches the set through its sentinels, as redis.url does:
	// redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/0?master=mymaster.
	URL       string
	Sentinels []string // host:port of each sentinel
	Nodes     []string // host:port of the master then the replica, as started
	t         testing.TB
}

// New starts the set and waits until the sentinels know the replica, so a
// failover can promote it.
func New(t testing.TB) *Set {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("!!! SKIPPED: no redis-server. Install it (apt-get install redis-server); CI always has one. !!!")
	}
	s := &Set{t: t}
	master, replica := freePort(t), freePort(t)
	s.start("master", master)
	s.start("replica", replica, "--replicaof", "127.0.0.1", strconv.Itoa(master))
	s.Nodes = []string{addr(master), addr(replica)}
	for i := range 3 {
		port := freePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 5000\n",
			port, dir, MasterName, master)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s.run(fmt.Sprintf("sentinel%d", i), dir, port, conf, "--sentinel")
		s.Sentinels = append(s.Sentinels, addr(port))
	}
	s.URL = "redis-sentinel://" + strings.Join(s.Sentinels, ",") + "/0?master=" + MasterName
	s.waitReplicaKnown()
	return s
}

// Failover asks a sentinel to promote the replica now (SENTINEL FAILOVER),
// retrying while the sentinels do not yet deem it fit.
func (s *Set) Failover(ctx context.Context) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer c.Close()
	var err error
	for range 50 {
		if err = c.Failover(ctx, MasterName).Err(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("SENTINEL FAILOVER: %w", err)
}

// Master returns the master's address as the first sentinel sees it.
func (s *Set) Master(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0]})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// Client returns a plain client of one node (an address in Nodes), closed
// when the test ends.
func (s *Set) Client(node string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: node})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// waitReplicaKnown waits (up to 20 s) until every sentinel lists the
// replica as connected and healthy, and knows the other sentinels.
func (s *Set) waitReplicaKnown() {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, sen := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sen})
		for !s.ready(c) {
			if time.Now().After(deadline) {
				c.Close()
				s.t.Fatalf("sentinel %s did not find the replica within 20 s", sen)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
}

func (s *Set) ready(c *redis.SentinelClient) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	replicas, err := c.Replicas(ctx, MasterName).Result()
	if err != nil || len(replicas) != 1 {
		return false
	}
	if flags := replicas[0]["flags"]; flags != "slave" || replicas[0]["master-link-status"] != "ok" {
		return false
	}
	others, err := c.Sentinels(ctx, MasterName).Result()
	return err == nil && len(others) == len(s.Sentinels)-1
}

// start runs a redis-server named name on port, in-memory (no AOF, no
// snapshots: a failover is what the tests exercise), with extra arguments.
func (s *Set) start(name string, port int, extra ...string) {
	dir := s.t.TempDir()
	s.run(name, dir, port, "", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no"}, extra...)...)
}

// run starts redis-server (conf first when not empty), logging to dir,
// and waits until it answers on port.
func (s *Set) run(name, dir string, port int, conf string, args ...string) {
	s.t.Helper()
	var argv []string
	if conf != "" {
		argv = append(argv, conf)
	}
	logfile := filepath.Join(dir, name+".log")
	argv = append(argv, append(args, "--daemonize", "no", "--logfile", logfile)...)
	cmd := exec.Command("redis-server", argv...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if s.t.Failed() {
			if b, err := os.ReadFile(logfile); err == nil {
				s.t.Logf("%s log:\n%s", name, tail(string(b), 40))
			}
		}
	})
	redistest.WaitUntilUp(s.t, name, addr(port), logfile)
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// freePort returns a loopback port free at the time of asking.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

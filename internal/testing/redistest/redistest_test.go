package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestFind(t *testing.T) {
	installed := func(string) (string, error) { return "/usr/bin/redis-server", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	vars := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, c := range []struct {
		name    string
		e       env
		want    source
		wantURL string
	}{
		{"binary first", env{vars(map[string]string{"REDIS_URL": "redis://r:6379/0"}), installed}, binary, ""},
		{"else REDIS_URL", env{vars(map[string]string{"REDIS_URL": "redis://r:6379/0"}), missing}, url, "redis://r:6379/0"},
		{"neither", env{vars(nil), missing}, none, ""},
	} {
		if got, u := find(c.e); got != c.want || u != c.wantURL {
			t.Errorf("%s: find = %v %q, want %v %q", c.name, got, u, c.want, c.wantURL)
		}
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		name     string
		n        skipCount
		vars     map[string]string
		fail     bool
		contains []string // in the notice; none means no notice
	}{
		{"redis present", skipCount{}, map[string]string{"CI": "true"}, false, nil},
		{"no redis, CI", skipCount{noRedis: 3}, map[string]string{"CI": "true"}, true,
			[]string{"3 tests skipped: no redis-server on PATH and REDIS_URL unset", "set REDIS_URL", "CI=true: a missing Redis fails"}},
		{"no redis, CI=1", skipCount{noRedis: 1}, map[string]string{"CI": "1"}, true,
			[]string{"1 test skipped", "CI=true"}},
		{"no redis, no CI", skipCount{noRedis: 2}, map[string]string{"CI": "false"}, false,
			[]string{"2 tests skipped", "Install redis-server", "to run them"}},
		{"REDIS_URL but no redis-server", skipCount{notOwned: 1}, nil, false,
			[]string{"1 test skipped: they stop and start Redis, which needs redis-server on PATH"}},
	} {
		notice, fail := verdict(c.n, env{getenv: func(k string) string { return c.vars[k] }})
		if fail != c.fail {
			t.Errorf("%s: fail = %v, want %v", c.name, fail, c.fail)
		}
		if len(c.contains) == 0 && notice != "" {
			t.Errorf("%s: notice %q, want none", c.name, notice)
		}
		for _, s := range c.contains {
			if !strings.Contains(notice, s) {
				t.Errorf("%s: notice %q lacks %q", c.name, notice, s)
			}
		}
		if c.n.notOwned > 0 && c.n.noRedis == 0 && strings.Contains(notice, "set REDIS_URL") {
			t.Errorf("%s: notice %q suggests REDIS_URL, which these tests can't use", c.name, notice)
		}
	}
}

// childEnv names what TestChildProcess does in a child process of
// TestMainReportsSkips; unset, it does nothing.
const childEnv = "ARKBOT_REDISTEST_CHILD"

// TestChildProcess asks for Redis as a package's test would, in a child
// process whose environment TestMainReportsSkips sets.
func TestChildProcess(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "new":
		New(t)
	case "owned":
		NewOwned(t)
	}
}

// TestMainReportsSkips runs this package's test binary with PATH lacking
// redis-server and checks what Main prints and how it exits.
func TestMainReportsSkips(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the test binary as a child process")
	}
	emptyDir := t.TempDir()
	for _, c := range []struct {
		name, child string
		vars        []string
		fail        bool
		notice      string // in the output; "" means no notice
	}{
		{"no redis, CI", "new", []string{"CI=true"}, true, "1 test skipped: no redis-server on PATH and REDIS_URL unset"},
		{"no redis", "new", nil, false, "Install redis-server (apt-get install redis-server) or set REDIS_URL"},
		{"REDIS_URL", "new", []string{"REDIS_URL=redis://127.0.0.1:1/0", "CI=true"}, false, ""},
		{"REDIS_URL, owned", "owned", []string{"REDIS_URL=redis://127.0.0.1:1/0"}, false, "they stop and start Redis"},
		{"REDIS_URL, owned, CI", "owned", []string{"REDIS_URL=redis://127.0.0.1:1/0", "CI=true"}, true, "they stop and start Redis"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
			// A session of its own: no terminal, so the notice goes to
			// the output read here, not to the terminal running the tests.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.Env = append(without(os.Environ(), "PATH", "REDIS_URL", "CI", childEnv),
				append([]string{"PATH=" + emptyDir, childEnv + "=" + c.child, "GORACE=atexit_sleep_ms=0"}, c.vars...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("run the child: %v", err)
			}
			if failed := err != nil; failed != c.fail {
				t.Errorf("child failed = %v, want %v\n%s", failed, c.fail, out)
			}
			if c.notice == "" && strings.Contains(string(out), "redistest:") {
				t.Errorf("child printed a notice, want none:\n%s", out)
			}
			if c.notice != "" && !strings.Contains(string(out), c.notice) {
				t.Errorf("child output lacks %q:\n%s", c.notice, out)
			}
		})
	}
}

// without returns environ less the variables named.
func without(environ []string, names ...string) []string {
	var kept []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			kept = append(kept, kv)
		}
	}
	return kept
}

// fatalTB records Fatal instead of ending the test.
type fatalTB struct {
	testing.TB
	fatal string
}

func (f *fatalTB) Fatal(args ...any) { f.fatal = strings.TrimSpace(fmt.Sprintln(args...)) }

func TestNewNeedsMain(t *testing.T) {
	mainCalled.Store(false)
	defer mainCalled.Store(true)
	f := &fatalTB{TB: t}
	if s := New(f); s != nil || !strings.Contains(f.fatal, "TestMain must call redistest.Main") {
		t.Errorf("New without Main = %v, fatal %q", s, f.fatal)
	}
}

func TestNew(t *testing.T) {
	rs := New(t)
	if err := rs.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

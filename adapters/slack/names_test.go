package slack

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// A new user's name comes from users.info, which can be slow (or wait for
// the Tier-4 budget): the answer's sign of life doesn't wait for it, and the
// name still reaches the model's system prompt.
func TestSignOfLifeDoesNotWaitForTheUsersName(t *testing.T) {
	engine, ark := engineFor(t)
	const lookup = 1500 * time.Millisecond
	var lookedUp atomic.Int64 // when users.info answered, UnixNano
	fs := slacktest.New(slacktest.Options{OnCall: func(c slacktest.Call) {
		if c.Method == "users.info" { // the fake answers when this returns
			time.Sleep(lookup)
			lookedUp.Store(time.Now().UnixNano())
		}
	}})
	t.Cleanup(fs.Close)
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	start(t, fs, engine, nil)
	e := &env{t: t, fs: fs}

	ts := fs.NextTS()
	sent := time.Now()
	e.send(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@UBOT> who am I?", ts, ""))
	var sign time.Time
	e.waitFor("a sign of life", lookup, func() bool {
		for _, c := range fs.Calls("assistant.threads.setStatus", "chat.postMessage") {
			sign = c.Time
			return true
		}
		return false
	})
	if d := sign.Sub(sent); d >= lookup/2 {
		t.Errorf("sign of life %v after the message: it waited for users.info", d)
	}
	if got := answers(t, fs, "C1", ts, 1)[0].Visible(); got != "take 1 on who am I?" {
		t.Fatalf("answer %q", got)
	}
	reqs := ark.Requests()
	if len(reqs) != 1 || !strings.Contains(reqs[0].Messages[0].Text, "talking with Ann.") {
		t.Fatalf("system prompt without the user's name: %+v", reqs)
	}
	if at := lookedUp.Load(); at == 0 || sign.UnixNano() >= at {
		t.Errorf("sign of life at %v, users.info answered at %v", sign, time.Unix(0, at))
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// jsonKeys counts every key of one JSON object, duplicates included
// (encoding/json keeps only the last of a repeated key).
func jsonKeys(t *testing.T, line string) map[string]int {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	keys := map[string]int{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		keys[k.(string)]++
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	return keys
}

// With JSON logs, every line of a Slack answer, from the adapter and from
// the engine, has one msg key (the message ID is message_id) and at most
// one adapter key.
func TestJSONLogKeysOnce(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{PingInterval: time.Second})
	defer fs.Close()
	fs.AddUser(slacktest.User{ID: "U1", Name: "ann", RealName: "Ann Example", DisplayName: "Ann"})
	t.Setenv("T_SLACK_BOT", fs.BotToken())
	t.Setenv("T_SLACK_APP", fs.AppToken())
	addr := freeAddr(t)
	cfg := writeConfig(t, ark.URL, rs.URL, fmt.Sprintf(`
log: {level: debug, format: json}
server: {addr: %s, shutdown_timeout: 1s}
slack: {bot_token: "${T_SLACK_BOT}", app_token: "${T_SLACK_APP}", api_url: %s, edit_interval: 10ms}
`, addr, fs.APIURL()))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"-config", cfg}, strings.NewReader(""), &stdout, &stderr) }()
	waitUntil(t, "/readyz", 15*time.Second, func() bool { code, _ := get(t, "http://"+addr+"/readyz"); return code == 200 })
	ts := fs.NextTS()
	if _, err := fs.SendEvent(slacktest.EventOptions{}, slacktest.AppMention("C1", "U1", "<@"+fs.BotUserID()+"> hello", ts, "")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the answer's log line", 15*time.Second, func() bool { return strings.Contains(stderr.String(), `"msg":"answered"`) })
	stop()
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}

	var answered, tagged int
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		keys := jsonKeys(t, line)
		if keys["msg"] != 1 || keys["adapter"] > 1 {
			t.Errorf("msg ×%d, adapter ×%d in %s", keys["msg"], keys["adapter"], line)
		}
		if keys["adapter"] == 1 {
			tagged++
		}
		if strings.Contains(line, `"msg":"answered"`) {
			answered++
			if keys["message_id"] != 1 {
				t.Errorf("the answer's line lacks message_id: %s", line)
			}
		}
	}
	if answered != 1 || tagged == 0 {
		t.Errorf("%d answered lines, %d adapter lines:\n%s", answered, tagged, stderr.String())
	}
}

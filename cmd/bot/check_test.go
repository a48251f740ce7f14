package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/config"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// checkConfig writes a config with both messengers on, tokens from the
// environment.
func checkConfig(t *testing.T, ark *arktest.Server, redisURL string, fs *slacktest.Server, fd *discordtest.Server, slackBot, discordToken string) string {
	t.Helper()
	t.Setenv("T_SLACK_BOT", slackBot)
	t.Setenv("T_SLACK_APP", fs.AppToken())
	t.Setenv("T_DISCORD", discordToken)
	return writeConfig(t, ark.URL, redisURL, fmt.Sprintf(`
slack:
  bot_token: ${T_SLACK_BOT}
  app_token: ${T_SLACK_APP}
  api_url: %s
discord:
  token: ${T_DISCORD}
  api_url: %s
`, fs.APIURL(), fd.APIURL()))
}

func runCheck(t *testing.T, cfg string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-check", "-config", cfg}, strings.NewReader(""), &out, &errb)
	if errb.Len() > 0 {
		t.Logf("stderr: %s", errb.String())
	}
	return out.String(), code
}

// -check tries each registered model on Ark, Redis and both messengers'
// tokens: a model not activated is named with what to do, the rest pass,
// and no secret is printed.
func TestCheckTriesArkModelsRedisAndTokens(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	ark.SetHandler(func(r arktest.Request) arktest.Response {
		if r.Model == "deepseek-r1-250528" {
			return arktest.Response{Status: 404, ErrorCode: "ModelNotOpen",
				ErrorMessage: "Your account has not activated the model deepseek-r1. Please activate the model service in the Ark Console. Request id: 0217-check"}
		}
		return arktest.Response{Content: []string{"ok"}}
	})
	fs := slacktest.New(slacktest.Options{})
	defer fs.Close()
	fd := discordtest.New()
	defer fd.Close()

	out, code := runCheck(t, checkConfig(t, ark, rs.URL, fs, fd, fs.BotToken(), fd.Token()))
	t.Log("\n" + out)
	if code != 1 {
		t.Errorf("exit %d with a model not activated, want 1", code)
	}
	for _, want := range []string{
		"ark: " + ark.URL + "/chat/completions",
		"  ok    doubao (doubao-seed-1-6-250615): answers, first token in ",
		"  FAIL  deepseek-r1 (deepseek-r1-250528): ",
		"开通管理",
		"request id: 0217-check",
		"  ok    redis://127.0.0.1:",
		"  ok    tokens: team ", "Socket Mode connections allowed",
		"  ok    token: bot arkbot", "Message Content intent on",
		"1 check(s) failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, secret := range []string{testKey, fs.BotToken(), fs.AppToken(), fd.Token()} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret was printed: %q", secret)
		}
	}
	reqs := ark.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests to Ark, want one per model (a model not activated is not retried)", len(reqs))
	}
	for _, r := range reqs {
		if mt, _ := r.Body["max_tokens"].(float64); mt != 16 || r.Body["stream"] != true {
			t.Errorf("%s: max_tokens %v, stream %v: want a small streamed request", r.Model, r.Body["max_tokens"], r.Body["stream"])
		}
	}
}

// Each failure says what to fix: a refused Slack token, the Discord
// application's Message Content intent switched off, Redis unreachable.
func TestCheckNamesWhatToFix(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{})
	defer fs.Close()
	fd := discordtest.New(discordtest.WithApplicationFlags(0))
	defer fd.Close()

	out, code := runCheck(t, checkConfig(t, ark, "redis://:hunter2-password@127.0.0.1:1/0", fs, fd, "xoxb-not-the-token", fd.Token()))
	t.Log("\n" + out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"  ok    doubao (doubao-seed-1-6-250615)",
		"  ok    deepseek-r1 (deepseek-r1-250528)",
		"  FAIL  redis://127.0.0.1:1/0: PING: ", "is Redis running and is redis.url right?",
		"  FAIL  tokens: bot token: auth.test: invalid_auth: use the Bot User OAuth Token (xoxb-…)",
		"  FAIL  token: bot arkbot", "Message Content intent is off", "Privileged Gateway Intents",
		"3 check(s) failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Error("the Redis password was printed")
	}
}

// With everything right, -check passes and exits 0.
func TestCheckPasses(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	fs := slacktest.New(slacktest.Options{})
	defer fs.Close()
	fd := discordtest.New()
	defer fd.Close()
	out, code := runCheck(t, checkConfig(t, ark, rs.URL, fs, fd, fs.BotToken(), fd.Token()))
	if code != 0 || !strings.Contains(out, "all checks passed") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// With Ark's address black-holed, -check fails each model after the
// connect timeout (retried once) and names the address and the timeout.
func TestCheckNamesUnreachableArk(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, "http://127.0.0.1:9/api/v3", "redis://127.0.0.1:1/0", ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Ark.ConnectTimeout = config.Duration(50 * time.Millisecond)
	var dials atomic.Int64
	hole := func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var out bytes.Buffer
	failed := checkLive(context.Background(), cfg, &out, arkclient.WithDialContext(hole))
	t.Log("\n" + out.String())
	if failed != 3 {
		t.Errorf("%d failed, want both models and Redis", failed)
	}
	for _, want := range []string{
		"ark: http://127.0.0.1:9/api/v3/chat/completions (connect timeout 50ms)",
		"  FAIL  doubao (doubao-seed-1-6-250615): I can't connect to Ark at 127.0.0.1:9: no connection within 50ms. ",
		"  FAIL  deepseek-r1 (deepseek-r1-250528): I can't connect to Ark at 127.0.0.1:9: no connection within 50ms. ",
		"ark.base_url", "[ConnectFailed: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "cancelled") {
		t.Error("the check says the request was cancelled")
	}
	if n := dials.Load(); n != 4 {
		t.Errorf("%d connection attempts for 2 models, want 4 (one retry each)", n)
	}
}

// -check-config refuses a half-configured Slack (an app token without a
// bot token, as an .env with only SLACK_APP_TOKEN filled in gives), naming
// the key and the variable to set, without the token.
func TestCheckConfigRefusesHalfConfiguredSlack(t *testing.T) {
	t.Setenv("SLACK_BOT_TOKEN", "")
	t.Setenv("SLACK_APP_TOKEN", "xapp-1-A1-secret-part")
	cfg := writeConfig(t, "https://ark.example/api/v3", "", `
slack:
  bot_token: ${SLACK_BOT_TOKEN:-}
  app_token: ${SLACK_APP_TOKEN:-}
`)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-check-config", "-config", cfg}, strings.NewReader(""), &out, &errb)
	if code == 0 {
		t.Fatalf("half-configured Slack accepted:\n%s", out.String())
	}
	for _, want := range []string{"slack.bot_token (line 23): is empty while slack.app_token is set", "set the environment variable SLACK_BOT_TOKEN", "or leave SLACK_APP_TOKEN empty too"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("error lacks %q:\n%s", want, errb.String())
		}
	}
	if strings.Contains(out.String()+errb.String(), "secret-part") {
		t.Error("the app token was printed")
	}
}

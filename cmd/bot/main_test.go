package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

const testKey = "ark-secret-key-0123456789"

// writeConfig writes a config for a fake Ark and returns its path.
func writeConfig(t *testing.T, arkURL, redisURL, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
ark:
  base_url: %s
  api_key: ${TEST_ARK_KEY}
  retry_base: 10ms
  retry_max: 50ms
models:
  - name: doubao
    id: doubao-seed-1-6-250615
    thinking: disabled
    vision: true
    context_window: 256000
    max_tokens: 4096
  - name: deepseek-r1
    id: deepseek-r1-250528
    context_window: 64000
    max_tokens: 16000
redis:
  url: %q
  prefix: %s
%s`, arkURL, redisURL, "t"+strings.ReplaceAll(t.Name(), "/", "-"), extra)
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_ARK_KEY", testKey)
	return p
}

func runBot(t *testing.T, cfgPath, input string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), []string{"-console", "-config", cfgPath}, strings.NewReader(input), &out, &errb)
	return out.String(), errb.String(), code
}

// The piped example: three answers, history carried, /model switch.
func TestConsolePipedConversation(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	cfg := writeConfig(t, ark.URL+"/", "", "")

	out, errs, code := runBot(t, cfg, "hello\n/model deepseek-r1\nwhat did I just say?\n")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	reqs := ark.Requests()
	if len(reqs) != 2 {
		t.Fatalf("want 2 Ark requests, got %d\n%s", len(reqs), out)
	}
	if reqs[0].Model != "doubao-seed-1-6-250615" || reqs[0].Thinking != "disabled" {
		t.Errorf("first request: model %q thinking %q", reqs[0].Model, reqs[0].Thinking)
	}
	if reqs[1].Model != "deepseek-r1-250528" || reqs[1].Thinking != "" {
		t.Errorf("after /model: model %q thinking %q", reqs[1].Model, reqs[1].Thinking)
	}
	msgs := reqs[1].Messages
	if len(msgs) != 4 || msgs[1].Role != "user" || msgs[1].Text != "hello" || msgs[2].Role != "assistant" || !strings.Contains(msgs[2].Text, "hello") {
		t.Errorf("second request did not carry the first exchange: %+v", msgs)
	}
	for _, want := range []string{"You said: hello", "deepseek-r1", "You said: what did I just say?"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errs, testKey) {
		t.Error("the API key leaked into the output")
	}
	if !strings.Contains(errs, "NOT persisted") {
		t.Errorf("no warning about the embedded Redis:\n%s", errs)
	}
}

// With a real Redis, a second run of the bot remembers the first.
func TestConsoleHistorySurvivesRestart(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	cfg := writeConfig(t, ark.URL+"/chat/completions#", rs.URL, "")

	if out, errs, code := runBot(t, cfg, "remember the word pineapple\n"); code != 0 {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errs)
	}
	if out, errs, code := runBot(t, cfg, "which word?\n"); code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errs)
	}
	reqs := ark.Requests()
	if len(reqs) != 2 {
		t.Fatalf("want 2 requests, got %d", len(reqs))
	}
	if got := reqs[1].Messages; len(got) != 4 || got[1].Text != "remember the word pineapple" {
		t.Fatalf("the restarted bot forgot: %+v", got)
	}
}

func TestConsoleShowsArkErrorsInPlainWords(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	ark.Enqueue(arktest.Response{Status: 404, ErrorCode: "ModelNotOpen", ErrorMessage: "Your account has not activated the model. Request id: 0217"})
	cfg := writeConfig(t, ark.URL, "", "")
	out, _, code := runBot(t, cfg, "hi\n")
	if code != 0 || !strings.Contains(out, "开通管理") {
		t.Fatalf("exit %d; want the 开通管理 hint:\n%s", code, out)
	}
}

func TestCheckConfigNamesTheBadKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("ark:\n  api_key: x\n  timeout: 3s\nmodels:\n  - name: a\n    id: b\n    max_tokens: lots\n"), 0o600)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-check-config", "-config", p}, strings.NewReader(""), &out, &errb)
	if code == 0 {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"ark.timeout (line 3): unknown key", "models[0].max_tokens (line 7)", "whole number"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("error lacks %q:\n%s", want, errb.String())
		}
	}
}

// A secret echoed back by an API must never reach the logs or the chat.
func TestSecretsNeverPrinted(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	ark.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError", ErrorMessage: "upstream rejected Bearer " + testKey})
	ark.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError", ErrorMessage: "key " + testKey + " failed"})
	ark.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError", ErrorMessage: "again " + testKey})
	ark.Enqueue(arktest.Response{Status: 500, ErrorCode: "InternalServiceError", ErrorMessage: "last " + testKey})
	cfg := writeConfig(t, ark.URL, "", "log:\n  level: debug\n  format: json\n")
	out, errs, code := runBot(t, cfg, "hi\n/usage\nhello\n")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out+errs, testKey) {
		t.Fatalf("secret printed:\n%s\n%s", out, errs)
	}
	if !strings.Contains(out, "temporary") && !strings.Contains(out, "try again") {
		t.Errorf("the user was not told about the failure:\n%s", out)
	}
}

// A stream cut mid-answer keeps its text and says so once.
func TestConsoleCutStreamSaysSoOnce(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	ark.Enqueue(arktest.Response{Content: []string{"The start ", "of it ", "and more"}, CutAfter: 2})
	cfg := writeConfig(t, ark.URL, "", "")
	out, _, code := runBot(t, cfg, "tell me\n")
	if code != 0 || !strings.Contains(out, "The start of it") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if n := strings.Count(strings.ToLower(out), "interrupted"); n != 1 {
		t.Errorf("the interruption is told %d times:\n%s", n, out)
	}
}

// The console's commands speak of a terminal conversation, not of
// channels and threads, and /help names /quit.
func TestConsoleCommandsSpeakOfTheConsole(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	cfg := writeConfig(t, ark.URL, "", "")
	out, errs, code := runBot(t, cfg, "/help\n/model deepseek-r1\n/model\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"`/quit`", "Ctrl-C", "This conversation now uses **deepseek-r1**", "chosen for this conversation"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if lower := strings.ToLower(out); strings.Contains(lower, "channel") || strings.Contains(lower, "thread") {
		t.Errorf("the console speaks of channels or threads:\n%s", out)
	}
}

// Several people on one Redis each have their console conversation.
func TestConsoleConversationIsPerUser(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	ada := writeConfig(t, ark.URL, rs.URL, "console:\n  user: ada\n")
	bob := writeConfig(t, ark.URL, rs.URL, "console:\n  user: bob\n")
	for _, r := range []struct{ cfg, input string }{{ada, "remember the word pineapple\n"}, {bob, "which word?\n"}, {ada, "and now?\n"}} {
		if out, errs, code := runBot(t, r.cfg, r.input); code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
	}
	reqs := ark.Requests()
	if len(reqs) != 3 {
		t.Fatalf("want 3 requests, got %d", len(reqs))
	}
	for _, m := range reqs[1].Messages {
		if strings.Contains(m.Text, "pineapple") {
			t.Errorf("bob sees ada's conversation: %+v", reqs[1].Messages)
		}
	}
	if got := reqs[2].Messages; len(got) != 4 || got[1].Text != "remember the word pineapple" {
		t.Errorf("ada's conversation was not kept: %+v", got)
	}
}

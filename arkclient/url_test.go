package arkclient

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

func TestResolveURL(t *testing.T) {
	const want = "https://ark.cn-beijing.volces.com/api/v3/chat/completions"
	ok := []struct{ in, want string }{
		{"https://ark.cn-beijing.volces.com/api/v3", want},
		{"https://ark.cn-beijing.volces.com/api/v3/", want},
		{"https://ark.cn-beijing.volces.com/api/v3/chat/completions#", want},
		{"https://ark.cn-beijing.volces.com/api/v3/chat/completions", want},
		{"https://ark.cn-beijing.volces.com/api/v3/chat/completions/", want},
		{"https://api.example.com/chat/completions", "https://api.example.com/chat/completions"},
		{"  https://ark.cn-beijing.volces.com/api/v3//  ", want},
		{"https://ark.ap-southeast.bytepluses.com/api/v3", "https://ark.ap-southeast.bytepluses.com/api/v3/chat/completions"},
		{"https://api.example.com", "https://api.example.com/v1/chat/completions"},
		{"https://api.example.com/", "https://api.example.com/v1/chat/completions"},
		{"http://127.0.0.1:8080/openai", "http://127.0.0.1:8080/openai/v1/chat/completions"},
		{"https://api.example.com/v12/", "https://api.example.com/v12/chat/completions"},
		{"https://api.example.com/v1/proxy", "https://api.example.com/v1/proxy/chat/completions"},
		{"https://api.example.com/version", "https://api.example.com/version/v1/chat/completions"},
		{"https://api.example.com/custom/path#", "https://api.example.com/custom/path"},
		{"https://api.example.com/x/chat?api-version=2#", "https://api.example.com/x/chat?api-version=2"},
	}
	for _, c := range ok {
		got, err := ResolveURL(c.in)
		if err != nil || got != c.want {
			t.Errorf("ResolveURL(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, problem string }{
		{"", "empty"},
		{"   ", "empty"},
		{"#", "empty"},
		{"ark.cn-beijing.volces.com/api/v3", "no scheme"},
		{"ftp://ark.cn-beijing.volces.com/api/v3", "scheme"},
		{"https:///api/v3", "no host"},
		{"https://", "no host"},
		{"https://user:secret@ark.example.com/api/v3", "credentials"},
		{"https://ark.example.com/api/v3?x=1", "query"},
		{"https://ark.example.com/api#v3", `"#"`},
		{"https://ark.example.com/api/v3##", `"#"`},
		{"https://ark.example.com/%zz", "not a valid URL"},
		{"mailto:ops@example.com", "scheme"},
	}
	for _, c := range bad {
		got, err := ResolveURL(c.in)
		if err == nil || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("ResolveURL(%q) = %q, %v; want an error about %s", c.in, got, err, c.problem)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error repeats credentials: %v", err)
		}
	}
}

// TestAddressFormsReachChatPath posts through each address form and checks
// the path the server saw.
func TestAddressFormsReachChatPath(t *testing.T) {
	srv := arktest.New(arktest.WithAPIKey(testKey))
	defer srv.Close()
	for _, addr := range []string{srv.URL, srv.URL + "/", srv.URL + "/chat/completions#", srv.URL + "/chat/completions"} {
		c := newClient(t, srv, addr)
		text, _, err := collect(t, c, Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}})
		if err != nil || text != "You said: hi" {
			t.Errorf("%s: %q, %v", addr, text, err)
		}
	}
	for i, r := range srv.Requests() {
		if r.Path != arktest.ChatPath {
			t.Errorf("request %d went to %s", i, r.Path)
		}
	}
	if n := len(srv.Requests()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}

	// A bare host gets /v1, which the fake (like Ark) does not serve.
	u, _ := url.Parse(srv.URL)
	c := newClient(t, srv, u.Scheme+"://"+u.Host)
	_, err := c.Stream(context.Background(), Request{Model: "m"})
	e := asError(t, err)
	if e.Status != 404 || e.Code != "NotFound" || e.Retryable {
		t.Errorf("bare host: %v", e)
	}
	if p := srv.Requests()[4].Path; p != "/v1/chat/completions" {
		t.Errorf("bare host hit %s", p)
	}
}

// The full URL pasted without its "#" is used as is, with a notice in the
// log; the other forms log none.
func TestFullURLWithoutHashLogsNotice(t *testing.T) {
	for addr, notice := range map[string]bool{
		"https://ark.cn-beijing.volces.com/api/v3/chat/completions":  true,
		"https://ark.cn-beijing.volces.com/api/v3/chat/completions#": false,
		"https://ark.cn-beijing.volces.com/api/v3/":                  false,
	} {
		var buf bytes.Buffer
		c, err := New(addr, testKey, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
		if err != nil || c.URL() != "https://ark.cn-beijing.volces.com/api/v3/chat/completions" {
			t.Fatalf("%s: %v, %v", addr, c, err)
		}
		if got := strings.Contains(buf.String(), "posts to it as is (end it with # to say so)"); got != notice {
			t.Errorf("%s: notice %v, want %v: %q", addr, got, notice, buf.String())
		}
	}
}

func FuzzResolveURL(f *testing.F) {
	for _, s := range []string{
		"https://ark.cn-beijing.volces.com/api/v3", "https://ark.cn-beijing.volces.com/api/v3/",
		"https://ark.cn-beijing.volces.com/api/v3/chat/completions#", "https://api.example.com",
		"http://[::1]:80/v2", "https://h/a?b#", "ftp://x", "", "#", "https://h/%41/v1/", "https://h:99999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ResolveURL(in)
		if err != nil {
			return
		}
		trimmed := strings.TrimSpace(in)
		if exact, ok := strings.CutSuffix(trimmed, "#"); ok {
			if got != exact {
				t.Fatalf("ResolveURL(%q) = %q, want the exact %q", in, got, exact)
			}
		} else if !strings.HasSuffix(got, "/chat/completions") {
			t.Fatalf("ResolveURL(%q) = %q, not a chat completions URL", in, got)
		}
		u, err := url.Parse(got)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("ResolveURL(%q) = %q, which does not parse as an http(s) URL: %v", in, got, err)
		}
	})
}

package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/config"
)

// botScopes are the scopes slack-app-manifest.yaml asks for, with what the
// bot can't do without each; the first two it can't work without at all.
var botScopes = []struct{ scope, without string }{
	{"app_mentions:read", "it never hears @mentions"},
	{"chat:write", "it can't answer"},
	{"channels:history", "thread follow-ups in public channels go unheard"},
	{"groups:history", "thread follow-ups in private channels go unheard"},
	{"im:history", "direct messages go unheard"},
	{"mpim:history", "group direct messages go unheard"},
	{"commands", "slash commands don't reach it"},
	{"users:read", "the system prompt has user IDs, not names"},
	{"files:read", "attached images and files are ignored"},
	{"files:write", "/image can't post pictures"},
	{"assistant:write", "no “is thinking…” status, a placeholder message instead"},
}

// Check verifies cfg's tokens against the Slack Web API without connecting:
// auth.test for the bot token (and its scopes, which Slack lists in the
// X-OAuth-Scopes header) and, in Socket Mode, apps.connections.open for the
// app token. It returns a line describing the bot, or an error saying what
// to fix. A signing secret (HTTP mode) can only be checked when Slack sends
// its first request.
func Check(ctx context.Context, cfg config.Slack) (string, error) {
	scopes := &scopeRecorder{next: http.DefaultTransport}
	client := &http.Client{Timeout: 15 * time.Second, Transport: scopes}
	opts := []slack.Option{slack.OptionAPIURL(apiURL(cfg.APIURL)), slack.OptionHTTPClient(client)}
	if cfg.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(cfg.AppToken.Value()))
	}
	api := slack.New(cfg.BotToken.Value(), opts...)
	who, err := api.AuthTestContext(ctx)
	if err != nil {
		return "", fmt.Errorf("bot token: auth.test: %w%s", err, hint(err, "use the Bot User OAuth Token (xoxb-…) of the installed app"))
	}
	line := fmt.Sprintf("team %s (%s), bot user %s", who.Team, who.TeamID, who.UserID)
	missing, fatal := missingScopes(scopes.get())
	if fatal {
		return "", fmt.Errorf("%s; the bot token lacks scopes: %s: add them (slack-app-manifest.yaml lists them all) and reinstall the app", line, missing)
	}
	if missing != "" {
		line += "; missing scopes (add them and reinstall the app): " + missing
	}
	if cfg.AppToken == "" {
		return line + "; HTTP Events API (the signing secret is checked on Slack's first request)", nil
	}
	if _, _, err := api.StartSocketModeContext(ctx); err != nil {
		return "", fmt.Errorf("%s; app token: apps.connections.open: %w%s", line, err,
			hint(err, "create an app-level token (xapp-…) with connections:write and enable Socket Mode"))
	}
	return line + "; Socket Mode connections allowed", nil
}

// missingScopes lists the bot scopes not in granted (Slack's
// comma-separated X-OAuth-Scopes) with what each costs; fatal when the bot
// can't work at all. Without the header (a proxy may drop it) nothing is
// reported.
func missingScopes(granted string) (missing string, fatal bool) {
	if granted == "" {
		return "", false
	}
	have := map[string]bool{}
	for _, s := range strings.Split(granted, ",") {
		have[strings.TrimSpace(s)] = true
	}
	var out []string
	for i, s := range botScopes {
		if !have[s.scope] {
			out = append(out, s.scope+" ("+s.without+")")
			fatal = fatal || i < 2
		}
	}
	return strings.Join(out, ", "), fatal
}

// scopeRecorder keeps the X-OAuth-Scopes header of the first answer that
// has one: auth.test's, for the bot token.
type scopeRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	scopes string
}

func (s *scopeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err == nil {
		if v := resp.Header.Get("X-OAuth-Scopes"); v != "" {
			s.mu.Lock()
			if s.scopes == "" {
				s.scopes = v
			}
			s.mu.Unlock()
		}
	}
	return resp, err
}

func (s *scopeRecorder) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scopes
}

// hint adds what to do when Slack refused the call itself.
func hint(err error, todo string) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return ": " + todo
	}
	return ""
}

// apiURL is slack.api_url as slack-go wants it: Slack's own when empty,
// ending in a slash.
func apiURL(u string) string {
	if u == "" {
		return slack.APIURL
	}
	if !strings.HasSuffix(u, "/") {
		return u + "/"
	}
	return u
}

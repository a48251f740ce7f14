package slack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/config"
)

// Check verifies cfg's tokens against the Slack Web API without connecting:
// auth.test for the bot token and, in Socket Mode, apps.connections.open
// for the app token. It returns a line describing the bot, or an error
// saying what to fix. A signing secret (HTTP mode) can only be checked when
// Slack sends its first request.
func Check(ctx context.Context, cfg config.Slack) (string, error) {
	client := &http.Client{Timeout: 15 * time.Second}
	opts := []slack.Option{slack.OptionAPIURL(withSlash(cfg.APIURL)), slack.OptionHTTPClient(client)}
	if cfg.AppToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(cfg.AppToken.Value()))
	}
	api := slack.New(cfg.BotToken.Value(), opts...)
	who, err := api.AuthTestContext(ctx)
	if err != nil {
		return "", fmt.Errorf("bot token: auth.test: %w%s", err, hint(err, "use the Bot User OAuth Token (xoxb-…) of the installed app"))
	}
	line := fmt.Sprintf("team %s (%s), bot user %s", who.Team, who.TeamID, who.UserID)
	if cfg.AppToken == "" {
		return line + "; HTTP Events API (the signing secret is checked on Slack's first request)", nil
	}
	if _, _, err := api.StartSocketModeContext(ctx); err != nil {
		return "", fmt.Errorf("%s; app token: apps.connections.open: %w%s", line, err,
			hint(err, "create an app-level token (xapp-…) with connections:write and enable Socket Mode"))
	}
	return line + "; Socket Mode connections allowed", nil
}

// hint adds what to do when Slack refused the call itself.
func hint(err error, todo string) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return ": " + todo
	}
	return ""
}

func withSlash(u string) string {
	if u == "" {
		return slack.APIURL
	}
	if u[len(u)-1] != '/' {
		return u + "/"
	}
	return u
}

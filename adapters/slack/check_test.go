package slack

import (
	"context"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/testing/slacktest"
)

// TestCheck: the tokens are tried, and the bot token's scopes (Slack's
// X-OAuth-Scopes) are compared with what the bot uses: a missing optional
// scope is named with its cost, a missing essential one fails the check.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scopes  []string
		botTok  string
		want    string
		wantErr string
	}{
		{name: "all scopes", want: "team fake (T0001), bot user UBOT; Socket Mode connections allowed"},
		{name: "no files:read", scopes: without(slacktest.DefaultScopes, "files:read"),
			want: "missing scopes (add them and reinstall the app): files:read (attached images and files are ignored); Socket Mode"},
		{name: "no chat:write", scopes: without(slacktest.DefaultScopes, "chat:write"),
			wantErr: "the bot token lacks scopes: chat:write (it can't answer)"},
		{name: "wrong token", botTok: "xoxb-wrong", wantErr: "auth.test: invalid_auth: use the Bot User OAuth Token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := slacktest.New(slacktest.Options{Scopes: tc.scopes})
			defer fs.Close()
			tok := tc.botTok
			if tok == "" {
				tok = fs.BotToken()
			}
			got, err := Check(context.Background(), config.Slack{BotToken: config.Secret(tok), AppToken: config.Secret(fs.AppToken()), APIURL: fs.APIURL()})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

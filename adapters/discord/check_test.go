package discord

import (
	"context"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

// TestCheck: the token, the Message Content intent and the guilds of
// discord.guild_ids, each failure saying what to fix.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   int
		token   string
		guilds  []string
		want    string
		wantErr string
	}{
		{name: "ok", flags: 1 << 19, guilds: []string{"700"}, want: "bot arkbot (100000000000000001), application 100000000000000001, Message Content intent on, in guilds 700"},
		{name: "approved intent, no guild list", flags: 1 << 18, want: "Message Content intent on"},
		{name: "intent off", flags: 0, wantErr: "the Message Content intent is off"},
		{name: "bad token", flags: 1 << 19, token: "nope", wantErr: "the bot token was refused"},
		{name: "not in a guild", flags: 1 << 19, guilds: []string{"700", "999"}, wantErr: "not in discord.guild_ids 999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := discordtest.New(discordtest.WithApplicationFlags(tc.flags))
			defer fd.Close()
			fd.AddGuild("700", "Test guild")
			tok := tc.token
			if tok == "" {
				tok = fd.Token()
			}
			got, err := Check(context.Background(), config.Discord{Token: config.Secret(tok), APIURL: fd.APIURL(), GuildIDs: tc.guilds})
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

package discord

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/config"
)

// Application flags that say the Message Content intent is switched on
// (https://discord.com/developers/docs/resources/application#application-object-application-flags).
const (
	flagMessageContent        = 1 << 18 // approved, for verified bots
	flagMessageContentLimited = 1 << 19 // the Developer Portal's switch, under 100 guilds
)

// Check verifies cfg's bot token against the Discord API without opening a
// gateway connection: who the bot is, whether its application has the
// Message Content intent on (without it mentions arrive empty), and whether
// it is in every guild of discord.guild_ids. It returns a line describing
// the bot, or an error saying what to fix.
func Check(ctx context.Context, cfg config.Discord) (string, error) {
	s, err := discordgo.New("Bot " + cfg.Token.Value())
	if err != nil {
		return "", fmt.Errorf("discord: %w", err)
	}
	if s.Client, err = apiClient(&http.Client{Timeout: 15 * time.Second}, cfg.APIURL); err != nil {
		return "", err
	}
	me, err := s.User("@me", discordgo.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("the bot token was refused (%w): copy it again from the Developer Portal → Bot → Reset Token", err)
	}
	app, err := s.Application("@me") // bounded by the client's timeout: discordgo takes no context here
	if err != nil {
		return "", fmt.Errorf("bot %s (%s): reading its application: %w", me.Username, me.ID, err)
	}
	if app.Flags&(flagMessageContent|flagMessageContentLimited) == 0 {
		return "", fmt.Errorf("bot %s (%s): the Message Content intent is off, so mentions would arrive empty: enable it in the Developer Portal → Bot → Privileged Gateway Intents", me.Username, me.ID)
	}
	line := fmt.Sprintf("bot %s (%s), application %s, Message Content intent on", me.Username, me.ID, app.ID)
	if len(cfg.GuildIDs) == 0 {
		return line, nil
	}
	// Slash commands are registered in discord.guild_ids: the bot must be
	// in each (the first 200 of its guilds are enough for that list).
	guilds, err := s.UserGuilds(200, "", "", false, discordgo.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("%s; listing its guilds: %w", line, err)
	}
	in := map[string]bool{}
	for _, g := range guilds {
		in[g.ID] = true
	}
	var missing []string
	for _, id := range cfg.GuildIDs {
		if !in[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s; not in discord.guild_ids %s, so its slash commands can't be registered there: invite it with the link it logs at start-up, or fix the IDs",
			line, strings.Join(missing, ", "))
	}
	return fmt.Sprintf("%s, in guilds %s", line, strings.Join(cfg.GuildIDs, ", ")), nil
}

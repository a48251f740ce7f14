package config

import (
	"net/url"
	"strings"
	"time"
)

// Discord configures the Discord adapter. It is on when Token is set.
type Discord struct {
	Token Secret `yaml:"token"` // bot token
	// APIURL is the REST base (https://discord.com/api/v10/), for proxies and tests.
	APIURL string `yaml:"api_url"`
	// GatewayURL overrides the gateway address that GET /gateway/bot returns.
	GatewayURL string `yaml:"gateway_url"`
	// GuildIDs registers slash commands per guild (instant); empty: globally.
	GuildIDs StringList `yaml:"guild_ids"`
	// ThreadPerAsk opens a thread named after the question for each /ask.
	ThreadPerAsk bool `yaml:"thread_per_ask"`
	// AllowDMs answers direct messages.
	AllowDMs *bool `yaml:"allow_dms"`
	// ThreadFollowups answers every message in a thread the bot is talking in,
	// without a new mention.
	ThreadFollowups *bool      `yaml:"thread_followups"`
	EditInterval    Duration   `yaml:"edit_interval"`
	ModelAdmins     StringList `yaml:"model_admins"` // user or role IDs that may use /model; empty: everyone
	Admins          StringList `yaml:"admins"`       // user or role IDs exempt from limits
	AllowedGuilds   StringList `yaml:"allowed_guilds"`
	AllowedChannels StringList `yaml:"allowed_channels"`
	AllowedRoles    StringList `yaml:"allowed_roles"`
	AllowedUsers    StringList `yaml:"allowed_users"`
	ShardID         int        `yaml:"shard_id"`
	ShardCount      int        `yaml:"shard_count"`
	// MaxConcurrent bounds the messages handled at once by this process
	// (answers streaming plus commands); more wait their turn. 0: 200.
	MaxConcurrent int `yaml:"max_concurrent"`
}

// Enabled reports whether the Discord adapter should run.
func (d Discord) Enabled() bool { return d.Token != "" }

func (d *Discord) applyDefaults() {
	// The token as Discord's HTTP header carries it works too.
	d.Token = Secret(strings.TrimSpace(strings.TrimPrefix(string(d.Token), "Bot ")))
	setDefault(&d.APIURL, "https://discord.com/api/v10/")
	setDur(&d.EditInterval, 1200*time.Millisecond)
	if d.AllowDMs == nil {
		t := true
		d.AllowDMs = &t
	}
	if d.ThreadFollowups == nil {
		t := true
		d.ThreadFollowups = &t
	}
	if d.ShardCount == 0 {
		d.ShardCount = 1
	}
	if d.MaxConcurrent == 0 {
		d.MaxConcurrent = 200
	}
}

// WithDefaults returns d with every key left out set to its default, as
// Load sets it: for callers that build a Discord section in code.
func (d Discord) WithDefaults() Discord {
	d.applyDefaults()
	return d
}

func (d *Discord) validate(errs *fieldErrors) {
	if u, err := url.Parse(d.APIURL); err != nil || u.Host == "" {
		errs.add("discord.api_url", "must be a URL such as https://discord.com/api/v10/, not %q", d.APIURL)
	}
	if d.GatewayURL != "" {
		if u, err := url.Parse(d.GatewayURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
			errs.add("discord.gateway_url", "must be a ws:// or wss:// URL, not %q", d.GatewayURL)
		}
	}
	if d.ShardCount < 1 || d.ShardID < 0 || d.ShardID >= d.ShardCount {
		errs.add("discord.shard_id", "must be in [0, shard_count) (shard_id %d, shard_count %d)", d.ShardID, d.ShardCount)
	}
	if d.MaxConcurrent < 1 {
		errs.add("discord.max_concurrent", "must be at least 1, not %d", d.MaxConcurrent)
	}
	checkSecret(errs, "discord.token", d.Token)
}

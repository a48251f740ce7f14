package discord

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/bwmarrin/discordgo"
)

// discordgo keeps its REST addresses in package-level variables computed at
// init from EndpointAPI ("https://discord.com/api/v9/"); functions such as
// EndpointChannelMessage read the string variables when called. To talk to
// another base (discord.api_url: a proxy, the fake in tests) every string
// variable derived from EndpointAPI is reassigned here.
//
// Caveat: the variables are global, so one process talks to one Discord API
// base. Run takes a reference on the base for its lifetime; a second adapter
// with a different api_url fails to start while the first runs.
var (
	endpointsMu   sync.Mutex
	endpointsBase string
	endpointsRefs int
)

var apiVersion = regexp.MustCompile(`/v(\d+)/$`)

// useAPIBase points discordgo at apiURL and returns a release func.
func useAPIBase(apiURL string) (release func(), err error) {
	base := strings.TrimRight(apiURL, "/") + "/"
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("discord: api_url %q is not an http(s) URL", apiURL)
	}
	endpointsMu.Lock()
	defer endpointsMu.Unlock()
	if endpointsRefs > 0 && base != endpointsBase {
		return nil, fmt.Errorf("discord: this process already talks to Discord at %s; one process can use only one discord.api_url (asked for %s)", endpointsBase, base)
	}
	if base != endpointsBase {
		setEndpoints(u.Scheme+"://"+u.Host+"/", base)
		endpointsBase = base
	}
	endpointsRefs++
	var once sync.Once
	return func() {
		once.Do(func() {
			endpointsMu.Lock()
			endpointsRefs--
			endpointsMu.Unlock()
		})
	}, nil
}

// setEndpoints reassigns every discordgo endpoint string computed from
// EndpointDiscord/EndpointAPI at init (see discordgo's endpoints.go). The
// Endpoint* functions need no change: they read these at call time.
func setEndpoints(discordBase, api string) {
	if m := apiVersion.FindStringSubmatch(api); m != nil {
		// Also used for the gateway's ?v= parameter.
		discordgo.APIVersion = m[1]
	}
	discordgo.EndpointDiscord = discordBase
	discordgo.EndpointAPI = api
	discordgo.EndpointGuilds = api + "guilds/"
	discordgo.EndpointChannels = api + "channels/"
	discordgo.EndpointUsers = api + "users/"
	discordgo.EndpointGateway = api + "gateway"
	discordgo.EndpointGatewayBot = discordgo.EndpointGateway + "/bot"
	discordgo.EndpointWebhooks = api + "webhooks/"
	discordgo.EndpointStickers = api + "stickers/"
	discordgo.EndpointStageInstances = api + "stage-instances"
	discordgo.EndpointSKUs = api + "skus"
	discordgo.EndpointVoice = api + "/voice/"
	discordgo.EndpointVoiceRegions = discordgo.EndpointVoice + "regions"
	discordgo.EndpointNitroStickersPacks = api + "/sticker-packs"
	discordgo.EndpointGuildCreate = api + "guilds"
	discordgo.EndpointApplications = api + "applications"
	discordgo.EndpointOAuth2 = api + "oauth2/"
	discordgo.EndpointOAuth2Applications = discordgo.EndpointOAuth2 + "applications"
	discordgo.EndpointOauth2 = discordgo.EndpointOAuth2
	discordgo.EndpointOauth2Applications = discordgo.EndpointOAuth2Applications
}

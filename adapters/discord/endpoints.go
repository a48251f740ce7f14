package discord

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// gatewayOverride answers discordgo's GET {api}/gateway with a configured
// address (discord.gateway_url). discordgo's Session.Open always asks that
// route and keeps the answer in an unexported field, so the HTTP client is
// the one place to substitute it. Other requests pass through.
type gatewayOverride struct {
	next  http.RoundTripper
	url   string // the gateway to use
	route string // {api}/gateway, the route to answer
}

func (g gatewayOverride) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && strings.TrimSuffix(req.URL.Scheme+"://"+req.URL.Host+req.URL.Path, "/") == g.route {
		body, _ := json.Marshal(map[string]string{"url": g.url})
		if req.Body != nil {
			req.Body.Close()
		}
		return &http.Response{
			Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       req,
		}, nil
	}
	return g.next.RoundTrip(req)
}

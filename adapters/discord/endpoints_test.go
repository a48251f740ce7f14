package discord

import (
	"net/http"
	"testing"

	"github.com/bwmarrin/discordgo"
)

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Requests under discordgo's EndpointAPI go to discord.api_url, keeping
// their path (escaped parts too) and query; others pass unchanged, and
// the caller's request is left as it was.
func TestAPIClientRebases(t *testing.T) {
	var got string
	base := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.URL.String()
		if r.Host != "" && r.Host != r.URL.Host {
			t.Errorf("Host %q for %s", r.Host, r.URL)
		}
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
	})}
	for _, tc := range []struct{ apiURL, in, want string }{
		{"http://127.0.0.1:1/api/v10/", discordgo.EndpointChannelMessage("1", "2"), "http://127.0.0.1:1/api/v10/channels/1/messages/2"},
		{"http://127.0.0.1:1/api/v10", discordgo.EndpointWebhookToken("3", "tok") + "?wait=true", "http://127.0.0.1:1/api/v10/webhooks/3/tok?wait=true"},
		{"https://proxy.example/discord/api/v10/", discordgo.EndpointGatewayBot, "https://proxy.example/discord/api/v10/gateway/bot"},
		{"https://proxy.example/discord/api/v10/", discordgo.EndpointAPI + "channels/a%2Fb", "https://proxy.example/discord/api/v10/channels/a%2Fb"},
		{"http://127.0.0.1:1/api/v10/", "https://cdn.discordapp.com/attachments/1/2/a.png", "https://cdn.discordapp.com/attachments/1/2/a.png"},
		{"http://127.0.0.1:1/api/v10/", "https://discord.com/oauth2/authorize", "https://discord.com/oauth2/authorize"},
	} {
		c, err := apiClient(base, tc.apiURL)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodGet, tc.in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Do(req); err != nil {
			t.Fatal(err)
		}
		if got != tc.want || req.URL.String() != tc.in {
			t.Errorf("%s via %s: sent to %s (request now %s), want %s", tc.in, tc.apiURL, got, req.URL, tc.want)
		}
	}
	if rc, err := apiClient(base, "http://127.0.0.1:1/api/v10/"); err != nil || rc == base {
		t.Fatal("apiClient returned the client it was given")
	}
	if _, ok := base.Transport.(*rebase); ok {
		t.Fatal("the given client's transport was replaced")
	}
	for _, bad := range []string{"", "discord.com/api/v10", "ftp://discord.com/api/v10/"} {
		if _, err := apiClient(base, bad); err == nil {
			t.Errorf("api_url %q accepted", bad)
		}
	}
}

// Two adapters of one process talk to two API bases at once, and
// discordgo's endpoint variables are left as discordgo set them.
func TestTwoAPIBasesInOneProcess(t *testing.T) {
	const defaultAPI = "https://discord.com/api/v9/"
	hs1 := start(t, setup{})
	hs2 := start(t, setup{})
	for i, hs := range []*harness{hs1, hs2} {
		u := hs.mention(alice, channelID, "which Discord?")
		hs.h.waitCall(t, u.ID)
		if n := hs.fake.Stats().Requests["GET /users/@me"]; n != 1 {
			t.Errorf("fake %d: GET /users/@me asked %d times", i+1, n)
		}
	}
	if discordgo.EndpointAPI != defaultAPI || discordgo.EndpointChannels != defaultAPI+"channels/" || discordgo.APIVersion != "9" {
		t.Fatalf("discordgo's endpoints were changed: %s %s v%s", discordgo.EndpointAPI, discordgo.EndpointChannels, discordgo.APIVersion)
	}
}

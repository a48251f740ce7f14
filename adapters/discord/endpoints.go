package discord

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/bwmarrin/discordgo"
)

// discordgo builds every REST address from package-level variables set at
// init from EndpointAPI ("https://discord.com/api/v9/"), and a Session has
// no base URL of its own. The adapter leaves those variables alone (writing
// them would race with every goroutine reading them and allow one base per
// process): its Session's http.Client moves each request under discordgo's
// EndpointAPI to discord.api_url (another API version, a proxy, the fake in
// tests) as it goes out. Requests elsewhere (attachment downloads, CDN)
// pass unchanged.

var apiVersion = regexp.MustCompile(`/v(\d+)/$`)

// apiClient returns a copy of c whose requests to discordgo's EndpointAPI go
// to apiURL instead.
func apiClient(c *http.Client, apiURL string) (*http.Client, error) {
	to, err := url.Parse(strings.TrimRight(apiURL, "/") + "/")
	if err != nil || to.Host == "" || (to.Scheme != "http" && to.Scheme != "https") {
		return nil, fmt.Errorf("discord: api_url %q is not an http(s) URL", apiURL)
	}
	from, err := url.Parse(discordgo.EndpointAPI)
	if err != nil {
		return nil, fmt.Errorf("discord: discordgo's EndpointAPI %q: %w", discordgo.EndpointAPI, err)
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	rc := *c
	rc.Transport = &rebase{from: from, to: to, base: base}
	return &rc, nil
}

// rebase is an http.RoundTripper that moves requests under one base URL
// to another.
type rebase struct {
	from, to *url.URL
	base     http.RoundTripper
}

func (r *rebase) RoundTrip(req *http.Request) (*http.Response, error) {
	u := req.URL
	if u.Scheme != r.from.Scheme || u.Host != r.from.Host || !strings.HasPrefix(u.Path, r.from.Path) {
		return r.base.RoundTrip(req)
	}
	moved := *u
	moved.Scheme, moved.Host = r.to.Scheme, r.to.Host
	moved.Path = r.to.Path + strings.TrimPrefix(u.Path, r.from.Path)
	if u.RawPath != "" {
		moved.RawPath = r.to.EscapedPath() + strings.TrimPrefix(u.RawPath, r.from.EscapedPath())
	}
	// A shallow copy, as http.StripPrefix makes: the caller's request stays
	// as it was.
	out := new(http.Request)
	*out = *req
	out.URL = &moved
	out.Host = ""
	return r.base.RoundTrip(out)
}

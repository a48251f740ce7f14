package arkclient

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// chatSuffix is appended to a base address to reach chat completions.
const chatSuffix = "/chat/completions"

// versionSegment matches a path segment like /v1 or /v3.
var versionSegment = regexp.MustCompile(`(^|/)v[0-9]+(/|$)`)

// ResolveURL turns the API address an operator configured into the chat
// completions request URL, following Cherry Studio's rule:
//
//   - a trailing "#" means "exact URL": the "#" is stripped and the rest is
//     used as is;
//   - otherwise trailing "/" are stripped, "/v1" is appended when the path has
//     no version segment (/v1, /v3, any /v<digits>), then "/chat/completions".
//
// One case goes beyond Cherry Studio's rule: a path that already ends in
// "/chat/completions" (the full URL pasted without its "#") is used as is
// rather than given a second "/chat/completions".
//
// So ".../api/v3", ".../api/v3/", ".../api/v3/chat/completions#" and
// ".../api/v3/chat/completions" all give ".../api/v3/chat/completions". The
// address must be an http(s) URL with a host and no credentials; apart from
// the "#" form it must carry no query or fragment.
func ResolveURL(address string) (string, error) {
	resolved, _, err := resolve(address)
	return resolved, err
}

// resolve is ResolveURL; full reports a path that ended in
// "/chat/completions" without the "#".
func resolve(address string) (resolved string, full bool, err error) {
	s := strings.TrimSpace(address)
	if exact, ok := strings.CutSuffix(s, "#"); ok {
		if _, err := checkURL(exact); err != nil {
			return "", false, err
		}
		return exact, false, nil
	}
	u, err := checkURL(s)
	if err != nil {
		return "", false, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "", false, errors.New("arkclient: API address must not contain a query (end it with # to use an exact URL)")
	}
	path := strings.TrimRight(u.Path, "/")
	full = strings.HasSuffix(path, chatSuffix)
	if !full {
		if !versionSegment.MatchString(path) {
			path += "/v1"
		}
		path += chatSuffix
	}
	u.Path = path
	u.RawPath = ""
	return u.String(), full, nil
}

// checkURL parses s and rejects what cannot be an Ark address. Errors quote
// the address only when it holds no credentials.
func checkURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("arkclient: API address is empty")
	}
	if strings.Contains(s, "#") {
		return nil, errors.New(`arkclient: API address may contain "#" only as its last character`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("arkclient: API address is not a valid URL: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("arkclient: API address must not contain credentials (the API key goes in ARK_API_KEY)")
	}
	switch {
	case u.Scheme == "":
		return nil, fmt.Errorf("arkclient: API address %q has no scheme (want https://host/...)", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("arkclient: API address %q has scheme %q (want https or http)", s, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("arkclient: API address %q has no host", s)
	case u.Opaque != "":
		return nil, fmt.Errorf("arkclient: API address %q is not a hierarchical URL (want https://host/...)", s)
	}
	return u, nil
}

// responsesSuffix is what replaces chatSuffix to reach the Responses API.
const responsesSuffix = "/responses"

// responsesURL is the Responses API URL next to the chat completions URL
// chat (as ResolveURL gives it): a path ending in "/chat/completions" ends
// in "/responses" instead; one already ending in "/responses" stays; any
// other exact ("#") URL gets "/responses" appended.
func responsesURL(chat string) string {
	u, err := url.Parse(chat)
	if err != nil {
		return chat
	}
	path := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(path, responsesSuffix) {
		path = strings.TrimSuffix(path, chatSuffix) + responsesSuffix
	}
	u.Path, u.RawPath = path, ""
	return u.String()
}

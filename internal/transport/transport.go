// Package transport builds the HTTP transport of a client that keeps many
// requests in flight to one host: the bot's Ark client and its Slack and
// Discord adapters.
package transport

import "net/http"

// New returns a transport with http.DefaultTransport's settings (proxy from
// the environment, timeouts, HTTP/2) that keeps up to perHost idle
// connections to a host instead of Go's default 2. With hundreds of answers
// streaming at once, the default makes nearly every request beyond the
// second dial a new connection (and, over TLS, handshake), which a load test
// of the bot measured as its largest avoidable CPU cost after decoding.
func New(perHost int) *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	t.MaxIdleConns = 0 // DefaultTransport's 100 is for all hosts together; perHost bounds this
	t.MaxIdleConnsPerHost = max(perHost, 2)
	return t
}

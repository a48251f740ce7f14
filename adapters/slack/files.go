package slack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/attach"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/metrics"
)

// ---- users ----

// userCache remembers display names from users.info.
type userCache struct {
	mu sync.Mutex
	m  map[string]userEntry
}

type userEntry struct {
	name    string
	expires time.Time
}

const (
	userTTL      = time.Hour
	userFailTTL  = time.Minute // after a failed look-up, don't ask again for a while
	userCacheMax = 50000
	userTimeout  = 3 * time.Second
)

func newUserCache() *userCache { return &userCache{m: map[string]userEntry{}} }

// later returns a func that returns the user's display name (fallback if
// Slack can't tell): at once from the cache, else from a users.info call
// started now, so the engine's sign of life doesn't wait for it.
func (c *userCache) later(ctx context.Context, a *Adapter, team, id, fallback string) func() string {
	if e, fresh := c.get(team, id); fresh {
		return func() string { return cmp.Or(e.name, fallback) }
	}
	name := make(chan string, 1)
	go func() { name <- c.name(ctx, a, team, id) }()
	return sync.OnceValue(func() string { return cmp.Or(<-name, fallback) })
}

// get returns the cached entry for the user, and whether it is fresh.
func (c *userCache) get(team, id string) (userEntry, bool) {
	c.mu.Lock()
	e, ok := c.m[team+"|"+id]
	c.mu.Unlock()
	return e, ok && time.Now().Before(e.expires)
}

// name returns the user's display name, from the cache or users.info; ""
// if Slack can't tell.
func (c *userCache) name(ctx context.Context, a *Adapter, team, id string) string {
	key := team + "|" + id
	now := time.Now()
	e, fresh := c.get(team, id)
	if fresh {
		return e.name
	}
	lctx, cancel := context.WithTimeout(ctx, userTimeout)
	defer cancel()
	var u *slack.User
	// Best effort: the answer's request to Ark waits for this, so when
	// many new users write at once and the Tier-4 budget is spent, the
	// answer goes on with the user's ID (or a stale name) rather than wait
	// up to userTimeout; the next message asks again.
	err := a.call(lctx, ratelimit.BestEffort, team, "", "users.info", func(ctx context.Context) error {
		var err error
		u, err = a.api.GetUserInfoContext(ctx, id, slack.GetUserInfoOptionIncludeLocale(false))
		return err
	})
	if errors.Is(err, ratelimit.ErrSkipped) {
		return e.name
	}
	name, ttl := e.name, userFailTTL // keep a stale name over none
	if err == nil {
		name, ttl = displayName(u), userTTL
	} else {
		a.log.Debug("users.info failed", "user", id, "err", err)
	}
	c.mu.Lock()
	if len(c.m) >= userCacheMax {
		for k, v := range c.m {
			if now.After(v.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= userCacheMax {
			c.m = map[string]userEntry{}
		}
	}
	c.m[key] = userEntry{name: name, expires: now.Add(ttl)}
	c.mu.Unlock()
	return name
}

func displayName(u *slack.User) string {
	for _, n := range []string{u.Profile.DisplayName, u.Profile.RealName, u.RealName, u.Name} {
		if n = strings.TrimSpace(n); n != "" {
			return n
		}
	}
	return ""
}

// ---- attachments ----

// attachments reads a message's images and text files, downloaded with the
// bot token within the configured size limits, and names the files it
// can't use.
func (a *Adapter) attachments(ctx context.Context, m *conversation.Message, files []slack.File, log *slog.Logger) {
	r := attach.Reader{Limits: attach.Limits{Image: a.limits.MaxImageBytes, Text: a.limits.MaxFileBytes}, Fetch: a.download}
	for _, f := range files {
		name := cmp.Or(f.Name, f.Title, "a file")
		if f.Mode == "tombstone" || f.Mode == "hidden_by_limit" {
			m.Ignored = append(m.Ignored, name+" (not accessible)")
			continue
		}
		if f.URLPrivate == "" && f.URLPrivateDownload == "" && f.ID != "" {
			if full, err := a.fileInfo(ctx, m.Workspace, f.ID); err == nil {
				f = *full
			} else {
				log.Debug("files.info failed", "file", f.ID, "err", err)
			}
		}
		file := attach.File{Name: name, ContentType: f.Mimetype, Type: f.Filetype, Size: int64(f.Size), URL: cmp.Or(f.URLPrivate, f.URLPrivateDownload)}
		if err := r.Read(ctx, m, file); err != nil {
			log.Warn("file download failed", "file", f.ID, "err", err)
		}
	}
}

func (a *Adapter) fileInfo(ctx context.Context, team, id string) (*slack.File, error) {
	var f *slack.File
	err := a.call(ctx, ratelimit.MustDeliver, team, "", "files.info", func(ctx context.Context) error {
		var err error
		f, _, _, err = a.api.GetFileInfoContext(ctx, id, 0, 0)
		return err
	})
	return f, err
}

// download fetches a file's url_private with the bot token, within limit
// bytes. The token goes only to Slack's own https hosts or the configured
// API host, as slack-go's GetFile would send it.
func (a *Adapter) download(ctx context.Context, u string, limit int64) ([]byte, error) {
	if u == "" {
		return nil, errors.New("the file has no download URL")
	}
	var path string // the file's, as first asked for
	data, err := attach.Download(ctx, a.client, u, limit,
		attach.WithRequest(func(r *http.Request) error {
			if !a.mayReceiveToken(r.URL) {
				return fmt.Errorf("refusing to send the bot token to %s: not a Slack https host or the API host", r.URL.Host)
			}
			r.Header.Set("Authorization", "Bearer "+a.cfg.BotToken.Value())
			path = r.URL.Path
			return nil
		}),
		attach.WithResponse(func(resp *http.Response) error {
			// Without access, files.slack.com redirects to the workspace's
			// sign-in page with redir naming the file's path.
			if redir := resp.Request.URL.Query().Get("redir"); redir != "" && redir == path {
				return fmt.Errorf("the download was redirected to the sign-in page at %s: the bot can't read this file", resp.Request.URL.Host)
			}
			return nil
		}))
	result := "ok" // too large: the call worked
	var se *attach.StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusTooManyRequests:
		result = "ratelimited"
	case err != nil && !errors.Is(err, attach.ErrTooLarge):
		result = "error"
	}
	metrics.PlatformCall("slack", "files.download", result)
	return data, err
}

// mayReceiveToken reports whether u is an https URL on slack.com or
// slack-gov.com (or a subdomain), or on the configured API URL's host.
func (a *Adapter) mayReceiveToken(u *url.URL) bool {
	if api, err := url.Parse(a.cfg.APIURL); err == nil && api.Host != "" && u.Scheme == api.Scheme && strings.EqualFold(u.Host, api.Host) {
		return true
	}
	if u.Scheme != "https" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	for _, d := range []string{"slack.com", "slack-gov.com"} {
		if host == d || strings.HasSuffix(host, "."+d) {
			return true
		}
	}
	return false
}

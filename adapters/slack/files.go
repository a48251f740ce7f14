package slack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
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

// Defaults for config.Limits left at zero.
const (
	defaultMaxImageBytes = 8 << 20
	defaultMaxFileBytes  = 256 << 10
	downloadTimeout      = 30 * time.Second
)

type fileKind int

const (
	kindOther fileKind = iota
	kindImage
	kindText
)

// imageMimes are the picture formats vision models take.
var imageMimes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

var textMimes = map[string]bool{
	"application/json": true, "application/xml": true, "application/javascript": true, "application/x-javascript": true,
	"application/typescript": true, "application/x-typescript": true, "application/x-yaml": true, "application/yaml": true,
	"application/x-sh": true, "application/x-shellscript": true, "application/sql": true, "application/x-sql": true,
	"application/toml": true, "application/x-toml": true, "application/x-python": true, "application/x-ndjson": true,
	"application/csv": true, "application/x-httpd-php": true, "application/graphql": true,
}

// textTypes are Slack filetypes and file extensions read as text.
var textTypes = map[string]bool{
	"text": true, "txt": true, "markdown": true, "md": true, "mdx": true, "rst": true, "org": true, "adoc": true, "asciidoc": true,
	"tex": true, "latex": true, "csv": true, "tsv": true, "log": true, "json": true, "jsonl": true, "ndjson": true,
	"yaml": true, "yml": true, "toml": true, "ini": true, "cfg": true, "conf": true, "env": true, "properties": true, "xml": true,
	"html": true, "htm": true, "css": true, "scss": true, "less": true, "svg": true, "sql": true, "graphql": true, "proto": true,
	"go": true, "mod": true, "py": true, "python": true, "ipynb": true, "js": true, "javascript": true, "mjs": true, "cjs": true,
	"ts": true, "typescript": true, "tsx": true, "jsx": true, "java": true, "kt": true, "kotlin": true, "kts": true,
	"scala": true, "groovy": true, "gradle": true, "c": true, "h": true, "cpp": true, "cc": true, "cxx": true, "hpp": true,
	"cs": true, "csharp": true, "fs": true, "fsharp": true, "rs": true, "rust": true, "rb": true, "ruby": true, "php": true,
	"pl": true, "perl": true, "lua": true, "r": true, "swift": true, "m": true, "mm": true, "objc": true, "dart": true,
	"ex": true, "exs": true, "elixir": true, "erl": true, "erlang": true, "hs": true, "haskell": true, "clj": true, "clojure": true,
	"ml": true, "ocaml": true, "elm": true, "vue": true, "svelte": true, "sh": true, "bash": true, "zsh": true, "fish": true,
	"shell": true, "ps1": true, "powershell": true, "bat": true, "cmd": true, "dockerfile": true, "makefile": true, "mk": true,
	"cmake": true, "tf": true, "hcl": true, "nix": true, "diff": true, "patch": true, "vb": true, "vbscript": true,
	"matlab": true, "julia": true, "jl": true, "zig": true, "nim": true, "v": true, "sv": true, "vhdl": true, "asm": true,
	"s": true, "post": true, "snippet": true,
}

func classifyFile(f slack.File) fileKind {
	mime := strings.ToLower(strings.TrimSpace(strings.Split(f.Mimetype, ";")[0]))
	ft := strings.ToLower(f.Filetype)
	ext := ""
	if i := strings.LastIndexByte(f.Name, '.'); i >= 0 {
		ext = strings.ToLower(f.Name[i+1:])
	}
	switch {
	case imageMimes[mime], ft == "png", ft == "jpg", ft == "jpeg", ft == "gif", ft == "webp":
		return kindImage
	case strings.HasPrefix(mime, "image/") && mime != "image/svg+xml":
		return kindOther // HEIC, TIFF…: models don't take them
	case strings.HasPrefix(mime, "text/"), textMimes[mime], textTypes[ft], textTypes[ext]:
		return kindText
	}
	return kindOther
}

var errTooLarge = errors.New("file too large")

// capped is a buffer that refuses to grow past max bytes.
type capped struct {
	bytes.Buffer
	max int64
}

func (c *capped) Write(p []byte) (int, error) {
	if int64(c.Len()+len(p)) > c.max {
		return 0, errTooLarge
	}
	return c.Buffer.Write(p)
}

// attachments downloads images and text files of a message with the bot
// token, within the configured size limits, and names the files it can't use.
func (a *Adapter) attachments(ctx context.Context, m *conversation.Message, files []slack.File, log *slog.Logger) {
	maxImage, maxText := a.limits.MaxImageBytes, a.limits.MaxFileBytes
	if maxImage <= 0 {
		maxImage = defaultMaxImageBytes
	}
	if maxText <= 0 {
		maxText = defaultMaxFileBytes
	}
	for _, f := range files {
		name := f.Name
		if name == "" {
			name = f.Title
		}
		if name == "" {
			name = "a file"
		}
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
		kind := classifyFile(f)
		limit := maxText
		if kind == kindImage {
			limit = maxImage
		}
		switch {
		case kind == kindOther:
			m.Ignored = append(m.Ignored, name)
			continue
		case int64(f.Size) > limit:
			m.Ignored = append(m.Ignored, fmt.Sprintf("%s (larger than %s)", name, humanBytes(limit)))
			continue
		}
		data, err := a.download(ctx, f, limit)
		if errors.Is(err, errTooLarge) {
			m.Ignored = append(m.Ignored, fmt.Sprintf("%s (larger than %s)", name, humanBytes(limit)))
			continue
		}
		if err != nil {
			log.Warn("file download failed", "file", f.ID, "err", err)
			m.Ignored = append(m.Ignored, name+" (download failed)")
			continue
		}
		if kind == kindImage {
			mime := strings.ToLower(strings.Split(f.Mimetype, ";")[0])
			if !imageMimes[mime] {
				mime = http.DetectContentType(data)
			}
			if !imageMimes[mime] {
				m.Ignored = append(m.Ignored, name+" (unsupported image format)")
				continue
			}
			m.Images = append(m.Images, conversation.Image{URL: "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data)})
			continue
		}
		if !utf8.Valid(data) {
			m.Ignored = append(m.Ignored, name+" (not UTF-8 text)")
			continue
		}
		m.Files = append(m.Files, conversation.File{Name: name, Text: string(data)})
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

// download fetches a file's url_private with the bot token (slack-go sends
// the token only to Slack's own hosts or the configured API host).
func (a *Adapter) download(ctx context.Context, f slack.File, limit int64) ([]byte, error) {
	u := f.URLPrivate
	if u == "" {
		u = f.URLPrivateDownload
	}
	if u == "" {
		return nil, errors.New("the file has no download URL")
	}
	dctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	buf := &capped{max: limit}
	err := a.api.GetFileContext(dctx, u, buf)
	result := "ok"
	switch {
	case errors.Is(err, errTooLarge):
		result = "ok" // the call worked; the file was too big
	case err != nil:
		result = "error"
		if _, limited := rateLimited(err); limited {
			result = "ratelimited"
		}
	}
	metrics.PlatformCall("slack", "files.download", result)
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

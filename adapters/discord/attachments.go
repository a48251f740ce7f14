package discord

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
)

// downloadTimeout bounds fetching all of one message's attachments.
const downloadTimeout = 30 * time.Second

var imageTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
}

// textExts are attachments read as text (besides text/* content types).
var textExts = map[string]bool{
	".txt": true, ".md": true, ".markdown": true, ".rst": true, ".csv": true, ".tsv": true, ".log": true,
	".json": true, ".yaml": true, ".yml": true, ".toml": true, ".ini": true, ".cfg": true, ".conf": true, ".env": true,
	".xml": true, ".html": true, ".htm": true, ".css": true, ".scss": true, ".sql": true, ".graphql": true, ".proto": true,
	".go": true, ".py": true, ".js": true, ".mjs": true, ".cjs": true, ".ts": true, ".tsx": true, ".jsx": true,
	".java": true, ".kt": true, ".kts": true, ".scala": true, ".groovy": true, ".gradle": true,
	".c": true, ".h": true, ".cc": true, ".cpp": true, ".cxx": true, ".hpp": true, ".cs": true, ".m": true, ".mm": true,
	".rs": true, ".rb": true, ".php": true, ".pl": true, ".lua": true, ".r": true, ".swift": true, ".dart": true,
	".sh": true, ".bash": true, ".zsh": true, ".fish": true, ".ps1": true, ".bat": true,
	".vue": true, ".svelte": true, ".tf": true, ".hcl": true, ".nix": true, ".ex": true, ".exs": true, ".erl": true,
	".hs": true, ".clj": true, ".elm": true, ".zig": true, ".jl": true, ".diff": true, ".patch": true,
	".dockerfile": true, ".makefile": true, ".mk": true, ".cmake": true,
}

var textNames = map[string]bool{"dockerfile": true, "makefile": true, "readme": true, "license": true}

// attachments sorts a message's attachments: images for vision models
// (downloaded into data: URLs within Limits.MaxImageBytes so the model
// needn't reach Discord's CDN; when download is false or fails, the CDN URL
// is passed instead), text and code files read as text within
// Limits.MaxFileBytes, and the names of everything else.
func (a *Adapter) attachments(ctx context.Context, atts []*discordgo.MessageAttachment, download bool) (images []conversation.Image, files []conversation.File, ignored []string) {
	if len(atts) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	for _, att := range atts {
		if att == nil {
			continue
		}
		name := att.Filename
		ext := strings.ToLower(path.Ext(name))
		ctype, _, _ := mime.ParseMediaType(att.ContentType)
		switch {
		case isImageType(ctype) || (ctype == "" || ctype == "application/octet-stream") && imageTypes[ext] != "":
			if int64(att.Size) > a.limits.MaxImageBytes {
				ignored = append(ignored, fmt.Sprintf("%s (image larger than %s)", name, human(a.limits.MaxImageBytes)))
				continue
			}
			if !isImageType(ctype) {
				ctype = imageTypes[ext]
			}
			if !download {
				images = append(images, conversation.Image{URL: att.URL})
				continue
			}
			data, err := a.download(ctx, att.URL, a.limits.MaxImageBytes)
			if err != nil {
				a.log.Debug("image download failed; passing its URL", "file", name, "err", err)
				images = append(images, conversation.Image{URL: att.URL})
				continue
			}
			images = append(images, conversation.Image{URL: "data:" + ctype + ";base64," + base64.StdEncoding.EncodeToString(data)})
		case isText(ctype, ext, name):
			if int64(att.Size) > a.limits.MaxFileBytes {
				ignored = append(ignored, fmt.Sprintf("%s (file larger than %s)", name, human(a.limits.MaxFileBytes)))
				continue
			}
			data, err := a.download(ctx, att.URL, a.limits.MaxFileBytes)
			if err != nil {
				a.log.Debug("file download failed", "file", name, "err", err)
				ignored = append(ignored, name+" (could not be downloaded)")
				continue
			}
			if !utf8.Valid(data) {
				ignored = append(ignored, name+" (not UTF-8 text)")
				continue
			}
			files = append(files, conversation.File{Name: name, Text: string(data)})
		default:
			ignored = append(ignored, name)
		}
	}
	return images, files, ignored
}

func isImageType(ctype string) bool {
	for _, t := range imageTypes {
		if t == ctype {
			return true
		}
	}
	return false
}

func isText(ctype, ext, name string) bool {
	if strings.HasPrefix(ctype, "text/") || textExts[ext] || textNames[strings.ToLower(name)] {
		return true
	}
	switch ctype {
	case "application/json", "application/xml", "application/x-yaml", "application/yaml", "application/toml",
		"application/javascript", "application/x-sh", "application/sql":
		return true
	}
	return false
}

// download fetches url, failing past limit bytes.
func (a *Adapter) download(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("not an http(s) URL: %q", rawURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

func human(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

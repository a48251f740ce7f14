// Package attach reads a chat message's attachments for the model: images
// a vision model takes, as data: URLs, and text or code files as text,
// within size caps; everything else is named so the model knows it was
// there. The platform adapters describe their files as File values and
// download them through Download.
package attach

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/arkbot/arkbot/conversation"
)

// Kind is what an attachment is to the model.
type Kind int

// The kinds of attachment.
const (
	Other Kind = iota // neither: named only
	Image             // PNG, JPEG, GIF or WebP
	Text              // text or source code
)

// File is an attachment as a platform announces it.
type File struct {
	Name        string // file name, shown to the model
	ContentType string // MIME type, parameters allowed; "" if unknown
	Type        string // the platform's own file type (Slack's filetype), if any
	Size        int64  // announced size in bytes; 0 if unknown
	URL         string // where it downloads from
}

// imageTypes are the picture formats vision models take.
var imageTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// imageExts are those formats' extensions (and Slack filetypes).
var imageExts = map[string]bool{"png": true, "jpg": true, "jpeg": true, "gif": true, "webp": true}

// textTypes are non-text/* content types read as text.
var textTypes = map[string]bool{
	"application/json": true, "application/xml": true, "application/javascript": true, "application/x-javascript": true,
	"application/typescript": true, "application/x-typescript": true, "application/x-yaml": true, "application/yaml": true,
	"application/x-sh": true, "application/x-shellscript": true, "application/sql": true, "application/x-sql": true,
	"application/toml": true, "application/x-toml": true, "application/x-python": true, "application/x-ndjson": true,
	"application/csv": true, "application/x-httpd-php": true, "application/graphql": true,
}

// textExts are file extensions and Slack filetypes read as text.
var textExts = map[string]bool{
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

// textNames are well-known file names without an extension read as text.
var textNames = map[string]bool{
	"dockerfile": true, "makefile": true, "readme": true, "license": true, "gemfile": true, "procfile": true,
	"jenkinsfile": true, "vagrantfile": true, "rakefile": true, "brewfile": true,
}

// mediaType is a content type's type/subtype in lower case, "" if none.
func mediaType(ct string) string {
	if t, _, err := mime.ParseMediaType(ct); err == nil {
		return t
	}
	t, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// Classify says what f is: an image by its content type, or by its
// extension or platform type when the content type says nothing more
// (empty or application/octet-stream); text by its content type, extension,
// platform type or a well-known name (Dockerfile, Makefile…); else Other.
// Images in formats models don't take (HEIC, TIFF…) are Other.
func Classify(f File) Kind {
	ct := mediaType(f.ContentType)
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(f.Name), "."))
	typ := strings.ToLower(f.Type)
	unlabelled := ct == "" || ct == "application/octet-stream"
	switch {
	case imageTypes[ct], unlabelled && (imageExts[ext] || imageExts[typ]):
		return Image
	case strings.HasPrefix(ct, "image/") && ct != "image/svg+xml":
		return Other
	case strings.HasPrefix(ct, "text/"), textTypes[ct], textExts[ext], textExts[typ], textNames[strings.ToLower(f.Name)]:
		return Text
	}
	return Other
}

// Limits caps the size of what is read, in bytes.
type Limits struct {
	Image int64 // per image (config limits.max_image_bytes)
	Text  int64 // per text file (config limits.max_file_bytes)
}

// For is the cap for a kind; Other has none to read.
func (l Limits) For(k Kind) int64 {
	switch k {
	case Image:
		return l.Image
	case Text:
		return l.Text
	}
	return 0
}

// Fetcher downloads url within limit bytes (see Download).
type Fetcher func(ctx context.Context, url string, limit int64) ([]byte, error)

// Reader reads attachments into a message.
type Reader struct {
	Limits Limits
	Fetch  Fetcher
	// Public says file URLs need no credentials (a CDN's): an image whose
	// download fails is passed by its URL, for the model to fetch.
	Public bool
	// LinkImages, with Public, passes images by URL without downloading them.
	LinkImages bool
}

// Read adds f to m: an image to m.Images as a data: URL (or its URL, see
// Reader), a UTF-8 text file to m.Files, and anything else, or too large,
// to m.Ignored with the reason. It returns the download's error, if one
// failed, for the caller to log.
func (r Reader) Read(ctx context.Context, m *conversation.Message, f File) error {
	name := f.Name
	if name == "" {
		name = "a file"
	}
	kind := Classify(f)
	limit := r.Limits.For(kind)
	tooLarge := fmt.Sprintf("%s (larger than %s)", name, Size(limit))
	switch {
	case kind == Other:
		m.Ignored = append(m.Ignored, name)
		return nil
	case f.Size > limit:
		m.Ignored = append(m.Ignored, tooLarge)
		return nil
	case kind == Image && r.Public && r.LinkImages:
		m.Images = append(m.Images, conversation.Image{URL: f.URL})
		return nil
	}
	data, err := r.Fetch(ctx, f.URL, limit)
	switch {
	case errors.Is(err, ErrTooLarge):
		m.Ignored = append(m.Ignored, tooLarge)
		return nil
	case err != nil && kind == Image && r.Public:
		m.Images = append(m.Images, conversation.Image{URL: f.URL})
		return err
	case err != nil:
		m.Ignored = append(m.Ignored, name+" (download failed)")
		return err
	case kind == Image:
		// The bytes decide the format: a label can lie, and a sign-in page
		// served in a picture's place is no picture.
		ct := http.DetectContentType(data)
		if !imageTypes[ct] {
			m.Ignored = append(m.Ignored, name+" (unsupported image format)")
			return nil
		}
		m.Images = append(m.Images, conversation.Image{URL: "data:" + ct + ";base64," + base64.StdEncoding.EncodeToString(data)})
	case !utf8.Valid(data):
		m.Ignored = append(m.Ignored, name+" (not UTF-8 text)")
	default:
		m.Files = append(m.Files, conversation.File{Name: name, Text: string(data)})
	}
	return nil
}

// Size writes a byte count for people: "8 MB", "1.5 MB", "256 KB", "100 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

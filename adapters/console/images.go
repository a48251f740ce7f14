package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/arkbot/arkbot/conversation"
)

// Pictures sets the directory /image saves pictures in (default: a
// directory arkbot-pictures in the system's temporary directory). It is
// the only place the bot writes files.
func Pictures(dir string) Option { return func(c *Console) { c.pictures = dir } }

// picturesDir is where pictures are saved.
func (c *Console) picturesDir() string {
	if c.pictures != "" {
		return c.pictures
	}
	return filepath.Join(os.TempDir(), "arkbot-pictures")
}

// SendPictures implements conversation.ImageReply: it saves each picture
// in the pictures directory and prints its path under the caption.
func (r *reply) SendPictures(ctx context.Context, caption string, pics []conversation.Picture) ([]string, error) {
	dir := r.c.picturesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("console: pictures directory: %w", err)
	}
	paths := make([]string, 0, len(pics))
	for _, p := range pics {
		if err := ctx.Err(); err != nil {
			return paths, err
		}
		f, err := os.CreateTemp(dir, strings.TrimSuffix(p.Name, filepath.Ext(p.Name))+"-*"+filepath.Ext(p.Name))
		if err != nil {
			return paths, fmt.Errorf("console: saving a picture: %w", err)
		}
		_, err = f.Write(p.Data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("console: saving a picture: %w", err)
		}
		paths = append(paths, f.Name())
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.open {
		fmt.Fprintln(r.c.out)
		r.open = false
	}
	fmt.Fprintf(r.c.out, "🖼  %s\n", caption)
	for _, p := range paths {
		fmt.Fprintf(r.c.out, "   saved to %s\n", p)
	}
	r.pictures = true
	return paths, nil
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/internal/testing/arktest"
)

// /image in the console: the picture is saved under console.pictures_dir
// and its path printed; /usage counts it; an error reads plainly.
func TestConsoleImage(t *testing.T) {
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, ark.URL, "", `
images:
  model: doubao-seedream-4-0-250828
console:
  pictures_dir: `+dir+`
`)
	ark.EnqueueImages(arktest.ImageResponse{}, arktest.ImageResponse{ErrorCode: "InputTextSensitiveContentDetected"})
	out, errs, code := runBot(t, cfg, "/image a lighthouse at dawn\n/image something rude\n/usage\n")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(files) != 1 {
		t.Fatalf("saved %v\n%s", files, out)
	}
	data, err := os.ReadFile(files[0])
	if err != nil || !bytes.Equal(data, arktest.DefaultPicture) {
		t.Fatalf("saved picture: %d bytes, %v", len(data), err)
	}
	for _, want := range []string{"🎨 Drawing…", "🖼  a lighthouse at dawn", "saved to " + files[0],
		"⚠ Ark's content moderation blocked this prompt", "Pictures today: **1**"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

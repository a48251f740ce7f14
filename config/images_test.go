package config

import (
	"strings"
	"testing"
	"time"
)

func TestImagesDefaultsAndOff(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "sk-1"})
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Images.Enabled() {
		t.Fatal("/image on without a model")
	}
	c, err = Parse([]byte(minimal + `
images:
  model: doubao-seedream-4-0-250828
limits:
  daily_images: 20
`))
	if err != nil {
		t.Fatal(err)
	}
	i := c.Images
	if !i.Enabled() || i.Size != "2K" || !*i.Watermark || !*i.Edit || i.Sequential != 1 || i.ResponseFormat != "url" ||
		i.Timeout.D() != 3*time.Minute || i.DownloadTimeout.D() != 30*time.Second || i.MaxBytes != 20<<20 || c.Limits.DailyImages != 20 {
		t.Fatalf("defaults: %+v, limit %d", i, c.Limits.DailyImages)
	}
	c, err = Parse([]byte(minimal + `
images:
  model: ep-pictures
  size: 2048x1152
  watermark: false
  edit: false
  sequential: 4
  response_format: b64_json
  daily_images: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if i := c.Images; i.Size != "2048x1152" || *i.Watermark || *i.Edit || i.Sequential != 4 || i.ResponseFormat != "b64_json" || i.DailyImages != 5 {
		t.Fatalf("set: %+v", i)
	}
}

func TestImagesChecked(t *testing.T) {
	env(t, map[string]string{"ARK_API_KEY": "sk-1"})
	for yaml, want := range map[string]string{
		"images:\n  model: m\n  size: huge\n":           "images.size",
		"images:\n  model: m\n  sequential: 16\n":       "images.sequential",
		"images:\n  model: m\n  response_format: png\n": "images.response_format",
		"images:\n  model: m\n  daily_images: -1\n":     "images.daily_images",
		"limits:\n  daily_images: -2\n":                 "limits.daily_images",
		"images:\n  model: m\n  watermarks: false\n":    "watermarks",
		"images:\n  model: m\n  watermark: sometimes\n": "images.watermark",
	} {
		_, err := Parse([]byte(minimal + yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", yaml, err)
		}
	}
}

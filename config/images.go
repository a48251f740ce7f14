package config

import (
	"regexp"
	"time"
)

// Images configures /image: pictures made by a Seedream model. It is off
// while Model is empty.
type Images struct {
	// Model is the Ark image model ID (e.g. doubao-seedream-4-0-250828) or
	// an endpoint ID (ep-…); empty turns /image off.
	Model string `yaml:"model"`
	// Size is the pictures' size: "1K", "2K", "4K" or "WxH" (e.g.
	// "2048x2048"); edits use "adaptive".
	Size string `yaml:"size"`
	// Watermark has Ark mark the pictures as AI-made (Ark's default).
	Watermark *bool `yaml:"watermark"`
	// Sequential lets one prompt make up to this many pictures (1–15).
	Sequential int `yaml:"sequential"`
	// Edit says the model changes pictures (image-to-image): an attached
	// picture, or the thread's latest one.
	Edit *bool `yaml:"edit"`
	// ResponseFormat is how Ark hands the pictures over: url (downloaded
	// at once) or b64_json (inline).
	ResponseFormat string `yaml:"response_format"`
	// Timeout bounds one generation; DownloadTimeout one result's download.
	Timeout         Duration `yaml:"timeout"`
	DownloadTimeout Duration `yaml:"download_timeout"`
	// MaxBytes caps one picture.
	MaxBytes int64 `yaml:"max_bytes"`
	// DailyImages is the per-user daily limit on this model, on top of
	// limits.daily_images (0: none).
	DailyImages int64 `yaml:"daily_images"`
}

// Enabled reports whether /image is on.
func (i Images) Enabled() bool { return i.Model != "" }

func (i *Images) applyDefaults() {
	setDefault(&i.Size, "2K")
	if i.Watermark == nil {
		i.Watermark = new(true)
	}
	if i.Sequential == 0 {
		i.Sequential = 1
	}
	if i.Edit == nil {
		i.Edit = new(true)
	}
	setDefault(&i.ResponseFormat, "url")
	setDur(&i.Timeout, 3*time.Minute)
	setDur(&i.DownloadTimeout, 30*time.Second)
	if i.MaxBytes == 0 {
		i.MaxBytes = 20 << 20
	}
}

var imageSize = regexp.MustCompile(`^([1-4]K|[1-9][0-9]{2,3}x[1-9][0-9]{2,3})$`)

func (i *Images) validate(errs *fieldErrors) {
	if !imageSize.MatchString(i.Size) {
		errs.add("images.size", `must be 1K, 2K, 4K or WIDTHxHEIGHT (e.g. 2048x2048), not %q`, i.Size)
	}
	if i.Sequential < 1 || i.Sequential > 15 {
		errs.add("images.sequential", "must be 1 to 15 pictures per prompt, not %d", i.Sequential)
	}
	switch i.ResponseFormat {
	case "url", "b64_json":
	default:
		errs.add("images.response_format", "must be url or b64_json, not %q", i.ResponseFormat)
	}
	if i.Timeout < 0 || i.DownloadTimeout < 0 {
		errs.add("images.timeout", "timeouts must not be negative")
	}
	nonNegative(errs, "images.max_bytes", i.MaxBytes)
	nonNegative(errs, "images.daily_images", i.DailyImages)
}

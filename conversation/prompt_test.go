package conversation

import (
	"strings"
	"testing"
)

// promptValues are the placeholders the tests expand, as a Replacer's
// old/new pairs.
var promptValues = []string{"{date}", "2026-11-27 (Friday)", "{user}", "Ada {x}", "{model}", "doubao", "{platform}", ""}

func promptValue(name string) (string, bool) {
	for i := 0; i < len(promptValues); i += 2 {
		if promptValues[i] == name {
			return promptValues[i+1], true
		}
	}
	return "", false
}

func TestExpandPrompt(t *testing.T) {
	for tmpl, want := range map[string]string{
		"":                                  "",
		"no placeholders":                   "no placeholders",
		"Today is {date}.":                  "Today is 2026-11-27 (Friday).",
		"{user}{model}":                     "Ada {x}doubao",
		"{{date}}":                          "{2026-11-27 (Friday)}",
		"{unknown} {date":                   "{unknown} {date",
		"on {platform}, {model}; {model}!}": "on , doubao; doubao!}",
		"}{":                                "}{",
	} {
		if got := expandPrompt(tmpl, promptValue); got != want {
			t.Errorf("expandPrompt(%q) = %q, want %q", tmpl, got, want)
		}
	}
}

// FuzzExpandPrompt holds expandPrompt to strings.Replacer, which the
// prompt was expanded with before.
func FuzzExpandPrompt(f *testing.F) {
	for _, s := range []string{"Today is {date}.", "{{user}}", "{model", "x{}{platform}y", "{date}{time}"} {
		f.Add(s)
	}
	r := strings.NewReplacer(promptValues...)
	f.Fuzz(func(t *testing.T, tmpl string) {
		if got, want := expandPrompt(tmpl, promptValue), r.Replace(tmpl); got != want {
			t.Errorf("expandPrompt(%q) = %q, Replacer gives %q", tmpl, got, want)
		}
	})
}

package conversation

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
		ok   bool
	}{
		{"/model", Command{"model", ""}, true},
		{"  /model   deepseek-r1 ", Command{"model", "deepseek-r1"}, true},
		{"/MODEL Doubao", Command{"model", "Doubao"}, true},
		{"/model\tdoubao", Command{"model", "doubao"}, true},
		{"/model\ndoubao", Command{"model", "doubao"}, true},
		{"／reset", Command{"reset", ""}, true},
		{"!help", Command{"help", ""}, true},
		{"/etc/hosts is a file", Command{}, false},
		{"what is /model?", Command{}, false},
		{"/", Command{}, false},
		{"/ model", Command{}, false},
		{"/模型", Command{}, false},
		{"hello", Command{}, false},
	} {
		got, ok := ParseCommand(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"/model doubao", "/reset", "!help me", "／usage", "/a/b", "/\x00", "/model   x y z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseCommand(s)
		if !ok {
			if c != (Command{}) {
				t.Fatalf("not a command but got %+v", c)
			}
			return
		}
		if c.Name == "" || c.Name != strings.ToLower(c.Name) || strings.ContainsAny(c.Name, "/ \t\n") {
			t.Fatalf("bad name %q from %q", c.Name, s)
		}
		if c.Arg != strings.TrimSpace(c.Arg) {
			t.Fatalf("arg not trimmed: %q", c.Arg)
		}
		if utf8.ValidString(s) && !utf8.ValidString(c.Arg) {
			t.Fatalf("arg not valid UTF-8")
		}
	})
}

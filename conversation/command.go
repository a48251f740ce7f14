package conversation

import (
	"strings"
	"unicode"
)

// Command is a chat command such as "/model deepseek-r1".
type Command struct {
	Name string // lower-case, without the slash: "model", "reset", …
	Arg  string // the rest, trimmed
}

// Commands the engine answers itself.
const (
	CmdHelp   = "help"
	CmdModel  = "model"
	CmdModels = "models"
	CmdReset  = "reset"
	CmdUsage  = "usage"
	CmdStop   = "stop"
	// CmdRetry answers the conversation's latest question again, replacing
	// the latest answer in its memory; "regenerate" is the same command.
	CmdRetry = "retry"
	// CmdSearch turns web search on or off (Responses API models).
	CmdSearch = "search"
	// CmdThink sets the models' thinking: on, off or auto.
	CmdThink = "think"
)

// ParseCommand reads a command at the start of text: "/name arg…" (also
// "!name" and the full-width "／name" that CJK keyboards type). A leading
// word with another slash in it ("/etc/hosts …") is not a command.
func ParseCommand(text string) (Command, bool) {
	text = strings.TrimSpace(text)
	rest, ok := strings.CutPrefix(text, "/")
	if !ok {
		if rest, ok = strings.CutPrefix(text, "／"); !ok {
			if rest, ok = strings.CutPrefix(text, "!"); !ok {
				return Command{}, false
			}
		}
	}
	name, arg, _ := strings.Cut(rest, " ")
	if i := strings.IndexFunc(name, unicode.IsSpace); i >= 0 {
		name, arg = name[:i], name[i:]+" "+arg
	}
	if name == "" || len(name) > 32 {
		return Command{}, false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return Command{}, false
		}
	}
	name = strings.ToLower(name)
	if name == "regenerate" {
		name = CmdRetry
	}
	return Command{Name: name, Arg: strings.TrimSpace(arg)}, true
}

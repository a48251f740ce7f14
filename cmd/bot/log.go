package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/arkbot/arkbot/config"
)

// newLogger builds the slog logger the config asks for. Every secret of the
// configuration is replaced by [redacted] wherever it shows up in a message
// or an attribute, so a token echoed back in an API error never reaches the log.
func newLogger(w io.Writer, cfg config.Log, secrets []string, level slog.Level) *slog.Logger {
	r := redactor(secrets)
	opts := &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Value.Kind() {
			case slog.KindString:
				a.Value = slog.StringValue(r.Replace(a.Value.String()))
			case slog.KindAny:
				if v := a.Value.Any(); v != nil {
					if err, ok := v.(error); ok {
						a.Value = slog.StringValue(r.Replace(err.Error()))
					} else if s, ok := v.(fmt.Stringer); ok {
						a.Value = slog.StringValue(r.Replace(s.String()))
					}
				}
			}
			return a
		},
	}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// warnings is a handler passing every record to Handler and the message of
// each warning or error, redacted, to ch; it drops them while ch is full.
type warnings struct {
	slog.Handler
	ch     chan<- string
	redact *strings.Replacer
}

func (w warnings) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		select {
		case w.ch <- w.redact.Replace(r.Message):
		default:
		}
	}
	return w.Handler.Handle(ctx, r)
}

func (w warnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnings{w.Handler.WithAttrs(attrs), w.ch, w.redact}
}

func (w warnings) WithGroup(name string) slog.Handler {
	return warnings{w.Handler.WithGroup(name), w.ch, w.redact}
}

func redactor(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		if len(s) >= 4 {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	return strings.NewReplacer(pairs...)
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

// openConsoleLog opens, for appending, the log file of an interactive
// console: arkbot/console.log in the user's cache directory, else in the
// temporary directory.
func openConsoleLog() (*os.File, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "arkbot")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, "console.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}

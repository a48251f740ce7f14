// Command bot runs the Ark chat bot on Slack, Discord, or a terminal console.
//
//	bot [-config config.yaml] [-console] [-check-config] [-check]
//
// With no messenger credentials configured it runs the console when stdin
// is a terminal (or with -console), and refuses to start otherwise; with no
// redis.url it uses an embedded in-memory Redis.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/arkbot/arkbot/adapters/console"
	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/wire"
)

func main() {
	wire.TuneGC()
	// SIGINT is run's: it shuts down, except in an interactive console.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: flags, config, wiring, and shutdown.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "config.yaml", "path of the configuration file")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	checkAll := fs.Bool("check", false, "validate the configuration, then try Ark with every registered model, Redis, and the Slack and Discord tokens, and exit (1 if any check fails)")
	forceConsole := fs.Bool("console", false, "chat on stdin and stdout even when messengers are configured (the default with none, on a terminal)")
	probe := fs.String("healthcheck", "", "GET this URL, exit 0 if it answers 2xx (for container health checks)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *probe != "" {
		return healthcheck(ctx, *probe, stderr)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	if *check || *checkAll {
		fmt.Fprintf(stdout, "%s: OK (%d models, default %s)\n", *cfgPath, len(cfg.Models), cfg.DefaultModel)
		if *checkAll && checkLive(ctx, cfg, stdout) > 0 {
			return 1
		}
		return 0
	}
	messengers := cfg.Slack.Enabled() || cfg.Discord.Enabled()
	interactive := isTerminal(stdin)
	useConsole := *forceConsole || !messengers && interactive
	if !useConsole && !messengers {
		fmt.Fprintln(stderr, msgNobodyToChatWith)
		return 1
	}
	level := parseLevel(cfg.Log.Level)
	logTo := stderr
	if useConsole && interactive {
		// Logs written to the terminal would land inside the answers.
		f, err := openConsoleLog()
		if err != nil {
			fmt.Fprintf(stderr, "console log: %v\n", err)
			return 1
		}
		defer f.Close()
		fmt.Fprintf(stdout, "\x1b[2mLogs: %s\x1b[0m\n", f.Name())
		logTo = f
	} else if useConsole && level < slog.LevelWarn {
		level = slog.LevelWarn // keep the transcript readable; warnings still show
	}
	log := newLogger(logTo, cfg.Log, cfg.Secrets(), level)
	var warned chan string
	if logTo != stderr {
		// The console shows warnings, briefly, between answers.
		warned = make(chan string, 16)
		log = slog.New(warnings{log.Handler(), warned, redactor(cfg.Secrets())})
	}
	slog.SetDefault(log)

	b, err := newBot(cfg, log)
	if err != nil {
		log.Error("start-up failed", "err", err)
		if logTo != stderr {
			fmt.Fprintf(stderr, "start-up failed: %s\n", redactor(cfg.Secrets()).Replace(err.Error()))
		}
		return 1
	}
	defer b.close()

	if !useConsole || !interactive {
		// Ctrl-C shuts down; in an interactive console it stops the answer.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
	}
	if useConsole {
		opts := []console.Option{console.Interactive(interactive),
			console.ShowThinking(cfg.Console.ShowThinking), console.User(cfg.Console.User), console.Pictures(cfg.Console.PicturesDir)}
		if interactive {
			intr := make(chan os.Signal, 1)
			signal.Notify(intr, os.Interrupt)
			defer signal.Stop(intr)
			opts = append(opts, console.Interrupts(intr), console.Warnings(warned))
		}
		err := console.New(b.engine, stdin, stdout, opts...).Run(ctx)
		total := cfg.Server.ShutdownTimeout.D()
		sctx, cancel := context.WithTimeout(context.Background(), total)
		b.shutdown(sctx, total)
		cancel()
		if err != nil {
			log.Error("console", "err", err)
			return 1
		}
		return 0
	}
	return b.serve(ctx, cfg)
}

// msgNobodyToChatWith is why a process with no messenger and no terminal
// does not start.
const msgNobodyToChatWith = "no messenger is configured and stdin is not a terminal, so there is nobody to chat with: " +
	"set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode) or SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP mode) for Slack, " +
	"or DISCORD_BOT_TOKEN for Discord; or run with -console to chat on stdin and stdout, or in a terminal"

// isTerminal reports whether f is a terminal.
func isTerminal(f io.Reader) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// healthcheck probes url, for images without curl.
func healthcheck(ctx context.Context, url string, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(stderr, resp.Status)
		return 1
	}
	return 0
}

// bot is the wired process: store, Ark client, engine, HTTP listener.
type bot struct {
	log        *slog.Logger
	store      *conversation.Store
	engine     *conversation.Engine
	closeRedis func()
	ready      []func() bool
}

func newBot(cfg *config.Config, log *slog.Logger) (*bot, error) {
	rdb, closeRedis, err := openRedis(cfg.Redis, log)
	if err != nil {
		return nil, err
	}
	settleMinReplicas(context.Background(), &cfg.Redis, rdb, log)
	engine, store, err := wire.Core(cfg, rdb, log)
	if err != nil {
		closeRedis()
		return nil, err
	}
	return &bot{log: log, store: store, engine: engine, closeRedis: closeRedis}, nil
}

// shutdown stops the engine within ctx's deadline, the whole of
// server.shutdown_timeout: answers in flight get its grace part to
// finish, then are interrupted, save and show their final frames.
func (b *bot) shutdown(ctx context.Context, total time.Duration) {
	b.engine.Shutdown(ctx, wire.ShutdownGrace(total))
}

func (b *bot) close() { b.closeRedis() }

// serve runs the messenger adapters and the HTTP listener until ctx ends.
func (b *bot) serve(ctx context.Context, cfg *config.Config) int {
	mux := http.NewServeMux()
	runners, err := b.adapters(cfg, mux)
	if err != nil {
		b.log.Error("start-up failed", "err", err)
		return 1
	}
	b.routes(mux)
	// /stop reaches the answer whichever replica runs it.
	runners = append(runners, func(ctx context.Context) error { b.engine.ListenForStops(ctx, nil); return nil })
	srv := &http.Server{Addr: cfg.Server.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, len(runners)+1)
	go func() {
		b.log.Info("listening", "addr", cfg.Server.Addr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("server.addr %s: %w", cfg.Server.Addr, err)
		}
	}()
	actx, stopAdapters := context.WithCancel(context.Background())
	done := make(chan struct{}, len(runners))
	for _, r := range runners {
		go func() {
			if err := r(actx); err != nil && actx.Err() == nil {
				errc <- err
			}
			done <- struct{}{}
		}()
	}
	code := 0
	total := cfg.Server.ShutdownTimeout.D()
	select {
	case <-ctx.Done():
		b.log.Info("shutting down: finishing answers in flight", "grace", wire.ShutdownGrace(total), "deadline", total)
	case err := <-errc:
		b.log.Error("stopping", "err", err)
		code = 1
	}
	// One deadline for everything: the engine's answers, the adapters'
	// drain and the HTTP server's.
	sctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	b.shutdown(sctx, total)
	stopAdapters()
	for range runners {
		select {
		case <-done:
		case <-sctx.Done():
		}
	}
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if sctx.Err() != nil {
		b.log.Warn("shutdown deadline reached; abandoning what still runs", "deadline", total)
	}
	b.log.Info("stopped")
	return code
}

// routes serves /healthz, /readyz and /metrics.
func (b *bot) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := b.store.Ping(ctx); err != nil {
			http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		for _, ready := range b.ready {
			if !ready() {
				http.Error(w, "messenger not connected", http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", metricsHandler())
}

package conversation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/arkbot/arkbot/metrics"
)

// command runs a chat command and returns the text to answer with.
func (e *Engine) command(ctx context.Context, m Message, c Command, adm Admission) (string, error) {
	switch c.Name {
	case CmdHelp:
		return e.help(m), nil
	case CmdModels:
		return e.modelList(ctx, m, adm)
	case CmdModel:
		if c.Arg == "" {
			return e.modelList(ctx, m, adm)
		}
		return e.switchModel(ctx, m, c.Arg)
	case CmdReset:
		if err := e.store.Reset(ctx, m.ThreadKey()); err != nil {
			return "", err
		}
		return "🧹 Done: I've forgotten this conversation. Your next message starts fresh (the model choice stays).", nil
	case CmdUsage:
		return e.usage(m, adm, e.imageUsage(ctx, m)), nil
	case CmdStop:
		return e.stopThread(ctx, m)
	case CmdFeedback:
		return e.feedbackReport(ctx, m)
	case CmdSearch:
		return e.searchCommand(ctx, m, c.Arg, adm)
	case CmdThink:
		return e.thinkCommand(ctx, m, c.Arg, adm)
	}
	return fmt.Sprintf("I don't know the command /%s. Type /help for the list.", c.Name), nil
}

func (e *Engine) help(m Message) string {
	console := m.Platform == PlatformConsole
	switchScope, stop := "in a thread: for this thread; elsewhere: for the whole channel", "stop the answer in progress in this conversation, if you asked it (what it said so far is kept)"
	if console {
		switchScope, stop = "for this conversation", "stop the answer in progress, keeping what it said so far (Ctrl-C does too)"
	}
	lines := []string{
		"**What I can do**: ask me anything; I answer with Volcengine Ark models and remember the conversation.",
		"• `/model`: show the model in use here and the ones you can pick",
		"• `/model <name>`: switch model (" + switchScope + ")",
		"• `/models`: list the models with their descriptions",
		"• `/reset`: forget this conversation and start fresh",
		"• `/retry`: answer the latest question again (with the model in use now), replacing the latest answer",
		"• `/stop`: " + stop,
		"• `/search on|off`: let models that can search the web do so, with sources (" + switchScope + "); `/search` shows the setting",
		"• `/think on|off|auto`: make models that support it think before answering, or not (" + switchScope + "); `/think default` goes back to the model's",
		"• `/usage`: your token usage today and your limits",
		"• `/help`: this message",
	}
	if e.painter != nil {
		lines = slices.Insert(lines, len(lines)-2, "• `/image <prompt>`: draw a picture; with a picture attached, or in the thread of one I drew, change it (`/image make it blue`)")
	}
	if m.User.Admin {
		lines = append(lines, "• `/feedback`: (admins) the 👍/👎 tally per model")
	}
	switch m.Platform {
	case PlatformSlack:
		lines = append(lines, "In a thread Slack keeps `/` for its own commands: type `!stop`, `!retry`, `!model deepseek-r1`…, or mention me first (`@me /stop`).")
	case PlatformConsole:
		lines = append(lines, "• `/quit`: leave (Ctrl-D on an empty line does too)")
	}
	return strings.Join(lines, "\n")
}

func (e *Engine) modelList(ctx context.Context, m Message, adm Admission) (string, error) {
	tm, err := e.store.ThreadModel(ctx, m.ThreadKey())
	if err != nil {
		return "", err
	}
	ts, err := e.store.ThreadSettings(ctx, m.ThreadKey())
	if err != nil {
		return "", err
	}
	cm, err := e.store.ChannelModel(ctx, m.ChannelKey())
	if err != nil {
		return "", err
	}
	cur := e.modelFor(tm, cm)
	scope := "the default"
	switch {
	case e.model(tm) != nil:
		scope = "chosen for this thread"
	case e.model(cm) != nil:
		scope = "chosen for this channel"
	}
	if scope != "the default" && m.Platform == PlatformConsole {
		scope = "chosen for this conversation"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Current model: **%s** (`%s`), %s.\n", cur.Name, cur.ID, scope)
	fmt.Fprintf(&b, "In force here: %s.\n\nAvailable models:\n", inForceText(cur, settingsFor(cur, ts, adm.ChannelSettings)))
	for _, mdl := range e.models {
		mark := "•"
		if mdl.Name == cur.Name {
			mark = "▸"
		}
		fmt.Fprintf(&b, "%s **%s** (`%s`)%s\n", mark, mdl.Name, mdl.ID, modelTraits(mdl))
	}
	b.WriteString("\nSwitch with `/model <name>`.")
	return b.String(), nil
}

func modelTraits(m Model) string {
	var t []string
	if m.Description != "" {
		t = append(t, m.Description)
	}
	if m.Vision {
		t = append(t, "sees images")
	}
	if m.Thinking == "enabled" || m.Thinking == "auto" {
		t = append(t, "thinks before answering")
	}
	if m.AdminsOnly {
		t = append(t, "admins only")
	}
	if len(t) == 0 {
		return ""
	}
	return ": " + strings.Join(t, "; ")
}

// inForceText says how answers with model are made here.
func inForceText(model *Model, f inForce) string {
	var parts []string
	if model.responses() {
		parts = append(parts, "Responses API (Ark keeps and caches the conversation)")
	} else {
		parts = append(parts, "chat completions")
	}
	switch {
	case f.search:
		parts = append(parts, "web search on")
	case model.responses() && model.Search != nil:
		parts = append(parts, "web search off")
	default:
		parts = append(parts, "no web search")
	}
	switch f.think {
	case "enabled":
		parts = append(parts, "thinking on")
	case "disabled":
		parts = append(parts, "thinking off")
	case "auto":
		parts = append(parts, "thinking when needed (auto)")
	default:
		parts = append(parts, "thinking as the model does by default")
	}
	if model.ReasoningEffort != "" {
		parts = append(parts, "reasoning effort "+model.ReasoningEffort)
	}
	return strings.Join(parts, " · ")
}

// scopeWord names where a /search or /think choice applies.
func scopeWord(m Message) string {
	switch {
	case m.InThread:
		return "this thread"
	case m.DM || m.Platform == PlatformConsole:
		return "this conversation"
	}
	return "this channel"
}

// setSetting stores a /search or /think choice for m's thread, or its
// channel outside a thread.
func (e *Engine) setSetting(ctx context.Context, m Message, field, value string) error {
	if m.InThread {
		return e.store.SetThreadSetting(ctx, m.ThreadKey(), field, value)
	}
	return e.store.SetChannelSetting(ctx, m.ChannelKey(), field, value)
}

// current is m's model and the settings in force for it.
func (e *Engine) current(ctx context.Context, m Message, adm Admission) (*Model, inForce, error) {
	tm, err := e.store.ThreadModel(ctx, m.ThreadKey())
	if err != nil {
		return nil, inForce{}, err
	}
	ts, err := e.store.ThreadSettings(ctx, m.ThreadKey())
	if err != nil {
		return nil, inForce{}, err
	}
	model := e.modelFor(tm, adm.ChannelModel)
	return model, settingsFor(model, ts, adm.ChannelSettings), nil
}

// searchCommand runs /search: on, off, lock and unlock (admins), or
// nothing to show the setting.
func (e *Engine) searchCommand(ctx context.Context, m Message, arg string, adm Admission) (string, error) {
	model, f, err := e.current(ctx, m, adm)
	if err != nil {
		return "", err
	}
	cannot := ""
	if !model.responses() || model.Search == nil {
		cannot = fmt.Sprintf(" (%s can't search the web: an operator can give it `api: responses` and a `search` section in config.yaml; pick another model with /model)", model.Name)
	}
	locked := adm.ChannelSettings.Locked
	switch arg = strings.ToLower(arg); arg {
	case "":
		state := "off"
		if f.search {
			state = "on"
		}
		lock := ""
		if locked {
			lock = " An admin locked this setting in this channel."
		}
		return fmt.Sprintf("Web search is **%s** for %s%s.%s Change it with `/search on` or `/search off`.", state, scopeWord(m), cannot, lock), nil
	case "on", "off":
		if locked && !m.User.Admin {
			return "An admin locked web search in this channel, so it stays as it is.", nil
		}
		if err := e.setSetting(ctx, m, "search", arg); err != nil {
			return "", err
		}
		if arg == "on" {
			return fmt.Sprintf("🔎 Web search is now **on** for %s: answers that need fresh facts search the web and list their sources%s. Ark bills each search.", scopeWord(m), cannot), nil
		}
		return fmt.Sprintf("Web search is now **off** for %s.", scopeWord(m)), nil
	case "lock", "unlock":
		if !m.User.Admin {
			return "Only admins can lock or unlock web search.", nil
		}
		v := ""
		if arg == "lock" {
			v = "1"
		}
		if err := e.store.SetChannelSetting(ctx, m.ChannelKey(), "lock", v); err != nil {
			return "", err
		}
		if arg == "lock" {
			return "🔒 Web search is locked in this channel: only admins can turn it on or off here.", nil
		}
		return "🔓 Web search is unlocked in this channel: anyone can turn it on or off.", nil
	}
	return "Use `/search on`, `/search off`, or `/search` to see the setting (admins: `/search lock`, `/search unlock`).", nil
}

// thinkCommand runs /think: on, off, auto, default, or nothing to show
// the setting.
func (e *Engine) thinkCommand(ctx context.Context, m Message, arg string, adm Admission) (string, error) {
	values := map[string]string{"on": "enabled", "off": "disabled", "auto": "auto", "default": ""}
	arg = strings.ToLower(arg)
	v, ok := values[arg]
	if !ok || arg == "" {
		model, f, err := e.current(ctx, m, adm)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("For %s with %s: %s. Use `/think on`, `/think off`, `/think auto` or `/think default`.",
			scopeWord(m), model.Name, inForceText(model, f)), nil
	}
	if err := e.setSetting(ctx, m, "think", v); err != nil {
		return "", err
	}
	if v == "" {
		return fmt.Sprintf("Thinking for %s is back to each model's default.", scopeWord(m)), nil
	}
	return fmt.Sprintf("🧠 Thinking is now **%s** for %s (sent as `thinking: %s` to models that support it).", arg, scopeWord(m), v), nil
}

func (e *Engine) switchModel(ctx context.Context, m Message, name string) (string, error) {
	if !m.User.CanSwitchModel && !m.User.Admin {
		return "Only the bot's model admins can switch models here.", nil
	}
	mdl := e.model(name)
	if mdl == nil {
		return fmt.Sprintf("There is no model called %q. Registered models: %s.", name, strings.Join(e.modelNames, ", ")), nil
	}
	if mdl.AdminsOnly && !m.User.Admin {
		return fmt.Sprintf("The model %s is reserved for admins.", mdl.Name), nil
	}
	if m.InThread {
		if err := e.store.SetThreadModel(ctx, m.ThreadKey(), mdl.Name); err != nil {
			return "", err
		}
		return fmt.Sprintf("✅ This thread now uses **%s** (`%s`).", mdl.Name, mdl.ID), nil
	}
	if err := e.store.SetChannelModel(ctx, m.ChannelKey(), mdl.Name); err != nil {
		return "", err
	}
	if m.Platform == PlatformConsole {
		return fmt.Sprintf("✅ This conversation now uses **%s** (`%s`).", mdl.Name, mdl.ID), nil
	}
	where := "this channel"
	if m.DM {
		where = "this conversation"
	}
	return fmt.Sprintf("✅ New conversations in %s now use **%s** (`%s`). Threads that picked their own model keep it.", where, mdl.Name, mdl.ID), nil
}

// usage is /usage's answer; pictures is imageUsage's line.
func (e *Engine) usage(m Message, adm Admission, pictures string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Your usage today (UTC %s): **%d tokens**", Day(e.now()), adm.UsedToday)
	if q := e.limits.DailyTokens; q > 0 && !m.User.Admin {
		fmt.Fprintf(&b, " of %d", q)
	}
	b.WriteString(".\n")
	for _, mdl := range e.models {
		used := adm.UsedByModel[mdl.Name]
		if used == 0 && mdl.DailyTokens == 0 {
			continue
		}
		fmt.Fprintf(&b, "• %s: %d tokens", mdl.Name, used)
		if mdl.DailyTokens > 0 && !m.User.Admin {
			fmt.Fprintf(&b, " of %d", mdl.DailyTokens)
		}
		b.WriteString("\n")
	}
	if adm.CachedToday > 0 {
		fmt.Fprintf(&b, "Of these, %d were input tokens Ark had cached (billed at its lower cached rate).\n", adm.CachedToday)
	}
	if adm.SearchesToday > 0 || e.limits.DailySearches > 0 {
		fmt.Fprintf(&b, "Web searches: %d", adm.SearchesToday)
		if q := e.limits.DailySearches; q > 0 && !m.User.Admin {
			fmt.Fprintf(&b, " of %d", q)
		}
		b.WriteString(".\n")
	}
	b.WriteString(pictures)
	if m.User.Admin {
		b.WriteString("You're an admin: no limits apply to you.\n")
	} else if n := e.limits.RequestsPerMinute; n > 0 {
		fmt.Fprintf(&b, "Rate limit: %d messages a minute.\n", n)
	}
	midnight := e.now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	fmt.Fprintf(&b, "Counters reset in %s.", midnight.Sub(e.now()).Round(time.Minute))
	return b.String()
}

// stopThread stops the answer in progress in m's conversation, here or on
// whichever replica runs it, when m's author asked it or is an admin.
func (e *Engine) stopThread(ctx context.Context, m Message) (string, error) {
	out, err := e.requestStop(ctx, m)
	if err != nil {
		return "", err
	}
	return stopNotice(m, out), nil
}

// requestStop stops the answer in progress in m's conversation: this
// process's at once, another replica's through the store.
func (e *Engine) requestStop(ctx context.Context, m Message) (StopOutcome, error) {
	if v, ok := e.threads.Load(m.ThreadKey()); ok {
		a := v.(*answering)
		if a.owner != m.userKey() && !m.User.Admin {
			return StopRefused, nil
		}
		a.cancel(errStopped)
		return StopRequested, nil
	}
	return e.store.RequestStop(ctx, m.ThreadKey(), m.userKey(), m.User.Admin)
}

// stopNotice tells the user what a stop request did.
func stopNotice(m Message, out StopOutcome) string {
	switch {
	case out == StopNothing && m.Platform == PlatformDiscord && !m.InThread:
		// A reply chain is a conversation of its own, out of a slash
		// command's reach; its answer carries a Stop button.
		return msgNothingToStop + " An answer in a reply chain has a Stop button under it."
	case out == StopNothing:
		return msgNothingToStop
	case out == StopRefused:
		return msgNotYours
	}
	return msgStopped
}

// ThreadStopper stops a conversation's answer from a platform's own stop
// control, such as Slack's Stop button on an agent session. *Engine
// implements it; adapters find it with a type assertion.
type ThreadStopper interface {
	// StopThread stops the answer in progress in m's conversation, as /stop
	// does, once per m.DedupeKey across redeliveries and replicas (a
	// repeat reports StopRepeated and does nothing). It returns the notice
	// for m's author.
	StopThread(ctx context.Context, m Message) (StopOutcome, string, error)
}

// StopThread implements ThreadStopper.
func (e *Engine) StopThread(ctx context.Context, m Message) (StopOutcome, string, error) {
	first, err := e.store.FirstTime(ctx, "stop:"+m.DedupeKey(), e.store.opt.DedupeTTL)
	if err != nil {
		metrics.RedisErrors.WithLabelValues("stop").Inc()
		return 0, "", err
	}
	if !first {
		metrics.Messages.WithLabelValues(m.Platform, "duplicate").Inc()
		return StopRepeated, "", nil
	}
	metrics.Messages.WithLabelValues(m.Platform, "command").Inc()
	out, err := e.requestStop(ctx, m)
	if err != nil {
		metrics.RedisErrors.WithLabelValues("stop").Inc()
		return 0, "", err
	}
	return out, stopNotice(m, out), nil
}

package discord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/ratelimit"
	"github.com/arkbot/arkbot/internal/work"
)

// ackTimeout bounds the interaction callback, due within 3 s of the event.
const ackTimeout = 2500 * time.Millisecond

// commandList is what Run registers by bulk overwrite. The commands are
// for the bot installed in guilds, usable there and, with allowDMs, in DMs
// with the bot.
func commandList(allowDMs, pictures bool) []*discordgo.ApplicationCommand {
	contexts := []discordgo.InteractionContextType{discordgo.InteractionContextGuild}
	if allowDMs {
		contexts = append(contexts, discordgo.InteractionContextBotDM)
	}
	installs := []discordgo.ApplicationIntegrationType{discordgo.ApplicationIntegrationGuildInstall}
	promptMax := 6000
	cmds := []*discordgo.ApplicationCommand{
		{Name: "ask", Description: "Ask the AI a question", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "prompt", Description: "Your question", Required: true, MaxLength: promptMax},
			{Type: discordgo.ApplicationCommandOptionAttachment, Name: "file", Description: "An image or a text file to ask about"},
		}},
		{Name: "model", Description: "Show the model in use, or switch it for this thread or channel", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "name", Description: "The model to switch to", Autocomplete: true},
		}},
		{Name: "models", Description: "List the models you can use"},
		{Name: "reset", Description: "Forget this thread's conversation"},
		{Name: "help", Description: "How to talk to the bot"},
		{Name: "usage", Description: "Your token usage today"},
		{Name: "stop", Description: "Stop the answer in progress in this thread"},
		{Name: "search", Description: "Turn web search on or off here, or show it", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "setting", Description: "on, off (admins: lock, unlock)", Choices: choices("on", "off", "lock", "unlock")},
		}},
		{Name: "think", Description: "Make the models think before answering, or not", Options: []*discordgo.ApplicationCommandOption{
			{Type: discordgo.ApplicationCommandOptionString, Name: "setting", Description: "on, off, auto or default", Choices: choices("on", "off", "auto", "default")},
		}},
		{Name: "feedback", Description: "(admins) The 👍/👎 tally per model"},
	}
	if pictures {
		cmds = append(cmds, imageCommand())
	}
	for _, c := range cmds {
		c.Contexts, c.IntegrationTypes = &contexts, &installs
	}
	return cmds
}

func (a *Adapter) registerCommands(ctx context.Context) {
	ids := a.ids()
	app := ids.app
	if app == "" {
		app = ids.bot
	}
	if app == "" {
		app = idFromToken(a.token)
	}
	scopes := []string(a.cfg.GuildIDs)
	if len(scopes) == 0 {
		scopes = []string{""}
	}
	cmds := commandList(*a.cfg.AllowDMs, a.opts.pictures)
	for _, g := range scopes {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := a.sess.ApplicationCommandBulkOverwrite(app, g, cmds, discordgo.WithContext(cctx))
		cancel()
		a.observe("commands.bulk_overwrite", err)
		scope := "global"
		if g != "" {
			scope = "guild " + g
		}
		if err != nil {
			hint := ""
			if isForbidden(err) {
				hint = "re-invite the bot with the applications.commands scope: " + a.InviteURL()
			}
			a.log.Error("could not register slash commands", "scope", scope, "err", err, "hint", hint)
			continue
		}
		a.log.Info("registered slash commands", "scope", scope, "count", len(cmds))
	}
}

// onInteraction routes an INTERACTION_CREATE; raw is the event's JSON.
// Its acknowledgement, due within 3 s, runs on the acks pool, which hands
// any answer on to the work pool.
func (a *Adapter) onInteraction(in *discordgo.Interaction, raw json.RawMessage) {
	var extra struct {
		Channel *discordgo.Channel `json:"channel"`
	}
	if json.Unmarshal(raw, &extra) == nil && extra.Channel != nil && extra.Channel.ID != "" {
		a.cacheChannel(extra.Channel)
	}
	switch in.Type {
	case discordgo.InteractionApplicationCommand:
		a.submit(a.acks, "command", func(context.Context) { a.onCommand(in) })
	case discordgo.InteractionApplicationCommandAutocomplete:
		a.submit(a.acks, "autocomplete", func(context.Context) { a.onAutocomplete(in) })
	case discordgo.InteractionMessageComponent:
		a.submit(a.acks, "button", func(context.Context) { a.onComponent(in) })
	}
}

// answer runs an acknowledged interaction's answer on the work pool. When
// the pool refuses it (full, or shutting down) the user is told: in the
// deferred response, or in a private followup once that was used.
func (a *Adapter) answer(in *discordgo.Interaction, originalUsed bool, what string, fn func(ctx context.Context)) {
	err := a.submit(a.pool, what, fn)
	if err == nil {
		return
	}
	text := "⚠️ I'm busy right now. Please try again in a minute."
	if errors.Is(err, work.ErrClosed) {
		text = "⚠️ I'm restarting and couldn't answer this. Please ask again in a moment."
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	s := &interactionSink{a: a, in: in, ephemeral: true, originalUsed: originalUsed}
	if _, err := s.post(ctx, ratelimit.MustDeliver, text, nil, ""); err != nil {
		a.log.Debug("could not tell the user the bot is busy", "interaction", in.ID, "err", err)
	}
}

// respond sends the interaction callback, on the 3-second clock.
func (a *Adapter) respond(in *discordgo.Interaction, resp *discordgo.InteractionResponse) error {
	ctx, cancel := context.WithTimeout(a.baseCtx, ackTimeout)
	defer cancel()
	// InteractionRespond's request, under a bounded bucket key: discordgo
	// keeps a rate-limit bucket per key for good, and its own key holds
	// the interaction's ID and token, a bucket leaked per slash command.
	endpoint := discordgo.EndpointInteractionResponse(in.ID, in.Token)
	_, err := a.sess.RequestWithBucketID(http.MethodPost, endpoint, *resp, tokenBucket("interaction-callbacks", in.Token),
		discordgo.WithContext(ctx), discordgo.WithRetryOnRatelimit(false))
	a.observe("interactions.callback", err)
	if err != nil {
		a.log.Warn("could not answer an interaction", "interaction", in.ID, "err", err)
	}
	return err
}

func (a *Adapter) respondEphemeral(in *discordgo.Interaction, text string) {
	_ = a.respond(in, &discordgo.InteractionResponse{
		Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: text, Flags: discordgo.MessageFlagsEphemeral, AllowedMentions: noMentions()},
	})
}

func interactionUser(in *discordgo.Interaction) (*discordgo.User, *discordgo.Member, []string) {
	if in.Member != nil && in.Member.User != nil {
		return in.Member.User, in.Member, in.Member.Roles
	}
	return in.User, nil, nil
}

// baseMessage is the Message for a slash command or autocomplete: outside a
// thread it has no Thread (the channel, or the DM, is its scope).
func (a *Adapter) baseMessage(in *discordgo.Interaction, ch chanInfo) (conversation.Message, bool) {
	u, member, roles := interactionUser(in)
	if u == nil {
		return conversation.Message{}, false
	}
	msg := conversation.Message{
		Platform:  conversation.PlatformDiscord,
		Workspace: in.GuildID,
		Channel:   in.ChannelID,
		ID:        in.ID,
		User:      a.user(u, member, roles),
		DM:        in.GuildID == "",
		Mentioned: true,
		Time:      snowflakeTime(in.ID),
	}
	if ch.isThread() {
		msg.Thread, msg.InThread = in.ChannelID, true
		if ch.parent != "" {
			msg.Channel = ch.parent
		}
	}
	return msg, true
}

// checkAccess refuses, ephemerally, a command the allow-lists don't permit.
func (a *Adapter) checkAccess(in *discordgo.Interaction, ch chanInfo) bool {
	u, _, roles := interactionUser(in)
	if u == nil {
		return false
	}
	if in.GuildID == "" && !*a.cfg.AllowDMs {
		if in.Type != discordgo.InteractionApplicationCommandAutocomplete {
			a.respondEphemeral(in, "I don't take direct messages here. Please talk to me in a server channel.")
		}
		return false
	}
	if !a.allowed(in.GuildID, in.ChannelID, ch.parent, u.ID, roles) {
		if in.Type != discordgo.InteractionApplicationCommandAutocomplete {
			a.respondEphemeral(in, "Sorry, I'm not enabled for you in this place.")
		}
		return false
	}
	return true
}

func (a *Adapter) quickChannelInfo(in *discordgo.Interaction) chanInfo {
	ctx, cancel := context.WithTimeout(a.baseCtx, time.Second)
	defer cancel()
	return a.channelInfo(ctx, in.ChannelID, in.GuildID)
}

func (a *Adapter) onCommand(in *discordgo.Interaction) {
	data := in.ApplicationCommandData()
	ch := a.quickChannelInfo(in)
	if !a.checkAccess(in, ch) {
		return
	}
	switch data.Name {
	case "ask", "image":
		a.onAsk(in, data, ch)
	case "model", "models", "reset", "help", "usage", "stop", "search", "think", "feedback":
		a.onSlash(in, data, ch)
	default:
		a.respondEphemeral(in, "I don't know that command.")
	}
}

// onSlash runs /model, /models, /reset, /help, /usage, /stop, /search, /think and /feedback: deferred
// ephemerally, mapped to the engine's text commands, answered by Notice
// into the deferred response.
func (a *Adapter) onSlash(in *discordgo.Interaction, data discordgo.ApplicationCommandInteractionData, ch chanInfo) {
	if a.respond(in, &discordgo.InteractionResponse{
		Type: discordgo.InteractionResponseDeferredChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Flags: discordgo.MessageFlagsEphemeral},
	}) != nil {
		return
	}
	msg, ok := a.baseMessage(in, ch)
	if !ok {
		return
	}
	msg.Text = "/" + data.Name
	if data.Name == "model" {
		if name := strings.TrimSpace(optString(data.Options, "name")); name != "" {
			msg.Text += " " + name
		}
	}
	if v := optString(data.Options, "setting"); v != "" { // /search, /think
		msg.Text += " " + v
	}
	s := &interactionSink{a: a, in: in, ephemeral: true}
	r := a.newReply(msg.DedupeKey(), s, nil, s, "")
	r.onEmpty = func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := s.remove(ctx, "@original"); err != nil {
			a.log.Debug("could not remove an empty command response", "err", err)
		}
	}
	a.answer(in, false, "command", func(ctx context.Context) { a.handle(ctx, msg, r) })
}

// onAsk answers /ask and /image: defer within the 3 s, echo the question
// in the interaction's response, optionally open a thread from that echo,
// then stream the answer as channel messages (see the streaming design
// note in reply.go). The conversation is the thread (in one, or opened for it), or
// the reply chain rooted at the echo, or the DM.
func (a *Adapter) onAsk(in *discordgo.Interaction, data discordgo.ApplicationCommandInteractionData, ch chanInfo) {
	if a.respond(in, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredChannelMessageWithSource}) != nil {
		return
	}
	msg, ok := a.baseMessage(in, ch)
	if !ok {
		return
	}
	a.answer(in, false, "ask", func(ctx context.Context) { a.ask(ctx, in, data, ch, msg) })
}

// ask answers an acknowledged /ask on the work pool.
func (a *Adapter) ask(ctx context.Context, in *discordgo.Interaction, data discordgo.ApplicationCommandInteractionData, ch chanInfo, msg conversation.Message) {
	prompt := strings.TrimSpace(optString(data.Options, "prompt"))
	msg.Text = prompt
	if data.Name == "image" {
		msg.Text = imageText(prompt, optString(data.Options, "size"))
	}
	for _, opt := range []string{"file", "picture"} {
		if id := optString(data.Options, opt); id != "" && data.Resolved != nil {
			if att := data.Resolved.Attachments[id]; att != nil {
				a.attachments(ctx, &msg, []*discordgo.MessageAttachment{att}, true)
			}
		}
	}

	echoID := ""
	ectx, cancel := context.WithTimeout(ctx, callTimeout)
	echo, err := a.webhookEdit(ectx, ratelimit.MustDeliver, in, "@original", echoText(prompt, msg.Images, msg.Files), nil)
	cancel()
	if err != nil {
		a.log.Warn("could not show the question", "interaction", in.ID, "err", err)
	} else {
		echoID = echo.ID
	}

	postChannel, replyTo, chainRoot := in.ChannelID, echoID, ""
	switch {
	case msg.DM, ch.isThread():
	case a.cfg.ThreadPerAsk && echoID != "":
		tctx, cancel := context.WithTimeout(ctx, callTimeout)
		th, err := a.sess.MessageThreadStartComplex(in.ChannelID, echoID, &discordgo.ThreadStart{
			Name: threadName(prompt), AutoArchiveDuration: 1440,
		}, discordgo.WithContext(tctx))
		cancel()
		a.observe("threads.create", err)
		if err == nil {
			a.cacheChannel(th)
			a.joined.Add(th.ID, true)
			msg.Thread = th.ID
			postChannel, replyTo = th.ID, ""
			break
		}
		a.log.Warn("could not open a thread for /ask; answering in the channel", "channel", in.ChannelID, "err", err)
		fallthrough
	default:
		chainRoot = echoID
		if chainRoot == "" {
			chainRoot = in.ID
		} else {
			a.chains.Add(echoID, chainRoot)
		}
		msg.Thread = chainRoot
	}

	r := a.newReply(msg.DedupeKey(),
		&channelSink{a: a, channelID: postChannel, replyTo: replyTo},
		&interactionSink{a: a, in: in, originalUsed: echoID != ""},
		&interactionSink{a: a, in: in, ephemeral: true, originalUsed: true},
		chainRoot)
	r.question = msg.ID
	a.handle(ctx, msg, r)
}

// echoText quotes the question in the /ask response (Discord already shows
// who used the command).
func echoText(prompt string, images []conversation.Image, files []conversation.File) string {
	q := prompt
	if utf8.RuneCountInString(q) > 1800 {
		q = string([]rune(q)[:1799]) + "…"
	}
	lines := strings.Split(q, "\n")
	for i, l := range lines {
		lines[i] = "> " + l
	}
	out := strings.Join(lines, "\n")
	if n := len(images) + len(files); n > 0 {
		out += fmt.Sprintf("\n-# 📎 %d attachment(s)", n)
	}
	return out
}

// threadName is the question's first line, within Discord's 100 characters.
func threadName(prompt string) string {
	name := strings.Join(strings.Fields(prompt), " ")
	if name == "" {
		return "Question"
	}
	if utf8.RuneCountInString(name) > 100 {
		name = string([]rune(name)[:99]) + "…"
	}
	return name
}

func optString(opts []*discordgo.ApplicationCommandInteractionDataOption, name string) string {
	for _, o := range opts {
		if o.Name == name {
			if s, ok := o.Value.(string); ok {
				return s
			}
			return fmt.Sprint(o.Value)
		}
	}
	return ""
}

// onAutocomplete offers models for /model name: the current one first, then
// prefix matches, then other matches of what was typed, at most 25.
func (a *Adapter) onAutocomplete(in *discordgo.Interaction) {
	data := in.ApplicationCommandData()
	var typed string
	for _, o := range data.Options {
		if o.Focused {
			typed, _ = o.Value.(string)
		}
	}
	var choices []*discordgo.ApplicationCommandOptionChoice
	ch := a.quickChannelInfo(in)
	if data.Name == "model" && a.checkAccess(in, ch) {
		if msg, ok := a.baseMessage(in, ch); ok {
			msg.Text = "/model"
			ctx, cancel := context.WithTimeout(a.baseCtx, 1500*time.Millisecond)
			choices = modelChoices(a.h.ModelChoices(ctx, msg), typed)
			cancel()
		}
	}
	if choices == nil {
		choices = []*discordgo.ApplicationCommandOptionChoice{}
	}
	_ = a.respond(in, &discordgo.InteractionResponse{
		Type: discordgo.InteractionApplicationCommandAutocompleteResult,
		Data: &discordgo.InteractionResponseData{Choices: choices},
	})
}

func modelChoices(models []conversation.ModelChoice, typed string) []*discordgo.ApplicationCommandOptionChoice {
	q := strings.ToLower(strings.TrimSpace(typed))
	type ranked struct {
		m    conversation.ModelChoice
		rank int
	}
	var list []ranked
	for _, m := range models {
		name := strings.ToLower(m.Name)
		rank := 0
		switch {
		case q == "":
			rank = 1
		case strings.HasPrefix(name, q):
			rank = 1
		case strings.Contains(name, q), strings.Contains(strings.ToLower(m.ID), q), strings.Contains(strings.ToLower(m.Description), q):
			rank = 2
		default:
			continue
		}
		if m.Current {
			rank = 0
		}
		list = append(list, ranked{m, rank})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].rank < list[j].rank })
	out := []*discordgo.ApplicationCommandOptionChoice{}
	for _, r := range list {
		if len(out) == 25 {
			break
		}
		label := r.m.Name
		if r.m.Current {
			label += " (current)"
		}
		if r.m.Description != "" {
			label += " — " + r.m.Description
		}
		if utf8.RuneCountInString(label) > 100 {
			label = string([]rune(label)[:99]) + "…"
		}
		value := r.m.Name
		if utf8.RuneCountInString(value) > 100 {
			continue
		}
		out = append(out, &discordgo.ApplicationCommandOptionChoice{Name: label, Value: value})
	}
	return out
}

// onComponent handles the Stop, Retry and feedback buttons. Only the asker or an
// admin may stop an answer. A Stop button left behind by an answer that no
// longer runs (the bot restarted) is cleaned up instead.
func (a *Adapter) onComponent(in *discordgo.Interaction) {
	data := in.MessageComponentData()
	if a.onFeedback(in, data.CustomID) {
		return
	}
	if question, ok := strings.CutPrefix(data.CustomID, retryPrefix); ok {
		a.onRetry(in, question)
		return
	}
	key, ok := strings.CutPrefix(data.CustomID, stopPrefix)
	if !ok {
		_ = a.respond(in, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate})
		return
	}
	u, member, roles := interactionUser(in)
	if u == nil {
		return
	}
	switch res := a.h.Stop(key, a.user(u, member, roles)); {
	case res.Running && !res.Stopped:
		a.respondEphemeral(in, fmt.Sprintf("Only <@%s> or an admin can stop this answer.", res.Owner))
		return
	case res.Running:
		_ = a.respond(in, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseDeferredMessageUpdate})
		return
	}
	content := ""
	if in.Message != nil {
		content = strings.TrimSuffix(in.Message.Content, cursor)
	}
	if strings.TrimSpace(content) == "" || content == placeholder {
		content = "⏹️ Stopped."
	}
	_ = a.respond(in, &discordgo.InteractionResponse{
		Type: discordgo.InteractionResponseUpdateMessage,
		Data: &discordgo.InteractionResponseData{Content: content, Components: []discordgo.MessageComponent{}, AllowedMentions: noMentions()},
	})
}

// onRetry answers the Retry button under a finished answer: the engine's
// /retry for the question that answer replied to, in the same conversation
// (the thread, the reply chain, the DM). The button goes at once, so a
// double click asks once; the new answer replies to the old one, keeping
// the chain. The engine refuses, in a private notice, when newer messages
// followed.
func (a *Adapter) onRetry(in *discordgo.Interaction, question string) {
	ch := a.quickChannelInfo(in)
	if in.Message == nil || !a.checkAccess(in, ch) {
		return
	}
	if a.respond(in, &discordgo.InteractionResponse{
		Type: discordgo.InteractionResponseUpdateMessage,
		Data: &discordgo.InteractionResponseData{Content: in.Message.Content, Components: []discordgo.MessageComponent{}, AllowedMentions: noMentions()},
	}) != nil {
		return
	}
	msg, ok := a.baseMessage(in, ch)
	if !ok {
		return
	}
	msg.Text = "/" + conversation.CmdRetry + " " + question
	a.answer(in, true, "retry", func(ctx context.Context) {
		chainRoot := ""
		if !msg.DM && !ch.isThread() {
			chainRoot = a.chainRoot(ctx, in.ChannelID, in.Message)
			msg.Thread, msg.InThread = chainRoot, true
		}
		r := a.newReply(msg.DedupeKey(),
			&channelSink{a: a, channelID: in.ChannelID, replyTo: in.Message.ID},
			&interactionSink{a: a, in: in, originalUsed: true}, // where the bot may not post, as /ask does
			&interactionSink{a: a, in: in, ephemeral: true, originalUsed: true},
			chainRoot)
		r.question = question
		a.handle(ctx, msg, r)
	})
}

// choices are a command option's fixed values, each named as it is.
func choices(values ...string) []*discordgo.ApplicationCommandOptionChoice {
	out := make([]*discordgo.ApplicationCommandOptionChoice, len(values))
	for i, v := range values {
		out[i] = &discordgo.ApplicationCommandOptionChoice{Name: v, Value: v}
	}
	return out
}

package discord

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/arkbot/arkbot/conversation"
)

// chanInfo is what the adapter needs to know about a channel.
type chanInfo struct {
	typ    discordgo.ChannelType
	parent string // a thread's parent channel
	owner  string // a thread's creator
	known  bool
}

func (c chanInfo) isThread() bool {
	return c.typ == discordgo.ChannelTypeGuildPublicThread ||
		c.typ == discordgo.ChannelTypeGuildPrivateThread ||
		c.typ == discordgo.ChannelTypeGuildNewsThread
}

func (a *Adapter) cacheChannel(c *discordgo.Channel) {
	if c == nil || c.ID == "" {
		return
	}
	a.channels.Add(c.ID, chanInfo{typ: c.Type, parent: c.ParentID, owner: c.OwnerID, known: true})
}

func (a *Adapter) cacheGuild(g *discordgo.Guild) {
	if g == nil {
		return
	}
	for _, c := range g.Channels {
		a.cacheChannel(c)
	}
	for _, c := range g.Threads {
		a.cacheChannel(c)
	}
}

// channelInfo returns a channel's type and parent: from the cache fed by
// GUILD_CREATE, THREAD_CREATE and interactions, else from GET /channels/{id}.
// When both fail the channel is taken for a plain text channel.
func (a *Adapter) channelInfo(ctx context.Context, id, guildID string) chanInfo {
	if guildID == "" {
		return chanInfo{typ: discordgo.ChannelTypeDM, known: true}
	}
	if c, ok := a.channels.Get(id); ok {
		return c
	}
	if ctx.Err() != nil { // shutting down
		return chanInfo{typ: discordgo.ChannelTypeGuildText}
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	ch, err := a.sess.Channel(id, discordgo.WithContext(cctx))
	a.observe("channels.get", err)
	if err != nil {
		a.log.Warn("could not look up channel; treating it as a text channel", "channel", id, "err", err)
		return chanInfo{typ: discordgo.ChannelTypeGuildText}
	}
	a.cacheChannel(ch)
	return chanInfo{typ: ch.Type, parent: ch.ParentID, owner: ch.OwnerID, known: true}
}

// onMessage turns a MESSAGE_CREATE into a conversation.Message.
//
// Conversation keys (Message.Thread):
//   - in a Discord thread: the thread's ID (Channel is its parent channel, so a
//     channel-wide /model choice applies inside its threads too);
//   - a reply to one of the bot's messages: the root of that reply chain, the
//     ID of the user message (or /ask echo) that started it;
//   - a top-level @mention: the message's own ID (a new conversation);
//   - a DM: "" — the DM channel is one conversation.
//
// It sorts out, without I/O, messages that are not for the bot, and hands
// the rest to the work pool, whose slot covers every REST look-up and
// download for the message as well as its answer.
func (a *Adapter) onMessage(m *discordgo.Message) {
	ids := a.ids()
	if m.Author == nil || m.Author.Bot || m.Author.ID == ids.bot || m.WebhookID != "" {
		return
	}
	if m.Type != discordgo.MessageTypeDefault && m.Type != discordgo.MessageTypeReply {
		return
	}
	dm := m.GuildID == ""
	mentioned := dm || mentions(m, ids.bot)
	replyToBot := m.ReferencedMessage != nil && m.ReferencedMessage.Author != nil && m.ReferencedMessage.Author.ID == ids.bot
	if dm && !*a.cfg.AllowDMs {
		return
	}
	if !dm && !mentioned && !replyToBot {
		if !*a.cfg.ThreadFollowups {
			return // cheap exit before any channel lookup
		}
		if c, ok := a.channels.Get(m.ChannelID); ok && !c.isThread() {
			return // a known channel, not a thread: no follow-up
		}
	}
	a.submit(a.pool, "message", func(ctx context.Context) { a.message(ctx, m, ids, dm, mentioned, replyToBot) })
}

// message completes and answers a message onMessage took.
func (a *Adapter) message(ctx context.Context, m *discordgo.Message, ids botIDs, dm, mentioned, replyToBot bool) {
	var roles []string
	if m.Member != nil {
		roles = m.Member.Roles
	}
	ch := a.channelInfo(ctx, m.ChannelID, m.GuildID)
	if !mentioned && !replyToBot && !ch.isThread() {
		return
	}
	if !a.allowed(m.GuildID, m.ChannelID, ch.parent, m.Author.ID, roles) {
		a.log.Debug("message not allowed here", "guild", m.GuildID, "channel", m.ChannelID, "user", m.Author.ID)
		return
	}

	msg := conversation.Message{
		Platform:  conversation.PlatformDiscord,
		Workspace: m.GuildID,
		Channel:   m.ChannelID,
		ID:        m.ID,
		User:      a.user(m.Author, m.Member, roles),
		Text:      cleanText(m, ids.bot),
		DM:        dm,
		Mentioned: mentioned || replyToBot,
		Time:      m.Timestamp,
	}
	if msg.Time.IsZero() {
		msg.Time, _ = discordgo.SnowflakeTimestamp(m.ID)
	}
	chainRoot := ""
	switch {
	case dm:
	case ch.isThread():
		msg.Channel, msg.Thread, msg.InThread = ch.parent, m.ChannelID, true
		if msg.Channel == "" {
			msg.Channel = m.ChannelID
		}
	case replyToBot:
		chainRoot = a.chainRoot(ctx, m.ChannelID, m.ReferencedMessage)
		msg.Thread, msg.InThread = chainRoot, true
	default:
		chainRoot = m.ID
		msg.Thread = m.ID
	}

	// Downloading attachments costs time and bandwidth: a thread follow-up
	// without mention goes to the engine, which answers only if it holds the
	// conversation, so images are downloaded only where the bot takes part.
	download := msg.Mentioned || ch.owner == ids.bot
	if !download {
		_, download = a.joined.Get(m.ChannelID)
	}
	a.attachments(ctx, &msg, m.Attachments, download)

	sink := &channelSink{a: a, channelID: m.ChannelID, replyTo: m.ID}
	r := a.newReply(msg.DedupeKey(), sink, nil, sink, chainRoot)
	r.addressed, r.question = msg.Mentioned, msg.ID
	a.handle(ctx, msg, r)
}

// errPanicked is a handler's outcome when it panicked (the pool logs the panic).
var errPanicked = errors.New("panic in handler")

// handle runs the engine for one message, on a work pool's slot, and makes
// sure the reply ends in a finished state whatever the engine did: a reply
// whose work was queued when shutdown cancelled it says so.
func (a *Adapter) handle(ctx context.Context, msg conversation.Message, r *reply) {
	key := msg.DedupeKey()
	err := errPanicked // until Handle returns
	defer func() {
		if err != nil && !errors.Is(err, context.Canceled) {
			a.log.Warn("handling a Discord message failed", "key", key, "err", err)
		}
		r.finish(err)
	}()
	if err = ctx.Err(); err != nil {
		return // queued when shutdown began
	}
	err = a.h.Handle(ctx, msg, r)
}

// chainRoot finds the conversation a reply to the bot's message belongs to.
// The bot remembers which conversation each of its messages answered
// (in memory, LRU-bounded). After a restart it walks up the reply chain
// instead: each bot answer replies to the user message it answered, which
// replies to an earlier bot message, and so on up to the message that
// started it (a top-level mention, or the echo of an /ask). The walk uses
// referenced_message where Discord includes it and spends at most
// maxChainFetches REST fetches.
func (a *Adapter) chainRoot(ctx context.Context, channelID string, botMsg *discordgo.Message) string {
	botID := a.ids().bot
	visited := []string{}
	root := ""
	cur := botMsg
	fetches := 0
	fetch := func(id string, embedded *discordgo.Message) *discordgo.Message {
		if embedded != nil && embedded.ID == id && embedded.Author != nil {
			return embedded
		}
		if fetches >= maxChainFetches {
			return nil
		}
		fetches++
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		m, err := a.sess.ChannelMessage(channelID, id, discordgo.WithContext(cctx))
		a.observe("messages.get", err)
		if err != nil {
			a.log.Debug("reply chain: fetch failed", "message", id, "err", err)
			return nil
		}
		return m
	}
walk:
	for {
		if r, ok := a.chains.Get(cur.ID); ok {
			root = r
			break
		}
		visited = append(visited, cur.ID)
		ref := cur.MessageReference
		if ref == nil || ref.MessageID == "" {
			root = cur.ID // a bot message starting the chain: the /ask echo
			break
		}
		p := fetch(ref.MessageID, cur.ReferencedMessage)
		switch {
		case p == nil:
			// Deleted, or out of fetches: the parent's ID still names the chain.
			root = ref.MessageID
			if fetches >= maxChainFetches {
				a.log.Warn("reply chain too long to follow; continuing from the last known message", "message", ref.MessageID)
			}
			break walk
		case p.Author != nil && p.Author.ID == botID:
			cur = p
			continue
		}
		// p is the user's message that the bot answered.
		pref := p.MessageReference
		if pref == nil || pref.MessageID == "" {
			root = p.ID
			break
		}
		q := fetch(pref.MessageID, p.ReferencedMessage)
		if q == nil || q.Author == nil || q.Author.ID != botID {
			root = p.ID // a mention that replied to someone else's message
			break
		}
		cur = q
	}
	for _, id := range visited {
		a.chains.Add(id, root)
	}
	return root
}

// allowed applies the allow-lists. Guild and channel lists restrict where the
// bot answers (a thread counts as its parent channel too); they don't apply
// to DMs, which discord.allow_dms governs. User and role lists restrict who:
// a user passes when listed or holding a listed role. Roles can't be checked
// in DMs, so with allowed_roles set a DM passes only for allowed_users.
func (a *Adapter) allowed(guildID, channelID, parentID, userID string, roles []string) bool {
	c := a.cfg
	if guildID != "" {
		if len(c.AllowedGuilds) > 0 && !c.AllowedGuilds.Contains(guildID) {
			return false
		}
		if len(c.AllowedChannels) > 0 && !c.AllowedChannels.Contains(channelID) && (parentID == "" || !c.AllowedChannels.Contains(parentID)) {
			return false
		}
	}
	if len(c.AllowedUsers) == 0 && len(c.AllowedRoles) == 0 {
		return true
	}
	if c.AllowedUsers.Contains(userID) {
		return true
	}
	for _, r := range roles {
		if c.AllowedRoles.Contains(r) {
			return true
		}
	}
	return false
}

// user builds the Message's User: display name, admin and /model rights.
func (a *Adapter) user(u *discordgo.User, member *discordgo.Member, roles []string) conversation.User {
	listed := func(l []string) bool {
		for _, v := range l {
			if v == u.ID {
				return true
			}
			for _, r := range roles {
				if v == r {
					return true
				}
			}
		}
		return false
	}
	name := u.Username
	if u.GlobalName != "" {
		name = u.GlobalName
	}
	if member != nil && member.Nick != "" {
		name = member.Nick
	}
	return conversation.User{
		ID:             u.ID,
		Name:           name,
		Admin:          listed(a.cfg.Admins),
		CanSwitchModel: len(a.cfg.ModelAdmins) == 0 || listed(a.cfg.ModelAdmins),
	}
}

func mentions(m *discordgo.Message, botID string) bool {
	if botID == "" {
		return false
	}
	for _, u := range m.Mentions {
		if u != nil && u.ID == botID {
			return true
		}
	}
	return strings.Contains(m.Content, "<@"+botID+">") || strings.Contains(m.Content, "<@!"+botID+">")
}

var userMention = regexp.MustCompile(`[ \t]*<@!?(\d+)>[ \t]*`)

// cleanText removes the bot's mention and writes other users' mentions as
// @name, so the model reads names rather than IDs. Indentation elsewhere is
// kept: users paste code.
func cleanText(m *discordgo.Message, botID string) string {
	names := map[string]string{}
	for _, u := range m.Mentions {
		if u != nil {
			names[u.ID] = u.DisplayName()
		}
	}
	text := userMention.ReplaceAllStringFunc(m.Content, func(s string) string {
		id := userMention.FindStringSubmatch(s)[1]
		lead, trail := "", ""
		if strings.TrimLeft(s, " \t") != s {
			lead = " "
		}
		if strings.TrimRight(s, " \t") != s {
			trail = " "
		}
		if id == botID {
			return " "
		}
		if n, ok := names[id]; ok && n != "" {
			return lead + "@" + n + trail
		}
		return lead + strings.TrimSpace(s) + trail
	})
	return strings.TrimSpace(text)
}

// isForbidden reports a REST error meaning the bot may not post there.
func isForbidden(err error) bool {
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode == http.StatusForbidden
	}
	return false
}

// isGone reports a REST error meaning the message or channel no longer exists.
func isGone(err error) bool {
	var re *discordgo.RESTError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode == http.StatusNotFound
	}
	return false
}

// snowflakeTime returns the creation time encoded in a snowflake, or now.
func snowflakeTime(id string) time.Time {
	if t, err := discordgo.SnowflakeTimestamp(id); err == nil {
		return t
	}
	return time.Now()
}

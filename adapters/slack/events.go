package slack

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/arkbot/arkbot/conversation"
)

// eventPayload is an Events API payload: the body of an HTTP event request,
// or the payload of a Socket Mode events_api envelope.
type eventPayload struct {
	Type      string          `json:"type"`
	TeamID    string          `json:"team_id"`
	EventID   string          `json:"event_id"`
	Challenge string          `json:"challenge"`
	Event     json.RawMessage `json:"event"`
}

// innerEvent holds the fields of app_mention and message events the adapter reads.
type innerEvent struct {
	Type        string       `json:"type"`
	Subtype     string       `json:"subtype"`
	User        string       `json:"user"`
	BotID       string       `json:"bot_id"`
	Text        string       `json:"text"`
	TS          string       `json:"ts"`
	ThreadTS    string       `json:"thread_ts"`
	Channel     string       `json:"channel"`
	ChannelType string       `json:"channel_type"`
	Team        string       `json:"team"`
	Files       []slack.File `json:"files"`
}

// draft is a message the adapter accepted, before user and file look-ups.
type draft struct {
	msg   conversation.Message
	files []slack.File
}

// Reasons an event is not for the bot (logged at debug, counted as ignored).
const (
	ignoreType     = "not a message event"
	ignoreBot      = "written by a bot"
	ignoreSelf     = "written by this bot"
	ignoreSubtype  = "edit, deletion or other non-user subtype"
	ignoreChannel  = "channel not in slack.allowed_channels"
	ignoreDM       = "direct messages are off (slack.allow_dms)"
	ignoreUser     = "user not in slack.allowed_users"
	ignoreMention  = "mentions the bot: the app_mention event carries it"
	ignoreTopLevel = "top-level channel message without a mention"
	ignoreNoTS     = "no channel or timestamp"
)

// userSubtypes are message subtypes written by people that the bot reads.
var userSubtypes = map[string]bool{"": true, "file_share": true, "thread_broadcast": true}

// classify decides whether an event is a message for the bot and, if so,
// fills in everything that needs no API call. It returns a reason when not.
//
// Conversations (Message.Thread):
//   - an @mention at the top of a channel starts a thread on that message:
//     Thread is the message's own ts, and the answer goes into that thread;
//   - a message inside a thread (mention or follow-up) belongs to the thread:
//     Thread is its thread_ts;
//   - a top-level direct message belongs to the DM itself: Thread is "" and
//     the answer is posted at the top of the DM;
//   - a message inside a thread of a DM belongs to that thread (thread_ts),
//     as in Slack's AI-app split view.
func (a *Adapter) classify(team string, ev innerEvent) (*draft, string) {
	if ev.Type != "app_mention" && ev.Type != "message" {
		return nil, ignoreType
	}
	if ev.BotID != "" {
		return nil, ignoreBot
	}
	bot := a.identity()
	if ev.User == "" {
		return nil, ignoreBot
	}
	if ev.User == bot.userID {
		return nil, ignoreSelf
	}
	if !userSubtypes[ev.Subtype] {
		return nil, ignoreSubtype
	}
	if ev.Channel == "" || ev.TS == "" {
		return nil, ignoreNoTS
	}
	dm := ev.ChannelType == "im" || (ev.ChannelType == "" && strings.HasPrefix(ev.Channel, "D"))
	if reason := a.allowed(ev.Channel, ev.User, dm); reason != "" {
		return nil, reason
	}
	inThread := ev.ThreadTS != "" && ev.ThreadTS != ev.TS
	mentioned := true
	switch {
	case dm:
	case ev.Type == "app_mention":
	case mentionsUser(ev.Text, bot.userID):
		return nil, ignoreMention
	case !inThread:
		return nil, ignoreTopLevel
	default:
		mentioned = a.cfg.ReplyInThreads == "always"
	}
	thread := ev.TS
	switch {
	case inThread:
		thread = ev.ThreadTS
	case dm:
		thread = ""
	}
	if team == "" {
		team = ev.Team
	}
	m := conversation.Message{
		Platform:  conversation.PlatformSlack,
		Workspace: team,
		Channel:   ev.Channel,
		Thread:    thread,
		ID:        ev.Channel + ":" + ev.TS,
		User: conversation.User{
			ID:             ev.User,
			Admin:          a.cfg.Admins.Contains(ev.User),
			CanSwitchModel: true,
		},
		Text:      cleanText(ev.Text, bot.userID),
		DM:        dm,
		Mentioned: mentioned,
		InThread:  inThread,
		Time:      parseTS(ev.TS),
	}
	return &draft{msg: m, files: ev.Files}, ""
}

// allowed applies slack.allowed_channels, allowed_users and allow_dms.
func (a *Adapter) allowed(channel, user string, dm bool) string {
	if dm {
		if !a.allowDMs {
			return ignoreDM
		}
	} else if len(a.cfg.AllowedChannels) > 0 && !a.cfg.AllowedChannels.Contains(channel) {
		return ignoreChannel
	}
	if len(a.cfg.AllowedUsers) > 0 && !a.cfg.AllowedUsers.Contains(user) {
		return ignoreUser
	}
	return ""
}

// classifySlash turns a slash command into a message at channel level:
// Thread "" and InThread false, because Slack only runs slash commands
// outside threads.
func (a *Adapter) classifySlash(cmd slack.SlashCommand) (*draft, string) {
	dm := strings.HasPrefix(cmd.ChannelID, "D")
	if reason := a.allowed(cmd.ChannelID, cmd.UserID, dm); reason != "" {
		return nil, reason
	}
	id := cmd.TriggerID
	if id == "" {
		id = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	m := conversation.Message{
		Platform:  conversation.PlatformSlack,
		Workspace: cmd.TeamID,
		Channel:   cmd.ChannelID,
		ID:        "cmd:" + id,
		User: conversation.User{
			ID:             cmd.UserID,
			Name:           cmd.UserName,
			Admin:          a.cfg.Admins.Contains(cmd.UserID),
			CanSwitchModel: true,
		},
		Text:      strings.TrimSpace(cmd.Command + " " + cleanText(cmd.Text, a.identity().userID)),
		DM:        dm,
		Mentioned: true,
		Time:      time.Now(),
	}
	return &draft{msg: m}, ""
}

// mentionsUser reports whether Slack text mentions the user (<@U…> or <@U…|name>).
func mentionsUser(text, user string) bool {
	if user == "" {
		return false
	}
	return strings.Contains(text, "<@"+user+">") || strings.Contains(text, "<@"+user+"|")
}

var slackToken = regexp.MustCompile(`<([^<>\n]*)>`)

var entityUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// cleanText turns Slack's message markup into plain words for the model:
// the bot's own mention is removed, other mentions and channel links become
// @name / #name, links become "label (url)" or the URL, and Slack's
// entities (&lt; &gt; &amp;) are decoded.
func cleanText(text, botUserID string) string {
	text = removeMention(text, botUserID)
	out := slackToken.ReplaceAllStringFunc(text, func(tok string) string {
		inner := tok[1 : len(tok)-1]
		target, label, _ := strings.Cut(inner, "|")
		switch {
		case strings.HasPrefix(target, "@"):
			if target[1:] == botUserID {
				return ""
			}
			if label != "" {
				return "@" + label
			}
			return "@" + target[1:]
		case strings.HasPrefix(target, "#"):
			if label != "" {
				return "#" + label
			}
			return "#" + target[1:]
		case strings.HasPrefix(target, "!"):
			if label != "" {
				return label
			}
			if name, _, _ := strings.Cut(target[1:], "^"); name != "" {
				return "@" + name
			}
			return ""
		case label != "" && label != target:
			return label + " (" + target + ")"
		default:
			return target
		}
	})
	return strings.TrimSpace(entityUnescaper.Replace(out))
}

// removeMention deletes every <@user> and <@user|name>, with one space after it.
func removeMention(text, user string) string {
	if user == "" {
		return text
	}
	open := "<@" + user
	for {
		i := strings.Index(text, open)
		if i < 0 {
			return text
		}
		rest := text[i+len(open):]
		if rest == "" || (rest[0] != '>' && rest[0] != '|') {
			// <@UBOT2…>: another user whose ID starts like ours.
			return text[:i+len(open)] + removeMention(rest, user)
		}
		j := strings.IndexByte(rest, '>')
		if j < 0 {
			return text
		}
		end := i + len(open) + j + 1
		if end < len(text) && (text[end] == ' ' || text[end] == '\t') {
			end++
		}
		text = text[:i] + text[end:]
	}
}

// parseTS turns a Slack timestamp ("1700000000.123456") into a time.
func parseTS(ts string) time.Time {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Now()
	}
	var us int64
	if frac != "" {
		frac = (frac + "000000")[:6]
		us, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(s, us*1000)
}

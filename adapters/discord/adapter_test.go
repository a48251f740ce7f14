package discord

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/conversation"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
)

func testStartupRegistersCommandsAndIdentifies(t *testing.T, hs *harness) {
	cmds := hs.fake.Commands()[guildID]
	var names []string
	for _, raw := range cmds {
		var c struct {
			Name    string
			Options []struct {
				Name         string
				Autocomplete bool
			}
			Contexts         []int `json:"contexts"`
			IntegrationTypes []int `json:"integration_types"`
			DMPermission     *bool `json:"dm_permission"`
		}
		_ = json.Unmarshal(raw, &c)
		names = append(names, c.Name)
		if fmt.Sprint(c.Contexts, c.IntegrationTypes) != "[0 1] [0]" || c.DMPermission != nil {
			t.Errorf("/%s: contexts %v, integration_types %v, dm_permission %v", c.Name, c.Contexts, c.IntegrationTypes, c.DMPermission)
		}
		if c.Name == "model" && (len(c.Options) != 1 || !c.Options[0].Autocomplete) {
			t.Errorf("/model options = %+v", c.Options)
		}
	}
	if strings.Join(names, ",") != "ask,model,models,reset,help,usage,stop,search,think,feedback" {
		t.Errorf("commands = %v", names)
	}
	ids := hs.fake.Identifies()
	if len(ids) != 1 || ids[0].Intents != int(Intents) {
		t.Errorf("identify = %+v, want intents %d", ids, Intents)
	}
	url := hs.a.InviteURL()
	want := fmt.Sprintf("https://discord.com/oauth2/authorize?client_id=%s&scope=bot+applications.commands&permissions=%d", hs.fake.AppID(), InvitePermissions)
	if url != want {
		t.Errorf("invite = %s, want %s", url, want)
	}
	if InvitePermissions != 309237763072 {
		t.Errorf("permissions = %d", InvitePermissions)
	}
}

// TestDefaultConfig runs the checks that need no special configuration
// against one adapter (each adapter's shutdown costs discordgo a 1 s sleep).
func TestDefaultConfig(t *testing.T) {
	hs := start(t, setup{})
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *harness)
	}{
		{"startup", testStartupRegistersCommandsAndIdentifies},
		{"ask deferred then streamed", testAskDeferredThenStreamed},
		{"mention and reply chain", testMentionAndReplyChain},
		{"thread follow-ups", testThreadFollowups},
		{"direct messages", testDirectMessages},
		{"ignores bots, self, webhooks", testIgnoresBotsSelfAndWebhooks},
		{"model autocomplete and switch", testModelAutocompleteAndSwitch},
		{"long answer split", testLongAnswerSplitsWithoutBreakingFencesOrWords},
		{"stop button", testStopButton},
		{"stale stop button", testStaleStopButtonIsCleanedUp},
		{"redelivered message", testRedeliveredMessageSameDedupeKey},
		{"attachments", testAttachments},
		{"handler error keeps text", testHandlerErrorKeepsStreamedText},
		{"ask falls back when forbidden", testAskFallsBackWhenChannelIsForbidden},
		{"gateway resume", testGatewayResume},
	} {
		hs.h.set(nil)
		if !t.Run(tc.name, func(t *testing.T) { tc.fn(t, hs.with(t)) }) {
			return
		}
	}
}

func TestShardingGlobalCommandsAndGatewayURL(t *testing.T) {
	var gw string
	hs := start(t, setup{cfg: func(c *config.Discord) {
		c.ShardID, c.ShardCount, c.GuildIDs = 1, 2, nil
		// The fake's gateway, reached without asking GET /gateway.
		gw = strings.TrimSuffix(c.APIURL, "/api/v10/")
		gw = "ws" + strings.TrimPrefix(gw, "http") + "/ws"
		c.GatewayURL = gw
	}})
	ids := hs.fake.Identifies()
	if len(ids) != 1 || ids[0].Shard != [2]int{1, 2} {
		t.Fatalf("identify = %+v", ids)
	}
	if len(hs.fake.Commands()[""]) != 10 {
		t.Fatalf("global commands = %v", hs.fake.Commands())
	}
	if n := hs.fake.Stats().Requests["GET /gateway"]; n != 0 || gw != hs.fake.GatewayURL() {
		t.Fatalf("GET /gateway asked %d times despite gateway_url %s", n, gw)
	}
}

func testAskDeferredThenStreamed(t *testing.T, hs *harness) {
	hs.h.set(func(h *scriptHandler) { h.frames = 8 })
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID,
		User: alice, Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "What is Go?"}}})
	cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cb.Type != discordtest.CallbackDeferredChannelMessage || cb.After > time.Second {
		t.Fatalf("callback = type %d after %v", cb.Type, cb.After)
	}
	msg := hs.h.waitCall(t, ref.ID)
	hs.h.waitDone(t, msg.DedupeKey())

	echo, ok := hs.fake.OriginalResponse(ref.ID)
	if !ok || echo.Content != "> What is Go?" {
		t.Fatalf("echo = %+v", echo)
	}
	if msg.Text != "What is Go?" || !msg.Mentioned || msg.InThread || msg.Thread != echo.ID || msg.Channel != channelID ||
		msg.Workspace != guildID || msg.User.ID != alice.ID || msg.User.Name != "Alice" || msg.DM {
		t.Fatalf("message = %+v", msg)
	}
	if msg.DedupeKey() != "discord:"+guildID+":"+ref.ID {
		t.Fatalf("dedupe key = %s", msg.DedupeKey())
	}
	answer := hs.answerTo(channelID, echo.ID)
	if len(answer) != 1 || answer[0].Content != "Answer to: What is Go?" || !slices.Equal(answer[0].CustomIDs(), []string{retryPrefix + ref.ID}) {
		t.Fatalf("answer = %+v", answer)
	}
	if answer[0].Edits == 0 {
		t.Errorf("answer was never edited while streaming")
	}
	// Replying to the /ask answer continues its conversation.
	rep := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "and then?", ReplyTo: answer[0].ID})
	if m := hs.h.waitCall(t, rep.ID); m.Thread != echo.ID || !m.InThread || !m.Mentioned {
		t.Fatalf("reply to /ask answer = %+v", m)
	}
}

func TestAskThreadPerAsk(t *testing.T) {
	hs := start(t, setup{cfg: func(c *config.Discord) { c.ThreadPerAsk = true }})
	long := strings.Repeat("why is the sky blue ", 8) // 160 characters
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID,
		User: alice, Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: long}}})
	msg := hs.h.waitCall(t, ref.ID)
	hs.h.waitDone(t, msg.DedupeKey())
	threads := hs.fake.Threads()
	if len(threads) != 1 {
		t.Fatalf("threads = %+v", threads)
	}
	th := threads[0]
	if n := utf8.RuneCountInString(th.Name); n != 100 || !strings.HasPrefix(th.Name, "why is the sky blue") || th.ParentID != channelID {
		t.Fatalf("thread = %+v (%d chars)", th, n)
	}
	if msg.Thread != th.ID || msg.Channel != channelID {
		t.Fatalf("message = %+v", msg)
	}
	var answer []string
	for _, m := range hs.fake.Messages(th.ID) {
		answer = append(answer, m.Content)
	}
	if len(answer) != 1 || answer[0] != "Answer to: "+strings.TrimSpace(long) {
		t.Fatalf("thread messages = %q", answer)
	}
	// A follow-up in the thread without mention is the same conversation.
	f := hs.post(discordtest.MessageSpec{ChannelID: th.ID, Author: alice, Content: "more please"})
	fm := hs.h.waitCall(t, f.ID)
	if fm.Thread != th.ID || fm.Channel != channelID || fm.Mentioned || !fm.InThread || fm.ThreadKey() != msg.ThreadKey() {
		t.Fatalf("follow-up = %+v", fm)
	}
}

func testMentionAndReplyChain(t *testing.T, hs *harness) {
	u1 := hs.mention(alice, channelID, "hello   there")
	m1 := hs.h.waitCall(t, u1.ID)
	hs.h.waitDone(t, m1.DedupeKey())
	if m1.Text != "hello   there" || m1.Thread != u1.ID || !m1.Mentioned || m1.InThread || m1.Channel != channelID {
		t.Fatalf("mention = %+v", m1)
	}
	a1 := hs.answerTo(channelID, u1.ID)
	if len(a1) != 1 || a1[0].Content != "Answer to: hello   there" {
		t.Fatalf("answer = %+v", texts(a1))
	}
	// Reply to the bot without mention: same conversation.
	u2 := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "tell me more", ReplyTo: a1[0].ID})
	m2 := hs.h.waitCall(t, u2.ID)
	hs.h.waitDone(t, m2.DedupeKey())
	if m2.Thread != u1.ID || !m2.Mentioned || !m2.InThread || m2.ThreadKey() != m1.ThreadKey() {
		t.Fatalf("reply = %+v", m2)
	}
	a2 := hs.answerTo(channelID, u2.ID)
	if len(a2) != 1 {
		t.Fatalf("second answer = %+v", a2)
	}
	// After a restart (maps cleared), the chain is found by walking REST.
	hs.a.chains.Clear()
	before := hs.fake.Stats().Requests["GET /channels/{channel}/messages/{msg}"]
	u3 := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: bob, Content: "and?", ReplyTo: a2[0].ID})
	m3 := hs.h.waitCall(t, u3.ID)
	if m3.Thread != u1.ID || m3.User.ID != bob.ID {
		t.Fatalf("reply after restart = %+v", m3)
	}
	fetches := hs.fake.Stats().Requests["GET /channels/{channel}/messages/{msg}"] - before
	if fetches < 1 || fetches > maxChainFetches {
		t.Fatalf("chain walk used %d fetches", fetches)
	}
	// A mention that replies to another user's message starts a new conversation.
	other := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: bob, Content: "unrelated"})
	bot := hs.fake.Bot()
	u4 := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "<@" + bot.ID + "> what does he mean?",
		Mentions: []discordtest.User{bot}, ReplyTo: other.ID})
	if m4 := hs.h.waitCall(t, u4.ID); m4.Thread != u4.ID || m4.InThread {
		t.Fatalf("mention replying to a user = %+v", m4)
	}
}

func testThreadFollowups(t *testing.T, hs *harness) {
	f := hs.post(discordtest.MessageSpec{ChannelID: threadID, Author: alice, Content: "no mention here"})
	m := hs.h.waitCall(t, f.ID)
	if m.Mentioned || !m.InThread || m.Thread != threadID || m.Channel != channelID {
		t.Fatalf("follow-up = %+v", m)
	}
	g := hs.mention(alice, threadID, "with mention")
	if m := hs.h.waitCall(t, g.ID); !m.Mentioned || m.Thread != threadID || m.Text != "with mention" {
		t.Fatalf("mention in thread = %+v", m)
	}
	// Top-level messages without mention are not for the bot.
	top := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "just chatting"})
	hs.sentinel(channelID)
	if c := hs.h.callsFor(top.ID); len(c) != 0 {
		t.Fatalf("top-level chatter handled: %+v", c)
	}
}

func testDirectMessages(t *testing.T, hs *harness) {
	hs.fake.AddChannel(discordtest.Channel{ID: "dm1", Type: discordtest.ChannelDM})
	d := hs.post(discordtest.MessageSpec{ChannelID: "dm1", Author: alice, Content: "hi bot"})
	m := hs.h.waitCall(t, d.ID)
	hs.h.waitDone(t, m.DedupeKey())
	if !m.DM || !m.Mentioned || m.Thread != "" || m.Workspace != "" || m.Channel != "dm1" || m.InThread {
		t.Fatalf("dm = %+v", m)
	}
	if a := hs.answerTo("dm1", d.ID); len(a) != 1 || a[0].Content != "Answer to: hi bot" {
		t.Fatalf("dm answer = %+v", a)
	}
}

func TestFollowupsAndDMsOff(t *testing.T) {
	hs := start(t, setup{cfg: func(c *config.Discord) { c.ThreadFollowups, c.AllowDMs = ptr(false), ptr(false) }})
	f := hs.post(discordtest.MessageSpec{ChannelID: threadID, Author: alice, Content: "no mention here"})
	hs.fake.AddChannel(discordtest.Channel{ID: "dm1", Type: discordtest.ChannelDM})
	d := hs.post(discordtest.MessageSpec{ChannelID: "dm1", Author: alice, Content: "hi bot"})
	hs.sentinel(threadID)
	if c := hs.h.callsFor(f.ID); len(c) != 0 {
		t.Fatalf("follow-up handled with thread_followups off: %+v", c)
	}
	if c := hs.h.callsFor(d.ID); len(c) != 0 {
		t.Fatalf("DM handled with allow_dms off")
	}
	// The slash commands are offered in guilds only.
	for _, raw := range hs.fake.Commands()[guildID] {
		var c struct {
			Name     string
			Contexts []int `json:"contexts"`
		}
		if json.Unmarshal(raw, &c) != nil || len(c.Contexts) != 1 || c.Contexts[0] != 0 {
			t.Fatalf("command with allow_dms off: %s", raw)
		}
	}
	// A mention in a thread is still answered.
	m := hs.mention(alice, threadID, "hey")
	if got := hs.h.waitCall(t, m.ID); !got.Mentioned || got.Thread != threadID {
		t.Fatalf("mention in thread = %+v", got)
	}
}

func testIgnoresBotsSelfAndWebhooks(t *testing.T, hs *harness) {
	bot := hs.fake.Bot()
	other := discordtest.User{ID: "700", Username: "otherbot", Bot: true}
	b := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: other, Content: "<@" + bot.ID + "> hi", Mentions: []discordtest.User{bot}})
	w := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, WebhookID: "800", Content: "<@" + bot.ID + "> hi", Mentions: []discordtest.User{bot}})
	s := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: bot, Content: "<@" + bot.ID + "> me", Mentions: []discordtest.User{bot}})
	hs.sentinel(channelID)
	for _, id := range []string{b.ID, w.ID, s.ID} {
		if c := hs.h.callsFor(id); len(c) != 0 {
			t.Fatalf("handled %s: %+v", id, c)
		}
	}
	// The bot's own answers come back as MESSAGE_CREATE and are ignored: only
	// user messages were ever handled.
	hs.h.mu.Lock()
	defer hs.h.mu.Unlock()
	for _, c := range hs.h.calls {
		if c.User.ID == bot.ID {
			t.Fatalf("handled the bot's own message: %+v", c)
		}
	}
}

func TestAllowLists(t *testing.T) {
	hs := start(t, setup{cfg: func(c *config.Discord) {
		c.AllowedChannels = config.StringList{channelID}
		c.AllowedRoles = config.StringList{"role-ok"}
		c.AllowedUsers = config.StringList{bob.ID}
	}})
	bot := hs.fake.Bot()
	say := func(ch string, u discordtest.User, roles ...string) discordtest.Message {
		return hs.post(discordtest.MessageSpec{ChannelID: ch, Author: u, Roles: roles, Content: "<@" + bot.ID + "> q", Mentions: []discordtest.User{bot}})
	}
	noRole := say(channelID, alice)
	wrongChan := say(otherChan, alice, "role-ok")
	okRole := say(channelID, alice, "role-ok")
	okThread := say(threadID, alice, "role-ok")
	okUser := say(channelID, bob)
	hs.h.waitCall(t, okRole.ID)
	hs.h.waitCall(t, okThread.ID)
	hs.h.waitCall(t, okUser.ID)
	for _, m := range []discordtest.Message{noRole, wrongChan} {
		if c := hs.h.callsFor(m.ID); len(c) != 0 {
			t.Fatalf("not-allowed message handled: %+v", c)
		}
	}
	// A slash command from someone not allowed gets an ephemeral refusal.
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice, Command: "help"})
	cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var data struct{ Flags int }
	_ = json.Unmarshal(cb.Data, &data)
	if cb.Type != discordtest.CallbackChannelMessage || data.Flags&discordtest.FlagEphemeral == 0 {
		t.Fatalf("refusal = %d %s", cb.Type, cb.Data)
	}
	if len(hs.h.callsFor(ref.ID)) != 0 {
		t.Fatal("refused command reached the handler")
	}
}

func TestGuildAllowList(t *testing.T) {
	hs := start(t, setup{cfg: func(c *config.Discord) { c.AllowedGuilds = config.StringList{"999"} }})
	m := hs.mention(alice, channelID, "hi")
	hs.fake.AddChannel(discordtest.Channel{ID: "dm1", Type: discordtest.ChannelDM})
	d := hs.post(discordtest.MessageSpec{ChannelID: "dm1", Author: alice, Content: "dm"})
	hs.h.waitCall(t, d.ID) // DMs are not in any guild: allow_dms decides
	if len(hs.h.callsFor(m.ID)) != 0 {
		t.Fatal("message from a guild not allowed was handled")
	}
}

func testModelAutocompleteAndSwitch(t *testing.T, hs *harness) {
	hs.h.set(func(h *scriptHandler) {
		for i := 0; i < 30; i++ {
			h.models = append(h.models, conversation.ModelChoice{Name: fmt.Sprintf("model-%02d", i), ID: fmt.Sprintf("ep-%02d", i)})
		}
		h.models = append([]conversation.ModelChoice{{Name: "doubao", ID: "doubao-seed", Description: "fast", Current: true}}, h.models...)
		h.models = append(h.models, conversation.ModelChoice{Name: "deepseek-r1", ID: "deepseek-r1-250528"})
	})
	complete := func(ch, typed string) []string {
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionAutocomplete, ChannelID: ch, User: alice, Command: "model",
			Options: []discordtest.CommandOption{{Name: "name", Type: 3, Value: typed, Focused: true}}})
		cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if cb.Type != discordtest.CallbackAutocompleteResult {
			t.Fatalf("autocomplete callback type %d", cb.Type)
		}
		var d struct {
			Choices []struct {
				Name  string
				Value string
			}
		}
		_ = json.Unmarshal(cb.Data, &d)
		var out []string
		for _, c := range d.Choices {
			out = append(out, c.Value)
			if c.Value == "doubao" && c.Name != "doubao (current) — fast" {
				t.Errorf("current choice label = %q", c.Name)
			}
		}
		return out
	}
	all := complete(channelID, "")
	if len(all) != 25 || all[0] != "doubao" {
		t.Fatalf("all = %v", all)
	}
	if got := complete(channelID, "DEEP"); strings.Join(got, ",") != "deepseek-r1" {
		t.Fatalf("filtered = %v", got)
	}
	if got := complete(channelID, "seek"); strings.Join(got, ",") != "deepseek-r1" {
		t.Fatalf("substring = %v", got)
	}
	if got := complete(channelID, "model-2"); len(got) != 10 || got[0] != "model-20" {
		t.Fatalf("prefix = %v", got)
	}
	if got := complete(channelID, "d"); got[0] != "doubao" || got[1] != "deepseek-r1" {
		t.Fatalf("current first = %v", got)
	}

	// /model name: in a channel switches the channel.
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice,
		Command: "model", Options: []discordtest.CommandOption{{Name: "name", Type: 3, Value: "deepseek-r1"}}})
	m := hs.h.waitCall(t, ref.ID)
	hs.h.waitDone(t, m.DedupeKey())
	if m.Text != "/model deepseek-r1" || m.InThread || m.Thread != "" || m.Channel != channelID || !m.Mentioned || !m.User.CanSwitchModel {
		t.Fatalf("/model in channel = %+v", m)
	}
	cb, _ := hs.fake.WaitCallback(ref.ID, time.Second)
	var flags struct{ Flags int }
	_ = json.Unmarshal(cb.Data, &flags)
	if cb.Type != discordtest.CallbackDeferredChannelMessage || flags.Flags&discordtest.FlagEphemeral == 0 {
		t.Fatalf("/model callback = %d %s", cb.Type, cb.Data)
	}
	if orig, _ := hs.fake.OriginalResponse(ref.ID); orig.Content != "notice for /model deepseek-r1" || !orig.Ephemeral() {
		t.Fatalf("/model answer = %+v", orig)
	}
	// In a thread it switches the thread.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: threadID, User: alice,
		Command: "model", Options: []discordtest.CommandOption{{Name: "name", Type: 3, Value: "doubao"}}})
	if m := hs.h.waitCall(t, ref.ID); m.Text != "/model doubao" || !m.InThread || m.Thread != threadID || m.Channel != channelID {
		t.Fatalf("/model in thread = %+v", m)
	}
	// No option: show.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice, Command: "model"})
	if m := hs.h.waitCall(t, ref.ID); m.Text != "/model" {
		t.Fatalf("/model = %+v", m)
	}
	for _, cmd := range []string{"models", "reset", "help", "usage", "stop", "search", "think", "feedback"} {
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice, Command: cmd})
		if m := hs.h.waitCall(t, ref.ID); m.Text != "/"+cmd {
			t.Fatalf("/%s = %+v", cmd, m)
		}
	}
	// /search and /think pass their setting.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: threadID, User: alice,
		Command: "search", Options: []discordtest.CommandOption{{Name: "setting", Type: 3, Value: "on"}}})
	if m := hs.h.waitCall(t, ref.ID); m.Text != "/search on" || !m.InThread {
		t.Fatalf("/search on = %+v", m)
	}
}

func TestModelAdminsAndAdmins(t *testing.T) {
	hs := start(t, setup{cfg: func(c *config.Discord) {
		c.ModelAdmins = config.StringList{"role-mod", bob.ID}
		c.Admins = config.StringList{"role-admin"}
	}})
	run := func(u discordtest.User, roles ...string) conversation.Message {
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: u, Roles: roles,
			Command: "model", Options: []discordtest.CommandOption{{Name: "name", Type: 3, Value: "x"}}})
		return hs.h.waitCall(t, ref.ID)
	}
	if m := run(alice); m.User.CanSwitchModel || m.User.Admin {
		t.Fatalf("plain user = %+v", m.User)
	}
	if m := run(alice, "role-mod"); !m.User.CanSwitchModel {
		t.Fatalf("mod role = %+v", m.User)
	}
	if m := run(bob); !m.User.CanSwitchModel {
		t.Fatalf("listed user = %+v", m.User)
	}
	if m := run(alice, "role-admin"); !m.User.Admin || m.User.CanSwitchModel {
		t.Fatalf("admin = %+v", m.User)
	}
	// The same applies to messages.
	bot := hs.fake.Bot()
	u := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Roles: []string{"role-mod"}, Content: "<@" + bot.ID + "> /model x", Mentions: []discordtest.User{bot}})
	if m := hs.h.waitCall(t, u.ID); !m.User.CanSwitchModel || m.Text != "/model x" {
		t.Fatalf("message = %+v", m)
	}
}

// longAnswer is about 5,000 characters with a code block in the middle.
func longAnswer() string {
	var b strings.Builder
	for i := 0; b.Len() < 1500; i++ {
		fmt.Fprintf(&b, "Paragraph word%d explains something rather important about the topic. ", i)
	}
	b.WriteString("\n\n```go\n")
	for i := 0; b.Len() < 3400; i++ {
		fmt.Fprintf(&b, "func example%d(x int) int { return x * %d } // comment\n", i, i)
	}
	b.WriteString("```\n\n")
	for i := 0; b.Len() < 5000; i++ {
		fmt.Fprintf(&b, "Closing remark%d adds more detail. ", i)
	}
	return strings.TrimSpace(b.String())
}

func fields(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if !strings.HasPrefix(f, "```") {
			out = append(out, f)
		}
	}
	return out
}

func testLongAnswerSplitsWithoutBreakingFencesOrWords(t *testing.T, hs *harness) {
	answer := longAnswer()
	hs.h.set(func(h *scriptHandler) {
		h.answer = func(conversation.Message) string { return answer }
		h.frames = 12
	})
	u := hs.mention(alice, channelID, "write a lot")
	m := hs.h.waitCall(t, u.ID)
	hs.h.waitDone(t, m.DedupeKey())
	msgs := hs.answerTo(channelID, u.ID)
	if len(msgs) != 3 {
		t.Fatalf("got %d messages: %q", len(msgs), texts(msgs))
	}
	var joined []string
	for i, p := range msgs {
		if n := utf8.RuneCountInString(p.Content); n > 2000 {
			t.Errorf("piece %d has %d characters", i, n)
		}
		if strings.Count(p.Content, "```")%2 != 0 {
			t.Errorf("piece %d leaves a fence open:\n%s", i, p.Content)
		}
		if strings.Contains(p.Content, cursor) || hasStop(p) {
			t.Errorf("piece %d still marked in progress", i)
		}
		if retry := len(p.CustomIDs()) > 0; retry != (i == len(msgs)-1) {
			t.Errorf("piece %d of %d has buttons %v: only the last one carries Retry", i, len(msgs), p.CustomIDs())
		}
		joined = append(joined, p.Content)
	}
	if got, want := fields(strings.Join(joined, "\n")), fields(answer); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("text changed by splitting (a word broken or lost)")
	}
}

func TestRateLimitedFinalTextComplete(t *testing.T) {
	answer := longAnswer()
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithRateLimit(3, 500*time.Millisecond)},
		// A budget looser than the fake's limit, so emulated 429s may happen too.
		opts: []Option{WithChannelBudget(20, 500*time.Millisecond)},
		handler: func(h *scriptHandler) {
			h.answer = func(conversation.Message) string { return answer }
			h.frames, h.interval = 20, 5*time.Millisecond
		},
	})
	// 429s Discord doesn't announce: on the first post, and on the final render.
	hs.fake.InjectRateLimits(channelID, 2, 100*time.Millisecond)
	hs.h.mu.Lock()
	hs.h.beforeFinal = func() { hs.fake.InjectRateLimits(channelID, 2, 100*time.Millisecond) }
	hs.h.mu.Unlock()

	u := hs.mention(alice, channelID, "go")
	m := hs.h.waitCall(t, u.ID)
	hs.h.waitDone(t, m.DedupeKey())
	msgs := hs.answerTo(channelID, u.ID)
	var joined []string
	for _, p := range msgs {
		joined = append(joined, p.Content)
		if strings.Contains(p.Content, cursor) || hasStop(p) {
			t.Errorf("in-progress mark left: %q", p.Content)
		}
	}
	if got, want := fields(strings.Join(joined, "\n")), fields(answer); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("final text incomplete after 429s: %d pieces", len(msgs))
	}
	if n := hs.fake.Stats().RateLimited; n < 4 {
		t.Fatalf("fake answered %d 429s, want at least 4", n)
	}
	if err := hs.fake.WaitFor(2*time.Second, func() bool { return hs.a.Stats().RateLimited >= 4 }); err != nil {
		t.Fatalf("adapter counted %+v", hs.a.Stats())
	}
	t.Logf("429s: fake %d, adapter %+v", hs.fake.Stats().RateLimited, hs.a.Stats())
}

func testStopButton(t *testing.T, hs *harness) {
	hs.h.set(func(h *scriptHandler) {
		h.answer = func(conversation.Message) string { return strings.Repeat("streaming words ", 200) }
		h.frames, h.interval = 400, 20*time.Millisecond
	})
	u := hs.mention(alice, channelID, "talk forever")
	m := hs.h.waitCall(t, u.ID)
	var live discordtest.Message
	err := hs.fake.WaitFor(5*time.Second, func() bool {
		a := hs.answerTo(channelID, u.ID)
		if len(a) > 0 && len(a[0].CustomIDs()) == 1 && strings.HasPrefix(a[0].Content, "streaming") {
			live = a[0]
			return true
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if live.CustomIDs()[0] != "stop:"+m.DedupeKey() {
		t.Fatalf("button = %v", live.CustomIDs())
	}
	// Someone else may not stop it.
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, User: bob,
		CustomID: live.CustomIDs()[0], MessageID: live.ID})
	cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second)
	if err != nil || cb.Type != discordtest.CallbackChannelMessage {
		t.Fatalf("other user's click: %v %+v", err, cb)
	}
	// The asker may.
	ref = hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, User: alice,
		CustomID: live.CustomIDs()[0], MessageID: live.ID})
	if cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second); err != nil || cb.Type != discordtest.CallbackDeferredUpdate {
		t.Fatalf("asker's click: %v %+v", err, cb)
	}
	hs.h.waitDone(t, m.DedupeKey())
	hs.h.mu.Lock()
	stops := append([]string(nil), hs.h.stops...)
	hs.h.mu.Unlock()
	if len(stops) != 1 || stops[0] != m.DedupeKey() {
		t.Fatalf("Stop calls = %v, want [%s]", stops, m.DedupeKey())
	}
	final := hs.answerTo(channelID, u.ID)
	last := final[len(final)-1]
	if !slices.Equal(last.CustomIDs(), []string{retryPrefix + u.ID}) || strings.Contains(last.Content, cursor) || !strings.HasSuffix(last.Content, "\n-# ⏹️ Stopped.") ||
		!strings.HasPrefix(final[0].Content, "streaming words") {
		t.Fatalf("after stop: %q", texts(final))
	}
}

func testStaleStopButtonIsCleanedUp(t *testing.T, hs *harness) {
	// A message left with a Stop button by an answer that no longer runs.
	bot := hs.fake.Bot()
	u := hs.mention(alice, channelID, "hi")
	key := hs.h.waitCall(t, u.ID).DedupeKey()
	hs.h.waitDone(t, key)
	if err := hs.fake.WaitFor(5*time.Second, func() bool { return !hs.h.runs(key) }); err != nil {
		t.Fatal(err)
	}
	a := hs.answerTo(channelID, u.ID)[0]
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, User: alice,
		CustomID: "stop:discord:" + guildID + ":" + u.ID, MessageID: a.ID})
	cb, err := hs.fake.WaitCallback(ref.ID, 3*time.Second)
	if err != nil || cb.Type != discordtest.CallbackUpdateMessage {
		t.Fatalf("stale click: %v %+v", err, cb)
	}
	_ = bot
}

func testRedeliveredMessageSameDedupeKey(t *testing.T, hs *harness) {
	u := hs.mention(alice, channelID, "once")
	hs.h.waitDone(t, hs.h.waitCall(t, u.ID).DedupeKey())
	hs.post(discordtest.MessageSpec{ID: u.ID}) // redelivery
	err := hs.fake.WaitFor(5*time.Second, func() bool { return len(hs.h.callsFor(u.ID)) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	calls := hs.h.callsFor(u.ID)
	if calls[0].DedupeKey() != calls[1].DedupeKey() || calls[0].ThreadKey() != calls[1].ThreadKey() {
		t.Fatalf("keys differ: %s / %s", calls[0].DedupeKey(), calls[1].DedupeKey())
	}
	hs.sentinel(channelID)
	if a := hs.answerTo(channelID, u.ID); len(a) != 1 {
		t.Fatalf("answers = %d", len(a))
	}
}

func testAttachments(t *testing.T, hs *harness) {
	png := []byte("\x89PNG\r\n\x1a\nfakeimage")
	img := hs.fake.AddAttachment("cat.png", "image/png", png)
	code := hs.fake.AddAttachment("main.go", "", []byte("package main\n"))
	zip := hs.fake.AddAttachment("stuff.zip", "application/zip", []byte("PK"))
	big := hs.fake.AddAttachment("big.txt", "text/plain", []byte(strings.Repeat("x", 70<<10)))
	bot := hs.fake.Bot()
	u := hs.post(discordtest.MessageSpec{ChannelID: channelID, Author: alice, Content: "<@" + bot.ID + "> look",
		Mentions: []discordtest.User{bot}, Attachments: []discordtest.Attachment{img, code, zip, big}})
	m := hs.h.waitCall(t, u.ID)
	if len(m.Images) != 1 || !strings.HasPrefix(m.Images[0].URL, "data:image/png;base64,") {
		t.Fatalf("images = %+v", m.Images)
	}
	if len(m.Files) != 1 || m.Files[0].Name != "main.go" || m.Files[0].Text != "package main\n" {
		t.Fatalf("files = %+v", m.Files)
	}
	if len(m.Ignored) != 2 || m.Ignored[0] != "stuff.zip" || !strings.HasPrefix(m.Ignored[1], "big.txt") {
		t.Fatalf("ignored = %+v", m.Ignored)
	}
	// /ask takes a file option too.
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID, User: alice,
		Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "what is this"}, {Name: "file", Type: 11, Value: img.ID}},
		Attachments: []discordtest.Attachment{img}})
	if m := hs.h.waitCall(t, ref.ID); len(m.Images) != 1 || !strings.HasPrefix(m.Images[0].URL, "data:image/png") {
		t.Fatalf("/ask file = %+v", m.Images)
	}
}

func testHandlerErrorKeepsStreamedText(t *testing.T, hs *harness) {
	hs.h.set(func(h *scriptHandler) {
		h.answer = func(conversation.Message) string { return "partial words that were streamed before the failure" }
		h.frames, h.fail = 6, errScripted
	})
	u := hs.mention(alice, channelID, "break")
	hs.h.waitDone(t, hs.h.waitCall(t, u.ID).DedupeKey())
	var a []discordtest.Message
	err := hs.fake.WaitFor(5*time.Second, func() bool {
		a = hs.answerTo(channelID, u.ID)
		return len(a) == 1 && strings.Contains(a[0].Content, "-# ⚠️")
	})
	if err != nil {
		t.Fatalf("answer = %q", texts(a))
	}
	if !strings.HasPrefix(a[0].Content, "partial words") || !strings.Contains(a[0].Content, "Something went wrong") ||
		strings.Contains(a[0].Content, cursor) || hasStop(a[0]) {
		t.Fatalf("answer = %q", a[0].Content)
	}
}

func testAskFallsBackWhenChannelIsForbidden(t *testing.T, hs *harness) {
	hs.fake.AddChannel(discordtest.Channel{ID: "410", GuildID: guildID, Type: discordtest.ChannelText, Forbidden: true})
	ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: "410", User: alice,
		Command: "ask", Options: []discordtest.CommandOption{{Name: "prompt", Type: 3, Value: "hi"}}})
	hs.h.waitDone(t, hs.h.waitCall(t, ref.ID).DedupeKey())
	var got []string
	for _, m := range hs.fake.Messages("410") {
		if m.InteractionID == ref.ID && !m.Ephemeral() {
			got = append(got, m.Content)
		}
	}
	if len(got) != 2 || got[0] != "> hi" || got[1] != "Answer to: hi" {
		t.Fatalf("messages = %q", got)
	}
}

func testGatewayResume(t *testing.T, hs *harness) {
	hs.fake.DropConnections()
	if err := hs.fake.WaitFor(10*time.Second, func() bool { return hs.fake.Stats().Resumes == 1 && hs.fake.Connected() == 1 }); err != nil {
		t.Fatalf("no resume: %v (%v)", err, hs.fake.Stats())
	}
	u := hs.mention(alice, channelID, "still there?")
	hs.h.waitCall(t, u.ID)
}

func TestManyConcurrentAnswers(t *testing.T) {
	const channels, perChannel = 10, 5
	answer := func(m conversation.Message) string {
		return strings.Repeat(m.Text+" lorem ipsum dolor sit amet. ", 90) // ~3,000 characters: two pieces
	}
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithRateLimit(5, time.Second)},
		opts:     []Option{WithChannelBudget(5, time.Second)},
		handler: func(h *scriptHandler) {
			h.answer = answer
			h.frames, h.interval = 15, 50*time.Millisecond
		},
	})
	var ids []string
	var msgs []discordtest.Message
	for c := 0; c < channels; c++ {
		ch := fmt.Sprintf("41000000000000%04d", c)
		hs.fake.AddChannel(discordtest.Channel{ID: ch, GuildID: guildID, Type: discordtest.ChannelText})
	}
	startAt := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for c := 0; c < channels; c++ {
		ch := fmt.Sprintf("41000000000000%04d", c)
		for i := 0; i < perChannel; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u := hs.mention(alice, ch, fmt.Sprintf("q%d-%d", c, i))
				mu.Lock()
				ids = append(ids, u.ID)
				msgs = append(msgs, u)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for _, id := range ids {
		hs.h.waitDone(t, hs.h.waitCall(t, id).DedupeKey())
	}
	elapsed := time.Since(startAt)
	lost, edits := 0, 0
	for _, u := range msgs {
		pieces := hs.answerTo(u.ChannelID, u.ID)
		var joined []string
		e := 0
		for _, p := range pieces {
			joined = append(joined, p.Content)
			e += p.Edits
			if strings.Contains(p.Content, cursor) || hasStop(p) {
				t.Errorf("answer to %s left in progress", u.ID)
			}
		}
		edits += e
		want := answer(conversation.Message{Text: strings.TrimPrefix(u.Content, "<@"+hs.fake.Bot().ID+"> ")})
		if strings.Join(fields(strings.Join(joined, "\n")), " ") != strings.Join(fields(want), " ") {
			lost++
		}
		t.Logf("answer %s: %d messages, %d edits", u.ID, len(pieces), e)
	}
	st := hs.a.Stats()
	t.Logf("%d answers in %v: %d edits (%.1f per answer), fake 429s %d, adapter %+v",
		len(msgs), elapsed.Round(time.Millisecond), edits, float64(edits)/float64(len(msgs)), hs.fake.Stats().RateLimited, st)
	if lost != 0 {
		t.Fatalf("%d answers lost text", lost)
	}
}

func TestRejectedTokenFailsFast(t *testing.T) {
	fake := discordtest.New()
	defer fake.Close()
	a, err := New(config.Discord{Token: "wrong", APIURL: fake.APIURL()}, config.Limits{}, newScriptHandler(), WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "token was rejected") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Run = %v", err)
	}
	if _, err := New(config.Discord{Token: "x", APIURL: "not a url"}, config.Limits{}, newScriptHandler()); err == nil {
		t.Fatal("bad api_url accepted")
	}
}

// discordgo keeps every rate-limit bucket it ever made: no bucket may be
// keyed by one interaction (discordgo's own key for a callback or a
// followup holds the interaction's ID and token), and slash commands add
// at most 64 per route used.
func TestInteractionsLeaveBoundedBuckets(t *testing.T) {
	hs := start(t, setup{})
	buckets := func() []string {
		rl := reflect.ValueOf(hs.a.sess.Ratelimiter)
		rl.Interface().(sync.Locker).Lock()
		defer rl.Interface().(sync.Locker).Unlock()
		var keys []string
		for _, k := range rl.Elem().FieldByName("buckets").MapKeys() {
			keys = append(keys, k.String())
		}
		return keys
	}
	before := len(buckets())
	var refs []discordtest.InteractionRef
	for i := range 150 {
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionApplicationCommand, ChannelID: channelID,
			User: alice, Command: "help"})
		if _, err := hs.fake.WaitCallback(ref.ID, 3*time.Second); err != nil {
			t.Fatalf("interaction %d: %v", i, err)
		}
		refs = append(refs, ref)
	}
	keys := buckets()
	for _, k := range keys {
		for _, ref := range refs {
			if strings.Contains(k, ref.Token) || strings.Contains(k, ref.ID) {
				t.Fatalf("a rate-limit bucket per interaction: %.80s…", k)
			}
		}
	}
	if n := len(keys) - before; n > 2*64 {
		t.Errorf("%d rate-limit buckets more after 150 slash commands", n)
	}
}

// TestBusyChannelOneCallPerAnswer: answers streaming at once in one
// channel spend no call on placeholders or intermediate renders the
// channel can't spare for the others' finals: each costs about one call,
// its final text, and every answer is whole, with no 429.
func TestBusyChannelOneCallPerAnswer(t *testing.T) {
	const answers = 8
	hs := start(t, setup{
		fakeOpts: []discordtest.Option{discordtest.WithRateLimit(5, time.Second)},
		opts:     []Option{WithChannelBudget(5, time.Second)},
		handler: func(h *scriptHandler) {
			h.frames, h.interval = 6, 40*time.Millisecond
		},
	})
	const ch = "420000000000000001"
	hs.fake.AddChannel(discordtest.Channel{ID: ch, GuildID: guildID, Type: discordtest.ChannelText})
	before := hs.fake.Stats().Requests
	var wg sync.WaitGroup
	var mu sync.Mutex
	var asked []discordtest.Message
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := hs.mention(alice, ch, fmt.Sprintf("question %d", i))
			mu.Lock()
			asked = append(asked, u)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, u := range asked {
		hs.h.waitDone(t, hs.h.waitCall(t, u.ID).DedupeKey())
	}
	for _, u := range asked {
		pieces := hs.answerTo(ch, u.ID)
		if len(pieces) != 1 || strings.Contains(pieces[0].Content, cursor) || !strings.Contains(pieces[0].Content, strings.TrimPrefix(u.Content, "<@"+hs.fake.Bot().ID+"> ")) {
			t.Errorf("answer to %s: %+v", u.ID, pieces)
		}
	}
	after := hs.fake.Stats()
	calls := 0
	for _, route := range []string{"POST /channels/{channel}/messages", "PATCH /channels/{channel}/messages/{msg}"} {
		calls += after.Requests[route] - before[route]
	}
	if after.RateLimited != 0 {
		t.Errorf("%d answered 429", after.RateLimited)
	}
	// The last answers to finish are alone in the channel and may stream.
	if calls > answers+4 {
		t.Errorf("%d channel calls for %d one-message answers: placeholders or renders the channel could not spare", calls, answers)
	}
	t.Logf("%d answers, %d channel calls", answers, calls)
}

// Package discord connects Discord to the conversation engine.
//
// It keeps a gateway connection of its own (gateway.go; intents Guilds,
// GuildMessages, DirectMessages and the privileged MessageContent) and
// makes its REST calls with discordgo, whose types it shares; it turns @mentions,
// replies to the bot, thread follow-ups, DMs and slash commands into
// conversation.Message values, and implements conversation.Reply by posting
// and editing Discord messages.
//
// What users see:
//   - /ask prompt: deferred at once, the question echoed, the answer streamed
//     as messages replying to it (or in a thread named after the question with
//     discord.thread_per_ask).
//   - @mention: the bot replies to the message; replying to the bot continues
//     that conversation; in a thread the whole thread is one conversation and
//     follow-ups need no mention (discord.thread_followups). DMs need no
//     mention (discord.allow_dms).
//   - /model [name] (with autocomplete), /models, /reset, /stop, /help, /usage:
//     ephemeral answers from the engine's text commands.
//   - Streaming answers carry a cursor (" ▌") and a Stop button until they
//     end; answers over 2,000 characters continue in further messages (laid
//     out and synced by internal/render, shared with the other platforms); a
//     final note (an error in plain words, "Stopped.") is appended as a small
//     line.
//   - A finished answer's last message carries a Retry button: the engine's
//     /retry, answering the same question again (with the model in use now)
//     as a reply to the old answer, which then replaces it in the
//     conversation's memory. Only the latest answer can be redone.
//
// Conversation keys are described on (*Adapter).onMessage; the streaming
// design in reply.go; Discord's rate limits (for internal/ratelimit) in
// budget.go; bounded work on internal/work's pools.
package discord

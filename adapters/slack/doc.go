// Package slack connects the bot to Slack: it turns app mentions, thread
// follow-ups, direct messages and slash commands into conversation.Message
// values for a conversation.Handler (the engine), and renders the engine's
// answers back into Slack threads.
//
// # Setting up the Slack app
//
//  1. At https://api.slack.com/apps choose "Create New App" → "From a
//     manifest", pick the workspace, and paste slack-app-manifest.yaml from
//     the repository root. It asks for the bot scopes, subscribes to the
//     events, registers /model, /models, /reset, /help and /usage, enables
//     Socket Mode, interactivity (the Retry button under answers) and the
//     App Home messages tab.
//  2. "Install to Workspace". Copy the Bot User OAuth Token (xoxb-…) into
//     SLACK_BOT_TOKEN.
//  3. Socket Mode (the default, no public URL needed): under "Basic
//     Information" → "App-Level Tokens", create a token with the
//     connections:write scope and put it (xapp-…) in SLACK_APP_TOKEN.
//     HTTP mode instead: set socket_mode_enabled to false in the manifest,
//     put the "Signing Secret" in SLACK_SIGNING_SECRET and leave
//     slack.app_token empty; point the Event Subscriptions request URL at
//     https://<host>/slack/events, every slash command at
//     https://<host>/slack/commands and Interactivity at
//     https://<host>/slack/interactivity (slack.events_path,
//     slack.commands_path, slack.interactivity_path).
//  4. Invite the bot to the channels it should answer in (/invite @Ark Bot).
//
// Configuration (slack: in the YAML file):
//
//	slack:
//	  bot_token: ${SLACK_BOT_TOKEN}
//	  app_token: ${SLACK_APP_TOKEN}        # Socket Mode; or signing_secret: for HTTP
//	  reply_in_threads: mentioned          # or always
//	  streaming: auto                      # native, update
//	  edit_interval: 1s
//	  allowed_channels: [C0123456789]      # empty: every channel the bot is in
//	  allowed_users: []                    # empty: everyone
//	  allow_dms: true
//	  admins: [U0123456789]
//
// # How messages become conversations
//
// An @mention at the top of a channel is answered in that message's thread
// (Message.Thread is the mention's ts). Later messages in the thread continue
// the conversation without a new mention: they reach the engine with
// Mentioned=false (reply_in_threads: mentioned), and it answers only in
// threads where it already talks; with reply_in_threads: always every thread
// message in an allowed channel is addressed to the bot. In a direct message
// every message is for the bot; top-level DM messages form one conversation
// (Thread "") and the answer is posted at the top of the DM, while a thread
// inside the DM is its own conversation. Slash commands are channel-level
// (Thread "", InThread false) and answered ephemerally; typed inside a
// thread (@bot /model deepseek-r1) a command applies to that thread.
//
// Message.ID is "channel:ts", the same for the app_mention and the message
// event of one message and for Slack's redeliveries, so the engine's dedupe
// on Message.DedupeKey answers each message once.
//
// # Rendering
//
// Answers are standard Markdown in a markdown block (mrkdwn, from
// MarkdownToMrkdwn, only where Slack takes nothing else: notification
// text, ephemeral command replies). With streaming auto, an answer in a
// thread first shows the assistant status ("is thinking…"), then streams
// with chat.startStream / chat.appendStream / chat.stopStream, the final
// note (why it stopped, an error in plain words) appended at the stop. A
// web search before the text starts the stream as a task card, completed
// with the cited pages as its sources (tasks.go).
// Otherwise (streaming: update, a top-level DM, which has no thread to
// stream into, or a fallback) a placeholder ("⏳ Thinking…") is posted at
// once and edited with chat.update, a trailing "▍" marking the answer in
// progress until the final edit. If Slack refuses streaming (an older plan,
// a disabled feature) the adapter falls back on the spot, keeping what was
// streamed, and remembers it for the workspace for an hour; it also posts
// instead of streaming when the Tier-2 chat.startStream budget is spent, and
// an answer that arrives whole in one frame is simply posted. Answers longer
// than one message (11,000 characters) continue in further thread messages,
// a code block cut in two being closed and reopened. The layout of an answer
// and the sync of what is shown are internal/render's, shared with the other
// platforms; this package holds Slack's style, API calls and native streaming.
//
// # The agent surface
//
// While an answer runs in a thread, the thread's agent session is
// "processing" (titled from the question), so Slack draws its own Stop
// button; its click (agent_session_stopped) goes the way of !stop and stops
// the answer on whichever replica runs it, and the session returns to
// "active" when the answer ends (sessions.go). The agent pane greets a
// person with the suggested prompts and titles each thread from its first
// question (pane.go). Finished answers carry 👍/👎, recorded per user per
// answer by the engine (feedback.go). Statuses, prompts and titles are best
// effort: none delays an answer. A workspace without agent sessions keeps
// the assistant status and !stop, remembered for an hour.
//
// Every call is metered per workspace and method (DefaultBudgets, from
// Slack's published tiers): intermediate edits are skipped when the budget
// is spent (the next edit carries the whole text anyway), first posts and
// final edits wait for it. A 429 that still arrives blocks the method for
// the workspace until its Retry-After; a skippable call is then skipped,
// the others wait it out and retry (internal/ratelimit).
package slack

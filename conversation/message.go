// Package conversation is the bot's core: normalized messages, commands,
// per-thread context in Redis, and streaming an answer to a Reply.
//
// Adapters turn platform events into a Message and implement Reply; the core
// imports no adapter and no platform SDK.
package conversation

import (
	"context"
	"strings"
	"time"
)

// Platform names used in Message.Platform, metrics and keys.
const (
	PlatformSlack   = "slack"
	PlatformDiscord = "discord"
	PlatformConsole = "console"
)

// Message is one inbound chat message, normalized by an adapter.
type Message struct {
	Platform  string // PlatformSlack, PlatformDiscord, PlatformConsole
	Workspace string // Slack team ID, Discord guild ID; "" for DMs where none applies
	Channel   string // channel (or DM) ID
	// Thread names the conversation inside the channel: a Slack thread_ts, a
	// Discord thread's channel ID or reply-chain root. "" means the channel
	// itself is the conversation (a DM, the console).
	Thread string
	// ID is the platform's ID of this message or interaction. With Platform it
	// is the dedupe key: a redelivered event carries the same ID.
	ID   string
	User User
	Text string // the user's words, bot mention removed
	// Images are passed to vision models (https or data: URLs).
	Images []Image
	// Files are text attachments read into the prompt.
	Files []File
	// Ignored names attachments the adapter could not use, to tell the user.
	Ignored []string
	DM      bool
	// Mentioned is true when the message is addressed to the bot: a mention,
	// a DM, a slash command. Other messages (thread follow-ups) are answered
	// only when the bot already holds a conversation in that thread.
	Mentioned bool
	// InThread is true when the message was written inside an existing thread
	// or conversation; /model then switches the thread, else the channel.
	InThread bool
	Time     time.Time
	// ResolveName, if set, returns User.Name from a lookup the adapter has
	// started and may not have finished: the engine calls it only after the
	// answer's sign of life, so a slow lookup never delays that.
	ResolveName func() string
}

// User is who wrote a message.
type User struct {
	ID    string
	Name  string // display name, for the system prompt
	Admin bool   // exempt from limits, may use admin-only models (decided by the adapter)
	// CanSwitchModel is false when the adapter restricts /model to some users.
	CanSwitchModel bool
}

// Image is a picture attached to a message.
type Image struct {
	URL string // https://… or data:image/png;base64,…
}

// File is a text attachment.
type File struct {
	Name string
	Text string
}

// ThreadKey identifies the conversation the message belongs to.
func (m Message) ThreadKey() string {
	return strings.Join([]string{m.Platform, m.Workspace, m.Channel, m.Thread}, ":")
}

// ChannelKey identifies the channel the message was written in.
func (m Message) ChannelKey() string {
	return strings.Join([]string{m.Platform, m.Workspace, m.Channel}, ":")
}

// DedupeKey identifies the message across redeliveries and replicas.
func (m Message) DedupeKey() string {
	return m.Platform + ":" + m.Workspace + ":" + m.ID
}

// Reply is an adapter's handle on where one answer goes. The engine calls
// Begin once, then Render with growing text; it never calls two methods of one
// Reply at the same time, and the last Render has Frame.Final set.
type Reply interface {
	// Begin shows a sign of life at once: a placeholder, a typing status, a reaction.
	Begin(ctx context.Context) error
	// Render shows the answer as it stands.
	Render(ctx context.Context, f Frame) error
	// Notice sends a short message outside any answer: a command's result or a
	// refusal. Adapters make it ephemeral where the platform allows.
	Notice(ctx context.Context, text string) error
}

// Frame is the state of an answer at one moment.
type Frame struct {
	// Text is the answer so far, in standard Markdown. It only grows, except
	// that a final frame may differ when nothing useful streamed.
	Text string
	// Reasoning is the model's thinking so far. Adapters may show it; it is
	// never saved or sent back to the model.
	Reasoning string
	// Model is the registered name of the model answering.
	Model string
	// Final marks the last frame of the answer.
	Final bool
	// Outcome says how the answer ended; set on the final frame.
	Outcome Outcome
	// Note is a line for the user on a final frame: why it stopped, what to
	// do. Empty when the answer completed normally.
	Note string
	// Activity is what the model is doing now when it is not writing, such
	// as "Searching the web…"; "" while it writes and on final frames.
	Activity string
	// Sources are the web pages the answer cites, on its final frame, for
	// adapters to list under the text (see render.WithSources).
	Sources []Source
}

// Source is a web page an answer cites.
type Source struct{ Title, URL string }

// Outcome is how an answer ended.
type Outcome string

// Outcomes of an answer.
const (
	OutcomeStreaming   Outcome = ""            // not finished
	OutcomeDone        Outcome = "done"        // the model finished
	OutcomeTruncated   Outcome = "truncated"   // hit max_tokens
	OutcomeFiltered    Outcome = "filtered"    // stopped by moderation
	OutcomeStopped     Outcome = "stopped"     // a user pressed Stop
	OutcomeInterrupted Outcome = "interrupted" // the stream broke or the bot shut down
	OutcomeFailed      Outcome = "failed"      // no answer: an error before any text
)

// Handler takes normalized messages from adapters. *Engine implements it.
type Handler interface {
	// Handle answers m through r: a command's result, a streamed answer, or
	// a clear refusal. It returns when the answer is finished.
	Handle(ctx context.Context, m Message, r Reply) error
	// Stop ends the generation answering the message with that DedupeKey,
	// keeping what was written, when by asked the question or is an admin.
	Stop(dedupeKey string, by User) StopResult
	// ModelChoices lists the registered models for the conversation of m,
	// the one in use first.
	ModelChoices(ctx context.Context, m Message) []ModelChoice
}

// StopResult is what a Stop request found and did.
type StopResult struct {
	Running bool   // an answer with that key runs in this process
	Stopped bool   // and the requester was allowed to stop it
	Owner   string // the asker's user ID, when Running
}

// ModelChoice is one registered model as offered to a user.
type ModelChoice struct {
	Name        string
	ID          string
	Description string
	Current     bool
}

package conversation

import (
	"strings"
	"unicode/utf8"

	"github.com/arkbot/arkbot/arkclient"
)

// builtRequest is an Ark request plus what the engine needs to account for it.
type builtRequest struct {
	arkclient.Request
	historyTokens int // system prompt and history turns sent, in tokens

	// For a model on the Responses API: full sends the transcript (a new
	// chain); cont, if not nil, continues the thread's chain instead,
	// carrying cont's history tokens; chain is the chain the answer makes
	// (its ID and tokens filled in once known).
	full       *arkclient.ResponsesRequest
	cont       *arkclient.ResponsesRequest
	contTokens int
	chain      Chain
}

// imageTokens is the budget reserved per image; Ark bills images by size,
// and this is a safe upper estimate for the detail "auto" default.
const imageTokens = 1500

// buildRequest assembles the system prompt, as many of the newest turns as
// fit the model's context window minus its answer budget, and the new
// message. ok is false when even the new message alone does not fit; need is
// then its estimated size.
func (e *Engine) buildRequest(m Message, model *Model, turns []Turn, text string) (req builtRequest, need int, ok bool) {
	system := e.systemPrompt(m, model)
	budget := model.ContextWindow - model.MaxTokens
	newMsg := arkclient.Message{Role: "user", Content: text}
	need = estimateTokens(system) + estimateTokens(text)
	if model.Vision {
		newMsg.Images = imageURLs(m.Images)
		need += imageTokens * len(newMsg.Images)
	}
	if need > budget {
		return req, need, false
	}
	// Walk back from the newest turn, whole exchanges at a time, so the
	// history never starts with an orphaned answer.
	used, first := need, len(turns)
	for i := len(turns) - 1; i >= 0; i-- {
		cost := turnTokens(turns[i])
		start := i
		if turns[i].Role == "assistant" && i > 0 && turns[i-1].Role == "user" {
			cost += turnTokens(turns[i-1])
			start = i - 1
		}
		if used+cost > budget {
			break
		}
		used += cost
		first = start
		i = start
	}
	msgs := make([]arkclient.Message, 0, len(turns)-first+2)
	msgs = append(msgs, arkclient.Message{Role: "system", Content: system})
	for _, t := range turns[first:] {
		msgs = append(msgs, arkclient.Message{Role: t.Role, Content: t.Text})
	}
	msgs = append(msgs, newMsg)
	req = builtRequest{
		Request: arkclient.Request{
			Model: model.ID, Messages: msgs, MaxTokens: model.MaxTokens,
			Temperature: model.Temperature, Thinking: model.Thinking, ReasoningEffort: model.ReasoningEffort, User: m.userKey(),
		},
		historyTokens: used - estimateTokens(text) - imageTokens*len(newMsg.Images),
	}
	return req, need, true
}

// responsesRequest turns req, built by buildRequest, into the Responses
// API's: the transcript as a new chain, cached by Ark unless it searches
// (Ark refuses both at once), and, when the thread's chain still holds
// (see Chain.continues), the new input alone continuing it.
func (e *Engine) responsesRequest(req *builtRequest, m Message, model *Model, t *Thread, search bool) {
	now := e.now()
	ttl := e.chainTTL
	if ttl <= 0 {
		ttl = defaultChainTTL
	}
	req.chain = Chain{Model: model.ID, Prompt: e.promptKey(m, model), Search: search,
		Turns: len(t.Turns) + 2, Expires: now.Add(ttl).Unix()}
	if n := e.store.opt.MaxTurns; n > 0 {
		req.chain.Turns = min(req.chain.Turns, n) // as Save trims them
	}
	full := &arkclient.ResponsesRequest{
		Model: model.ID, Input: req.Messages, Store: true, ExpireAt: req.chain.Expires, Caching: !search,
		MaxOutputTokens: model.MaxTokens, Temperature: model.Temperature, Thinking: req.Thinking, ReasoningEffort: model.ReasoningEffort,
	}
	if search {
		full.WebSearch = model.webSearch()
	}
	req.full = full
	newMsg := req.Messages[len(req.Messages)-1]
	need := estimateTokens(newMsg.Content) + imageTokens*len(newMsg.Images)
	if t.Chain.continues(req.chain, len(t.Turns), now, model.ContextWindow-model.MaxTokens-need) {
		cont := *full
		cont.Input = []arkclient.Message{newMsg}
		cont.PreviousResponseID = t.Chain.ID
		req.cont, req.contTokens = &cont, t.Chain.Tokens
	}
}

func imageURLs(images []Image) []string {
	out := make([]string, len(images))
	for i, img := range images {
		out[i] = img.URL
	}
	return out
}

func turnTokens(t Turn) int {
	if t.Tokens > 0 {
		return t.Tokens
	}
	return estimateTokens(t.Text)
}

// estimateTokens guesses a text's token count before Ark has counted it:
// about four ASCII characters per token, one per CJK or other character,
// plus a few for the message's framing. It errs high, so context never
// overflows.
func estimateTokens(s string) int {
	ascii := 0
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			ascii++
		}
	}
	other := utf8.RuneCountInString(s) - ascii
	return ascii/3 + other + 4
}

// systemPrompt fills the configured template: {date}, {time}, {user},
// {platform}, {model}.
func (e *Engine) systemPrompt(m Message, model *Model) string {
	return e.systemPromptAt(m, model, e.now().Format("15:04 MST"))
}

// systemPromptAt is systemPrompt with clock as {time}.
func (e *Engine) systemPromptAt(m Message, model *Model, clock string) string {
	now := e.now()
	return expandPrompt(e.systemTmpl, func(name string) (string, bool) {
		switch name {
		case "{date}":
			return now.Format("2006-01-02 (Monday)"), true
		case "{time}":
			return clock, true
		case "{user}":
			return m.User.Name, true
		case "{platform}":
			return platformTitle(m.Platform), true
		case "{model}":
			return model.Name, true
		}
		return "", false
	})
}

// expandPrompt replaces each placeholder ("{name}") of tmpl that value
// knows, scanning left to right as strings.Replacer would; the rest of tmpl
// stays as it is. A Replacer built for every answer was most of the bytes
// a prompt cost.
func expandPrompt(tmpl string, value func(placeholder string) (string, bool)) string {
	i := strings.IndexByte(tmpl, '{')
	if i < 0 {
		return tmpl
	}
	var b strings.Builder
	b.Grow(len(tmpl) + 32)
	for ; i >= 0; i = strings.IndexByte(tmpl, '{') {
		b.WriteString(tmpl[:i])
		tmpl = tmpl[i:]
		if end := strings.IndexByte(tmpl, '}'); end > 0 {
			if v, ok := value(tmpl[:end+1]); ok {
				b.WriteString(v)
				tmpl = tmpl[end+1:]
				continue
			}
		}
		b.WriteByte('{')
		tmpl = tmpl[1:]
	}
	b.WriteString(tmpl)
	return b.String()
}

func platformTitle(p string) string {
	switch p {
	case PlatformSlack:
		return "Slack"
	case PlatformDiscord:
		return "Discord"
	case PlatformConsole:
		return "a terminal"
	}
	return p
}

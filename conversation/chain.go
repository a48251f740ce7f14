package conversation

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Chain is the Responses API chain that continues a thread: the thread's
// last stored response at Ark, and what it was made with. A turn continues
// it (sending only the new input with previous_response_id) only while it
// still matches: same model, same system prompt, same kind of chain, the
// transcript unchanged since, before it expires and while the context Ark
// carries fits the model's window. Otherwise the turn starts a new chain
// from the transcript, which stays the source of truth.
type Chain struct {
	ID      string `json:"id"`      // the last response's ID
	Model   string `json:"model"`   // the Ark model ID it was made with
	Prompt  string `json:"prompt"`  // promptKey of its system prompt
	Search  bool   `json:"search"`  // made with web_search, so without caching
	Turns   int    `json:"turns"`   // the transcript's length it covers
	Tokens  int    `json:"tokens"`  // the context Ark carries: the last turn's total tokens
	Expires int64  `json:"expires"` // Unix seconds: its first response's expire_at
}

// maxChainTTL is the longest expire_at Ark accepts after a response's
// creation; defaultChainTTL is Ark's own default.
const (
	maxChainTTL     = 7 * 24 * time.Hour
	defaultChainTTL = 72 * time.Hour
	// chainMargin is how long before its expiry a chain is no longer
	// continued: a request under way must not reach Ark after it.
	chainMargin = 5 * time.Minute
)

// parseChain reads a chain as saved; nil when there is none.
func parseChain(raw string) *Chain {
	if raw == "" {
		return nil
	}
	var c Chain
	if json.Unmarshal([]byte(raw), &c) != nil || c.ID == "" {
		return nil
	}
	return &c
}

// encode is c as saved; "" for nil.
func (c *Chain) encode() string {
	if c == nil {
		return ""
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// continues reports whether the chain can carry a turn now.
func (c *Chain) continues(want Chain, turns int, now time.Time, budget int) bool {
	return c != nil && c.Model == want.Model && c.Prompt == want.Prompt && c.Search == want.Search &&
		c.Turns == turns && now.Add(chainMargin).Unix() < c.Expires && c.Tokens < budget
}

// promptKey identifies a system prompt: a chain made with another one is
// not continued. The time of day is left out (it changes every minute);
// the date is in.
func (e *Engine) promptKey(m Message, model *Model) string {
	sum := sha256.Sum256([]byte(e.systemPromptAt(m, model, "")))
	return hex.EncodeToString(sum[:8])
}

package slack

import (
	"context"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/arkbot/arkbot/internal/ratelimit"
)

// showActivity shows what the model is doing (conversation.Frame.Activity,
// such as a web search) as the assistant status while no answer text
// exists yet, once per activity.
func (r *reply) showActivity(ctx context.Context, activity string) {
	if activity == "" || activity == r.activity {
		return
	}
	if err := r.setStatus(ctx, ratelimit.BestEffort, "is "+lowerFirst(activity), nil); err == nil {
		r.activity, r.statusAt = activity, time.Now()
	}
}

// lowerFirst is s with its first letter in lower case.
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToLower(r)) + s[n:]
}

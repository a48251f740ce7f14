package discord

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/discordtest"
	"github.com/arkbot/arkbot/internal/testing/enginetest"
	"github.com/arkbot/arkbot/metrics"
)

// A finished answer carries 👍 and 👎 beside Retry; a click is answered
// privately and counted once per user per answer: a repeated click is
// told it is recorded already, a changed vote counts again and points at
// Retry.
func TestFeedbackButtons(t *testing.T) {
	ark := arktest.New()
	t.Cleanup(ark.Close)
	enginetest.Takes(ark)
	hs := start(t, setup{engine: enginetest.New(t, ark)})

	q := hs.mention(alice, channelID, "rate me")
	var a []discordtest.Message
	if err := hs.fake.WaitFor(10*time.Second, func() bool {
		a = hs.answerTo(channelID, q.ID)
		return len(a) == 1 && !hasStop(a[0]) && a[0].Content != placeholder
	}); err != nil {
		t.Fatalf("no finished answer: %q", texts(a))
	}
	if ids := a[0].CustomIDs(); !slices.Equal(ids, answerButtons(q.ID)) {
		t.Fatalf("buttons %v, want %v", ids, answerButtons(q.ID))
	}

	up := metrics.Feedback.WithLabelValues("discord", "doubao", "up")
	down := metrics.Feedback.WithLabelValues("discord", "doubao", "down")
	up0, down0 := counterValue(up), counterValue(down)
	click := func(customID string) string {
		t.Helper()
		ref := hs.interact(discordtest.InteractionSpec{Type: discordtest.InteractionMessageComponent, ChannelID: channelID, GuildID: guildID,
			User: bob, CustomID: customID, MessageID: a[0].ID})
		cb, err := hs.fake.WaitCallback(ref.ID, 5*time.Second)
		if err != nil || cb.Type != discordtest.CallbackChannelMessage {
			t.Fatalf("the click's callback: %+v, %v", cb, err)
		}
		var data struct {
			Content string `json:"content"`
			Flags   int    `json:"flags"`
		}
		_ = json.Unmarshal(cb.Data, &data)
		if data.Flags&64 == 0 {
			t.Fatalf("acknowledgement %q is not ephemeral", data.Content)
		}
		return data.Content
	}
	if got := click(voteUpPrefix + "doubao"); got != thanksUp {
		t.Fatalf("👍 answered %q", got)
	}
	if got := click(voteUpPrefix + "doubao"); got != votedAlready {
		t.Fatalf("repeated 👍 answered %q", got)
	}
	if got := click(voteDownPrefix + "doubao"); !strings.Contains(got, "Retry") {
		t.Fatalf("👎 answered %q", got)
	}
	if du, dd := counterValue(up)-up0, counterValue(down)-down0; du != 1 || dd != 1 {
		t.Fatalf("arkbot_feedback_total grew by up %v, down %v; want 1 and 1", du, dd)
	}
	if m, _ := hs.fake.Message(a[0].ID); !slices.Equal(m.CustomIDs(), answerButtons(q.ID)) {
		t.Fatalf("the answer's buttons after voting: %v", m.CustomIDs())
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// Package metrics holds the bot's Prometheus collectors, registered on one
// registry that cmd/bot serves at /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry holds every collector of this package plus Go and process metrics.
var Registry = prometheus.NewRegistry()

var (
	// Answers counts finished answers by platform, model and outcome.
	Answers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_answers_total",
		Help: "Answers finished, by platform, model and outcome (done, truncated, filtered, stopped, interrupted, failed; orphaned: finished by a sweep after its replica died).",
	}, []string{"platform", "model", "outcome"})

	// FirstToken observes the time from a user's message to the first token from Ark.
	FirstToken = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "arkbot_time_to_first_token_seconds",
		Help:    "Time from a message reaching the engine to the first streamed token.",
		Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 15, 30, 60},
	}, []string{"platform", "model"})

	// Tokens counts tokens Ark reported, by model and kind (prompt, completion, reasoning, cached).
	Tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_tokens_total",
		Help: "Tokens reported by Ark, by model and kind (prompt, completion, reasoning, cached).",
	}, []string{"model", "kind"})

	// WebSearches counts the web searches Ark made for answers, by model.
	WebSearches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_web_searches_total",
		Help: "Web searches Ark's web_search tool made for answers, by model (Ark bills each).",
	}, []string{"model"})

	// Chains counts Responses API turns by how they were sent: continued (previous_response_id and the new input only), started (the transcript, a new chain), or lost (Ark no longer had the previous response; resent as started).
	Chains = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_response_chains_total",
		Help: "Responses API turns by how they were sent: continued (previous_response_id and the new input), started (the whole transcript), lost (Ark had lost the chain; the turn was resent whole).",
	}, []string{"model", "how"})

	// ActiveStreams is the number of answers streaming now.
	ActiveStreams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "arkbot_active_streams",
		Help: "Answers streaming now, by platform.",
	}, []string{"platform"})

	// ArkErrors counts errors from Ark by code (Ark's code, or one of arkclient's: Timeout, StreamInterrupted, NetworkError, ConnectFailed, TLSCertificate).
	ArkErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_ark_errors_total",
		Help: "Errors from Ark by code, including retried ones.",
	}, []string{"code"})

	// ArkRetries counts retried Ark requests.
	ArkRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arkbot_ark_retries_total",
		Help: "Ark requests retried after a retryable error.",
	})

	// PlatformCalls counts calls to Slack and Discord APIs by platform, method and result (ok, error, ratelimited).
	PlatformCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_platform_calls_total",
		Help: "Calls to platform APIs by platform, method and result (ok, error, ratelimited).",
	}, []string{"platform", "method", "result"})

	// Messages counts inbound messages by platform and what was done (answered, command, duplicate, refused, ignored).
	Messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_messages_total",
		Help: "Inbound messages by platform and handling (answer, command, duplicate, limited, refused, error).",
	}, []string{"platform", "handling"})

	// Replicas is how many replicas share a platform's rate budgets, as last counted.
	Replicas = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "arkbot_replicas",
		Help: "Replicas sharing a platform's rate budgets, by platform, as this replica last counted them.",
	}, []string{"platform"})

	// StartWait is how long messages waited for a free set-up slot.
	StartWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "arkbot_start_wait_seconds",
		Help:    "How long a message waited for one of server.max_starting set-up slots before the bot began on it.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})

	// Feedback counts votes recorded on answers (new or changed; a repeated vote is not counted).
	Feedback = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_feedback_total",
		Help: "Votes recorded on answers by platform, model and vote (up, down); a changed vote counts again, a repeated one not.",
	}, []string{"platform", "model", "vote"})

	// RedisErrors counts failed store operations.
	RedisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_redis_errors_total",
		Help: "Failed Redis operations by operation.",
	}, []string{"op"})

	// Deliveries counts finished answers by how their final text reached
	// the platform: a busy workspace shows as fewer streams and more posts.
	Deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arkbot_answer_deliveries_total",
		Help: "Final answers by platform and how they were shown: stream (a native stream stopped with the rest), stream_appended (the rest appended, the stop left for later), edit (the message shown edited), post (posted, nothing shown before), posted_instead (posted because no edit was free in time).",
	}, []string{"platform", "how"})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		Answers, FirstToken, Tokens, WebSearches, Chains, ActiveStreams, ArkErrors, ArkRetries, PlatformCalls, Messages, Replicas, StartWait, RedisErrors, Feedback, Deliveries,
	)
}

// PlatformCall records one platform API call: result is "ok", "error" or "ratelimited".
func PlatformCall(platform, method, result string) {
	PlatformCalls.WithLabelValues(platform, method, result).Inc()
}

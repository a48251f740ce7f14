package metrics

import "github.com/prometheus/client_golang/prometheus"

var (
	// SavesUnconfirmed counts saved turns that fewer than redis.min_replicas
	// replicas confirmed at first, or whose save failed.
	SavesUnconfirmed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arkbot_saves_unconfirmed_total",
		Help: "Saved turns that fewer than redis.min_replicas replicas confirmed at first, or whose save failed (then re-saved unless Redis has had no replica for a while).",
	})

	// Resaves counts re-save attempts of unconfirmed turns.
	Resaves = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "arkbot_resaves_total",
		Help: "Re-save attempts of turns not confirmed by redis.min_replicas replicas (after a failover, say).",
	})
)

func init() { Registry.MustRegister(SavesUnconfirmed, Resaves) }

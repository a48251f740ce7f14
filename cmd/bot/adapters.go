package main

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/arkbot/arkbot/config"
	"github.com/arkbot/arkbot/metrics"
)

// runner runs one messenger adapter until ctx ends.
type runner func(ctx context.Context) error

// adapters builds the configured messenger adapters, mounting HTTP routes
// they need on mux.
func (b *bot) adapters(cfg *config.Config, mux *http.ServeMux) ([]runner, error) {
	var runners []runner
	return runners, nil
}

func metricsHandler() http.Handler {
	return promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{Registry: metrics.Registry})
}

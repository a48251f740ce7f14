package metrics

import "github.com/prometheus/client_golang/prometheus"

// Images counts /image requests by platform, image model and outcome:
// done, filtered (moderation), failed (an Ark or download error), limited
// (a daily limit), refused (pictures off, or the platform can't post them),
// interrupted (stopped or shut down).
var Images = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "arkbot_images_total",
	Help: "Picture requests (/image), by platform, image model and outcome (done, filtered, failed, limited, refused, interrupted).",
}, []string{"platform", "model", "outcome"})

func init() { Registry.MustRegister(Images) }
